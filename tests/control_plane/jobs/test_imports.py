"""CSV imports: all or nothing, every bad row named by its line, metered and announced like API creates."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from control_plane.jobs.worker import JobWorker
from shared.keys import RedisKeys
from tests.conftest import KeyFactory, bearer
from tests.control_plane.api.test_concurrent_deletes import org_of, while_usage_is_held
from tests.control_plane.jobs.conftest import run_job

CSV = {"Content-Type": "text/csv"}


def campaign(rows: int, bad_line: int | None = None) -> bytes:
    lines = ["name,url,tags,utm_source,param:table"]
    for n in range(1, rows + 1):
        url = "not a url" if n + 1 == bad_line else f"https://example.com/menu/{n}"
        lines.append(f"Table {n},{url},fall24|print,flyer,{n}")
    return ("\n".join(lines) + "\n").encode()


async def start(api: httpx.AsyncClient, key: str, body: bytes, query: str = "") -> dict[str, Any]:
    response = await api.post(f"/v1/imports{query}", headers={**bearer(key), **CSV}, content=body)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued" and response.json()["id"].startswith("imp_")
    return dict(response.json())


async def imported(api: httpx.AsyncClient, worker: JobWorker, key: str, body: bytes, query: str = "") -> dict[str, Any]:
    return await run_job(api, worker, key, f"/v1/imports/{(await start(api, key, body, query))['id']}")


async def codes(db: asyncpg.Connection[Any]) -> int:
    return int(await db.fetchval("SELECT count(*) FROM qr_codes"))


async def test_10000_rows_create_10000_codes_metered_and_announced(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any],
        redis: aioredis.Redis, redis_namespace: str) -> None:
    key = await make_key(scopes=("qr:read", "qr:write", "webhooks:read"))
    job = await imported(api, worker, key, campaign(10_000))
    assert job["status"] == "succeeded", job
    assert job["result"] == {"created": 10_000, "errors": []}
    assert job["progress"] == {"done": 10_000, "total": 10_000}
    assert await codes(db) == 10_000
    assert (await api.get("/v1/usage", headers=bearer(key))).json()["qr_generated"] == 10_000
    events = (await api.get("/v1/events?type=qr.created&limit=1", headers=bearer(key))).json()
    assert events["total"] == 10_000
    listed = (await api.get("/v1/qr-codes?q=Table 9999", headers=bearer(key))).json()["data"]
    assert len(listed) == 1
    code = listed[0]
    assert code["tags"] == ["fall24", "print"] and code["url_params"] == {"utm_source": "flyer", "table": "9999"}
    assert code["resolved"]["url"] == "https://example.com/menu/9999?utm_source=flyer&table=9999"
    # The edge can serve it at once: its row is in Redis, as after POST /v1/qr-codes.
    assert await redis.exists(RedisKeys(redis_namespace).code(code["domain"], code["slug"]))


async def test_one_bad_row_creates_nothing_and_names_the_row(api: httpx.AsyncClient, make_key: KeyFactory,
                                                             worker: JobWorker, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    job = await imported(api, worker, key, campaign(10_000, 5_001))
    assert job["status"] == "failed"
    assert job["result"]["created"] == 0
    assert [(e["row"], e["field"]) for e in job["result"]["errors"]] == [(5_001, "url")]
    assert job["error"]["type"].endswith("/invalid-import") and job["error"]["status"] == 422
    assert await codes(db) == 0
    assert (await api.get("/v1/usage", headers=bearer(key))).json()["qr_generated"] == 0


async def test_the_row_limit_counts_rows_not_their_errors(api: httpx.AsyncClient, make_key: KeyFactory,
                                                          worker: JobWorker) -> None:
    key = await make_key()
    # 6,000 rows with two bad fields each: 12,000 findings, every one reported.
    body = ("name,url\n" + f"{'x' * 201},not a url\n" * 6_000).encode()
    job = await imported(api, worker, key, body, "?dry_run=true")
    errors = job["result"]["errors"]
    assert len(errors) == 12_000 and {e["row"] for e in errors} == set(range(2, 6_002)), errors[:3]
    assert job["progress"]["total"] == 6_000

    over = await imported(api, worker, key, campaign(10_001))
    assert over["status"] == "failed"
    assert over["result"]["errors"] == [{"row": 10_002, "field": "", "message": "a file holds at most 10000 rows"}]


async def test_a_dry_run_reports_the_errors_and_creates_nothing(api: httpx.AsyncClient, make_key: KeyFactory,
                                                               worker: JobWorker, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    body = (b'name,url,slug,group_id\n"Two\nlines",https://example.com/a,taken,\n'
            b"B,https://example.com/b,taken,\nC,https://example.com/c,no spaces,\nD,,,grp_nope\n")
    job = await imported(api, worker, key, body, "?dry_run=true")
    assert job["status"] == "succeeded" and job["dry_run"] is True
    assert job["result"]["created"] == 0
    # The first record spans lines 2-3, so the next rows are lines 4, 5 and 6.
    assert [(e["row"], e["field"]) for e in job["result"]["errors"]] == [(4, "slug"), (5, "slug"), (6, "group_id")]
    assert await codes(db) == 0
    clean = await imported(api, worker, key, campaign(3), "?dry_run=true")
    assert clean["status"] == "succeeded" and clean["result"] == {"created": 0, "errors": []}
    assert await codes(db) == 0


async def test_a_dry_run_over_the_plan_fails_as_the_import_would_and_counts_nothing(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any]) -> None:
    key = await make_key("tiny", scopes=("qr:read", "qr:write"))
    await db.execute("UPDATE organisations SET plan = 'free' WHERE name = 'tiny'")  # 25 codes a month
    dry = await imported(api, worker, key, campaign(26), "?dry_run=true")
    real = await imported(api, worker, key, campaign(26))
    assert real["status"] == "failed" and real["error"]["status"] == 402
    assert dry["status"] == "failed" and dry["error"]["status"] == 402, dry
    assert dry["error"]["type"] == real["error"]["type"] and dry["result"] is None
    fits = await imported(api, worker, key, campaign(25), "?dry_run=true")
    assert fits["status"] == "succeeded" and fits["result"] == {"created": 0, "errors": []}
    assert (await api.get("/v1/usage", headers=bearer(key))).json()["qr_generated"] == 0 and await codes(db) == 0


async def test_a_slug_already_taken_and_a_repeated_column_are_row_errors(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker) -> None:
    key = await make_key()
    made = await api.post("/v1/qr-codes", headers=bearer(key), json={
        "slug": "menu", "destination": {"type": "url", "url": "https://example.com/"}})
    assert made.status_code == 201
    taken = await imported(api, worker, key, b"slug,url\nmenu,https://a.example/\n")
    assert taken["result"]["errors"] == [{"row": 2, "field": "slug", "message": "is already taken on qr.test"}]
    twice = await imported(api, worker, key, b"name,url,name\nA,https://a.example/,B\n")
    assert [(e["row"], e["field"], e["message"]) for e in twice["result"]["errors"]] == [(1, "name", "appears twice")]


async def test_a_group_deleted_while_an_import_creates_codes_in_it(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any],
        database_url: str) -> None:
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/"}})).json()
    job_id = (await start(api, key, f"name,group_id\nA,{group['id']}\nB,{group['id']}\n".encode()))["id"]

    async def run() -> httpx.Response:
        await worker.run_once()
        return await api.get(f"/v1/imports/{job_id}", headers=bearer(key))

    # In the losing order (tests/control_plane/api/test_concurrent_deletes.py): the import stops after its
    # checks, at the metering of its codes, while the group is deleted.
    ran, deleted = await while_usage_is_held(db, database_url, await org_of(db, "acme"), run,
                                             lambda: api.delete(f"/v1/qr-groups/{group['id']}", headers=bearer(key)))
    job = ran.json()
    assert deleted.status_code == 204, deleted.text
    if job["status"] == "succeeded":  # the delete came after: the codes stay, detached, as any group's codes
        assert await db.fetchval("SELECT count(*) FROM qr_codes WHERE group_id IS NULL") == 2
    else:  # the delete came first: the rows name a group that is gone, and nothing is created
        assert job["error"]["status"] == 422 and await codes(db) == 0, job


@pytest.mark.parametrize(("body", "field"), [
    (b"{}", "{}"),
    (b"", "body"),
    (b"\n\nname,url\n", "body"),
    (b"name,colour\nA,red\n", "colour"),
    (b"name,utm_\n", "utm_"),
    (b"\xff\xfename\n", "body"),
    (b"name," * 100 + b"url\n", "body"),
])
async def test_a_body_that_is_not_an_import_is_a_422_at_once(api: httpx.AsyncClient, make_key: KeyFactory,
                                                              db: asyncpg.Connection[Any], body: bytes,
                                                              field: str) -> None:
    response = await api.post("/v1/imports?dry_run=true", headers={**bearer(await make_key()), **CSV}, content=body)
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("/invalid-import")
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0


async def test_the_import_schema_states_the_header_rule(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    spec = (await api.get("/openapi.json")).json()
    pattern = spec["paths"]["/v1/imports"]["post"]["requestBody"]["content"]["text/csv"]["schema"]["pattern"]
    key = await make_key()
    for text in ('\ufeffname,url', 'name, url ,"tags",utm_source,param:table\r\nA,,,', "slug\rx", "name"):
        assert re.search(pattern, text), text
        assert (await start(api, key, text.encode(), "?dry_run=true"))["dry_run"] is True
    for text in ("{}", "", "name;url\n", "Name\n", '"name\n'):
        assert not re.search(pattern, text), text


async def test_the_upload_must_be_csv_and_at_most_20_mib(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    wrong = await api.post("/v1/imports", headers={**bearer(key), "Content-Type": "application/json"}, content=b"{}")
    assert wrong.status_code == 415
    huge = await api.post("/v1/imports", headers={**bearer(key), **CSV}, content=b"x" * ((20 << 20) + 1))
    assert huge.status_code == 413
    reader = await make_key("readers", scopes=("qr:read",))
    assert (await api.post("/v1/imports", headers={**bearer(reader), **CSV}, content=b"name\n")).status_code == 403
