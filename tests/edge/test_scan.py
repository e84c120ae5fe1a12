from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from shared.keys import SCAN_FIELD, RedisKeys
from shared.scan_event import ScanEvent
from tests.conftest import KeyFactory, bearer

PAGE = "a1c2e4f6-8b0d-4e2a-9c1b-3d5e7f9a2c4e"


async def stream_events(redis: aioredis.Redis, namespace: str) -> list[ScanEvent]:
    entries = await redis.xrange(RedisKeys(namespace).scans)
    return [ScanEvent.decode(fields[SCAN_FIELD]) for _, fields in entries]


async def make_code(api: httpx.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    response = await api.post("/v1/qr-codes", headers=bearer(key), json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_seed_example_redirects_with_merged_params(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str) -> None:
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "page", "page": PAGE}, "url_params": {"utm_campaign": "fall24", "utm_medium": "print"},
        "properties": {"venue": "Brunswick"}})).json()
    code = await make_code(api, key, group_id=group["id"], url_params={"utm_medium": "table"},
                           properties={"table": "12"})
    response = await edge.get(f"/{code['slug']}?utm_source=email&qr=1", headers={"user-agent": "Mozilla/5.0"})
    assert response.status_code == 302
    assert response.headers["location"] == \
        f"https://pages.example.com/p/{PAGE}?utm_campaign=fall24&utm_medium=table&utm_source=email"
    assert response.headers["cache-control"] == "private, no-store"
    [event] = await stream_events(redis, redis_namespace)
    assert (event.code_id, event.group_id, event.outcome, event.marker) == (code["id"], group["id"], "redirected", True)
    assert event.properties == {"venue": "Brunswick", "table": "12"}
    assert "203.0.113.7" not in event.encode().decode() and len(event.ip_hash) == 32


async def test_each_scan_records_whether_its_own_query_carries_the_marker(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str) -> None:
    """The marker printed in every image (`qr`), read from each scan's query (the edge remembers the answer
    per query: a printed code's scans repeat it)."""
    key = await make_key()
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/"})
    queries = {"?qr=1": True, "?utm_source=x": False, "?aqr=1&qrx=2": False, "?x=1&qr": True, "": False}
    for query in [*queries, "?qr=1", "?utm_source=x"]:
        assert (await edge.get(f"/{code['slug']}{query}")).status_code == 302
    markers = [event.marker for event in await stream_events(redis, redis_namespace)]
    assert markers == [*queries.values(), True, False]


async def test_every_outcome_and_its_status(api: httpx.AsyncClient, edge: httpx.AsyncClient,
                                            make_key: KeyFactory, redis: aioredis.Redis,
                                            redis_namespace: str) -> None:
    key = await make_key()
    url = {"type": "url", "url": "https://example.com/"}
    unconfigured = await make_code(api, key)
    paused = await make_code(api, key, destination=url, status="inactive")
    archived = await make_code(api, key, destination=url, status="archived")
    deleted = await make_code(api, key, destination=url)
    assert (await api.delete(f"/v1/qr-codes/{deleted['id']}", headers=bearer(key))).status_code == 204
    expected = [(unconfigured, 404, b"not configured yet"), (paused, 404, b"paused"),
                (archived, 410, b"no longer in use"), (deleted, 410, b"no longer in use")]
    for code, status, text in expected:
        response = await edge.get(f"/{code['slug']}")
        assert response.status_code == status and text in response.content
        assert response.headers["content-type"].startswith("text/html")
    unknown = await edge.get("/nope123")
    assert unknown.status_code == 404 and b"does not exist" in unknown.content
    outcomes = [e.outcome for e in await stream_events(redis, redis_namespace)]
    assert outcomes == ["unconfigured", "inactive", "archived", "deleted"]


async def test_head_trailing_slash_and_other_hosts(api: httpx.AsyncClient, edge: httpx.AsyncClient,
                                                   make_key: KeyFactory) -> None:
    key = await make_key()
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/a"})
    head = await edge.head(f"/{code['slug']}/")
    assert head.status_code == 302 and head.headers["location"] == "https://example.com/a" and head.content == b""
    elsewhere = await edge.get(f"/{code['slug']}", headers={"host": "other.test"})
    assert elsewhere.status_code == 404
    assert (await edge.post(f"/{code['slug']}")).status_code == 405


async def test_a_change_is_seen_by_the_next_scan(api: httpx.AsyncClient, edge: httpx.AsyncClient,
                                                 make_key: KeyFactory) -> None:
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://one.example/"}})).json()
    code = await make_code(api, key, group_id=group["id"])
    assert (await edge.get(f"/{code['slug']}")).headers["location"] == "https://one.example/"
    await api.patch(f"/v1/qr-groups/{group['id']}", headers=bearer(key),
                    json={"destination": {"url": "https://two.example/"}})
    assert (await edge.get(f"/{code['slug']}")).headers["location"] == "https://two.example/"


async def test_what_is_prepared_per_code_follows_every_change(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str) -> None:
    """The edge prepares a code's Location and its events' constant part once (docs/edge.md): a change of the
    group's or the code's params and properties reaches the very next scan, with the same visitor query."""
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://one.example/"}, "url_params": {"c": "1"},
        "properties": {"venue": "a"}})).json()
    code = await make_code(api, key, group_id=group["id"], properties={"table": "1"})
    scan = f"/{code['slug']}?qr=1&v=x"
    assert (await edge.get(scan)).headers["location"] == "https://one.example/?c=1&v=x"
    await api.patch(f"/v1/qr-groups/{group['id']}", headers=bearer(key),
                    json={"url_params": {"c": "2"}, "properties": {"venue": "b"}})
    assert (await edge.get(scan)).headers["location"] == "https://one.example/?c=2&v=x"
    await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key),
                    json={"url_params": {"d": "3"}, "properties": {"table": "2"}})
    assert (await edge.get(scan)).headers["location"] == "https://one.example/?c=2&d=3&v=x"
    events = await stream_events(redis, redis_namespace)
    assert [e.properties for e in events] == [{"venue": "a", "table": "1"}, {"venue": "b", "table": "1"},
                                              {"venue": "b", "table": "2"}]
    assert {(e.code_id, e.group_id) for e in events} == {(code["id"], group["id"])}
    assert len({e.org_id for e in events}) == 1


async def test_rows_missing_from_redis_are_read_from_postgres(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str) -> None:
    key = await make_key()
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/b"})
    keys = RedisKeys(redis_namespace)
    await redis.delete(keys.code("qr.test", code["slug"]))
    response = await edge.get(f"/{code['slug']}")
    assert response.status_code == 302 and response.headers["location"] == "https://example.com/b"
    assert await redis.exists(keys.code("qr.test", code["slug"]))


async def test_health_routes(edge: httpx.AsyncClient) -> None:
    assert (await edge.get("/healthz")).json() == {"status": "ok"}
    assert (await edge.get("/readyz")).status_code == 200


@pytest.mark.parametrize("bad", ["/a b", "/%0d%0a", "/x/y"])
async def test_odd_paths_are_plain_404s(edge: httpx.AsyncClient, bad: str) -> None:
    assert (await edge.get(bad)).status_code == 404


