from __future__ import annotations

import tracemalloc
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from control_plane.ingest.worker import IngestWorker
from control_plane.services import analytics
from shared.database import create_pool
from shared.keys import SCAN_FIELD
from shared.scan_event import ScanEvent
from shared.settings import IngestSettings
from tests.conftest import KeyFactory, bearer
from tests.control_plane.ingest.test_enrich import ANDROID_CHROME, GOOGLEBOT_UA, IN_APP, IPHONE_SAFARI

WECHAT = IN_APP[0][0]
WINDOW = {"since": "2026-04-01T00:00:00Z", "until": "2026-04-04T00:00:00Z"}


@pytest.fixture
async def worker(ingest_settings: IngestSettings, database_url: str,
                 redis: aioredis.Redis) -> AsyncIterator[IngestWorker]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    worker = IngestWorker(ingest_settings, pool, redis)
    await worker.ensure_group()
    yield worker
    await pool.close()


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def scan(code: dict[str, Any], when: str, visitor: str, ip: str, user_agent: str, *, marker: bool = True,
         country: str | None = "US", outcome: str = "redirected", method: str = "GET",
         livemode: bool = True) -> ScanEvent:
    return ScanEvent(str(uuid.uuid4()), at(when), code["id"], code["group_id"], code["org_id"], livemode,
                     outcome, method, marker, ip, visitor, user_agent, country=country)


async def ingest(worker: IngestWorker, events: list[ScanEvent]) -> None:
    await worker.ingest([(f"1-{i}".encode(), {SCAN_FIELD: e.encode()}) for i, e in enumerate(events)])


@pytest.fixture
async def dataset(api: httpx.AsyncClient, make_key: KeyFactory, db: asyncpg.Connection[Any],
                  worker: IngestWorker) -> dict[str, Any]:
    """Known answers: 7 human scans in the window (4 visitors, 3 IPs), 3 bots, 2 outside the window."""
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "run"})).json()
    ids = [(await api.post("/v1/qr-codes", headers=bearer(key), json={"group_id": group["id"]})).json()["id"]
           for _ in range(2)]
    rows = await db.fetch("SELECT id, org_id, group_id FROM qr_codes WHERE id = ANY($1)", ids)
    code, other = (dict(next(r for r in rows if r["id"] == i)) for i in ids)
    await ingest(worker, [
        *(scan(code, "2026-04-01T10:00:00", "v1", "i1", IPHONE_SAFARI) for _ in range(3)),
        scan(code, "2026-04-01T11:15:00", "v2", "i1", ANDROID_CHROME, country="DE"),
        scan(code, "2026-04-01T10:20:00", "v1", "i1", IPHONE_SAFARI, method="HEAD"),
        *(scan(code, "2026-04-02T08:00:00", "b1", "i9", GOOGLEBOT_UA) for _ in range(2)),
        *(scan(code, "2026-04-03T05:00:00", "v3", "i2", WECHAT) for _ in range(2)),
        scan(code, "2026-04-03T23:59:59", "v4", "i3", IPHONE_SAFARI, marker=False, country=None, outcome="inactive"),
        scan(code, "2026-03-31T23:59:59", "v5", "i4", IPHONE_SAFARI),
        scan(code, "2026-04-04T00:00:00", "v6", "i5", IPHONE_SAFARI),
        scan(other, "2026-04-02T12:00:00", "v7", "i6", ANDROID_CHROME),
    ])
    return {"key": key, "code": code, "group": group}


async def get(api: httpx.AsyncClient, path: str, key: str, **params: Any) -> httpx.Response:
    return await api.get(path, headers=bearer(key), params=params)


async def test_code_analytics_shape_and_arithmetic(api: httpx.AsyncClient, dataset: dict[str, Any]) -> None:
    code_id = dataset["code"]["id"]
    response = await get(api, f"/v1/qr-codes/{code_id}/scans", dataset["key"], **WINDOW)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in ("object", "qr_code_id", "since", "until", "group_by")} == {
        "object": "scan_analytics", "qr_code_id": code_id, "since": "2026-04-01T00:00:00Z",
        "until": "2026-04-04T00:00:00Z", "group_by": "day"}
    assert body["totals"] == {"total_scans": 7, "unique_scans": 4, "unique_ips": 3, "bot_scans": 3}  # 2 bots, 1 HEAD
    assert body["timeseries"] == [
        {"bucket": "2026-04-01T00:00:00Z", "scans": 4, "uniques": 2},
        {"bucket": "2026-04-02T00:00:00Z", "scans": 0, "uniques": 0},  # only bots that day
        {"bucket": "2026-04-03T00:00:00Z", "scans": 3, "uniques": 2},
    ]
    b = body["breakdowns"]
    assert b["country"] == [{"country": "US", "scans": 5}, {"country": "DE", "scans": 1},
                            {"country": None, "scans": 1}]
    assert b["device"] == [{"device_type": "mobile", "scans": 7}]
    assert b["os"] == [{"os": "iOS", "scans": 6}, {"os": "Android", "scans": 1}]
    assert b["browser"][0] == {"browser": "Mobile Safari", "scans": 4}
    assert b["scan_method"] == [{"scan_method": "camera", "scans": 4}, {"scan_method": "app_scanner", "scans": 2},
                                {"scan_method": "manual_entry", "scans": 1}]
    assert b["scanner_app"] == [{"scanner_app": "iOS Camera", "scans": 3}, {"scanner_app": "WeChat", "scans": 2},
                                {"scanner_app": "Android Camera", "scans": 1}, {"scanner_app": None, "scans": 1}]
    assert b["outcome"] == [{"outcome": "redirected", "scans": 6}, {"outcome": "inactive", "scans": 1}]


async def test_limit_keeps_the_top_entries(api: httpx.AsyncClient, dataset: dict[str, Any]) -> None:
    body = (await get(api, f"/v1/qr-codes/{dataset['code']['id']}/scans", dataset["key"], limit=1,
                      **WINDOW)).json()
    assert body["breakdowns"]["country"] == [{"country": "US", "scans": 5}]
    assert body["breakdowns"]["scanner_app"] == [{"scanner_app": "iOS Camera", "scans": 3}]


async def test_hourly_buckets_are_contiguous(api: httpx.AsyncClient, dataset: dict[str, Any]) -> None:
    body = (await get(api, f"/v1/qr-codes/{dataset['code']['id']}/scans", dataset["key"], group_by="hour",
                      since="2026-04-01T08:30:00Z", until="2026-04-01T12:00:00+00:00")).json()
    assert body["timeseries"] == [
        {"bucket": "2026-04-01T08:00:00Z", "scans": 0, "uniques": 0},
        {"bucket": "2026-04-01T09:00:00Z", "scans": 0, "uniques": 0},
        {"bucket": "2026-04-01T10:00:00Z", "scans": 3, "uniques": 1},
        {"bucket": "2026-04-01T11:00:00Z", "scans": 1, "uniques": 1},
    ]


async def test_group_analytics_cover_every_code_of_the_group(api: httpx.AsyncClient,
                                                             dataset: dict[str, Any]) -> None:
    response = await get(api, f"/v1/qr-groups/{dataset['group']['id']}/scans", dataset["key"], **WINDOW)
    body = response.json()
    assert body["qr_group_id"] == dataset["group"]["id"] and "qr_code_id" not in body
    assert body["totals"] == {"total_scans": 8, "unique_scans": 5, "unique_ips": 4, "bot_scans": 3}


async def test_scan_count_matches_the_analytics_total(api: httpx.AsyncClient, dataset: dict[str, Any]) -> None:
    code_id = dataset["code"]["id"]
    code = (await api.get(f"/v1/qr-codes/{code_id}", headers=bearer(dataset["key"]))).json()
    body = (await get(api, f"/v1/qr-codes/{code_id}/scans", dataset["key"], since="2026-03-01T00:00:00Z",
                      until="2026-05-01T00:00:00Z")).json()
    assert code["scan_count"] == body["totals"]["total_scans"] == 9


async def test_defaults_cover_the_last_30_days_by_day(api: httpx.AsyncClient, dataset: dict[str, Any]) -> None:
    body = (await get(api, f"/v1/qr-codes/{dataset['code']['id']}/scans", dataset["key"])).json()
    since, until = (datetime.fromisoformat(body[k]) for k in ("since", "until"))
    assert (until - since).days == 30 and abs((datetime.now(UTC) - until).total_seconds()) < 120
    assert body["group_by"] == "day" and len(body["timeseries"]) in (30, 31)
    assert body["totals"]["total_scans"] == 0  # the data set is from April 2026


@pytest.mark.parametrize("params", [
    {"since": "2026-04-05T00:00:00Z", "until": "2026-04-01T00:00:00Z"},
    {"since": "yesterday"},
    {"until": "2026-04-01T00:00:00"},
    {"group_by": "week"},
    {"group_by": "hour", "since": "2026-03-01T00:00:00Z", "until": "2026-04-02T00:00:00Z"},
    {"limit": "51"},
    {"limit": "0"},
    {"since": "0280-12-08T00:00:00Z", "until": "0281-01-07T00:00:00Z"},  # found by schemathesis
])
async def test_bad_parameters_are_a_422_problem(api: httpx.AsyncClient, dataset: dict[str, Any],
                                               params: dict[str, str]) -> None:
    response = await get(api, f"/v1/qr-codes/{dataset['code']['id']}/scans", dataset["key"], **params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] in params


async def test_other_orgs_and_the_other_mode_see_a_404(api: httpx.AsyncClient, dataset: dict[str, Any],
                                                      make_key: KeyFactory) -> None:
    paths = [f"/v1/qr-codes/{dataset['code']['id']}/scans", f"/v1/qr-groups/{dataset['group']['id']}/scans",
             "/v1/qr-codes/qr_doesnotexist/scans"]
    for key in (await make_key("globex"), await make_key(livemode=False)):
        for path in paths:
            response = await get(api, path, key)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/problem+json"


async def test_reading_analytics_needs_the_read_scope(api: httpx.AsyncClient, dataset: dict[str, Any],
                                                      make_key: KeyFactory) -> None:
    key = await make_key(scopes=("qr:write",))
    assert (await get(api, f"/v1/qr-codes/{dataset['code']['id']}/scans", key)).status_code == 403
    assert (await api.get(f"/v1/qr-codes/{dataset['code']['id']}/scans")).status_code == 401


async def test_test_mode_scans_are_only_seen_by_test_keys(api: httpx.AsyncClient, make_key: KeyFactory,
                                                          db: asyncpg.Connection[Any], worker: IngestWorker) -> None:
    key = await make_key(livemode=False)
    created = (await api.post("/v1/qr-codes", headers=bearer(key), json={})).json()
    code = dict(await db.fetchrow("SELECT id, org_id, group_id FROM qr_codes WHERE id = $1", created["id"]))
    await ingest(worker, [scan(code, "2026-04-02T12:00:00", "v", "i", IPHONE_SAFARI, livemode=False)])
    body = (await get(api, f"/v1/qr-codes/{code['id']}/scans", key, **WINDOW)).json()
    assert body["totals"]["total_scans"] == 1
    live = await make_key()
    assert (await get(api, f"/v1/qr-codes/{code['id']}/scans", live, **WINDOW)).status_code == 404


async def test_large_ranges_estimate_uniques_from_sketches(api: httpx.AsyncClient, dataset: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = f"/v1/qr-codes/{dataset['code']['id']}/scans"
    exact = (await get(api, path, dataset["key"], **WINDOW)).json()
    monkeypatch.setattr(analytics, "EXACT_UNIQUES_UP_TO", 0)
    estimated = (await get(api, path, dataset["key"], **WINDOW)).json()
    assert estimated == exact  # these few visitors fall in distinct registers: the estimate is exact
    hourly = {"group_by": "hour", "since": "2026-04-01T10:30:00Z", "until": "2026-04-03T05:30:00Z"}
    assert (await get(api, path, dataset["key"], **hourly)).json()["totals"] == {
        "total_scans": 3, "unique_scans": 2, "unique_ips": 2, "bot_scans": 2}  # partial hours at both ends


async def test_sketch_estimates_stay_within_a_few_percent(api: httpx.AsyncClient, make_key: KeyFactory,
                                                          db: asyncpg.Connection[Any], worker: IngestWorker,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    key = await make_key()
    created = (await api.post("/v1/qr-codes", headers=bearer(key), json={})).json()
    code = dict(await db.fetchrow("SELECT id, org_id, group_id FROM qr_codes WHERE id = $1", created["id"]))
    visitors = 20_000
    events = [scan(code, f"2026-04-0{1 + i % 3}T{i % 24:02d}:00:00", f"visitor{i}", f"ip{i % 5000}", IPHONE_SAFARI)
              for i in range(visitors)]
    for start in range(0, visitors, 5000):  # later batches merge into the hours' existing sketches
        await ingest(worker, events[start:start + 5000])
    monkeypatch.setattr(analytics, "EXACT_UNIQUES_UP_TO", 0)
    totals = (await get(api, f"/v1/qr-codes/{code['id']}/scans", key, **WINDOW)).json()["totals"]
    assert totals["total_scans"] == visitors
    assert abs(totals["unique_scans"] - visitors) / visitors < 0.05
    assert abs(totals["unique_ips"] - 5000) / 5000 < 0.05


async def test_a_long_range_never_holds_all_its_sketches_at_once(api: httpx.AsyncClient, make_key: KeyFactory,
                                                                  db: asyncpg.Connection[Any]) -> None:
    """Three years by day of a code scanned every hour: 26,280 scans, so uniques come from 26,280 hourly sketches
    (54 MB of registers). The request reads and merges them a chunk at a time, so what it holds does not grow
    with the range (it held every sketch and a tuple per register of each: 280 MB, ~2 s with the loop blocked)."""
    key = await make_key()
    created = (await api.post("/v1/qr-codes", headers=bearer(key), json={})).json()
    code = await db.fetchrow("SELECT id, org_id, livemode FROM qr_codes WHERE id = $1", created["id"])
    hours = 3 * 365 * 24
    await db.execute("""
        INSERT INTO scan_hours (code_id, hour, group_id, livemode, org_id, scans, counts, visitors, ips)
        SELECT $1, timestamptz '2023-01-01 00:00:00+00' + make_interval(hours => h), '', $3, $2, 1,
               '{"country": {"US": 1}}'::jsonb,
               set_byte(decode(repeat('00', 1024), 'hex'), h % 1024, 1 + h % 7),
               set_byte(decode(repeat('00', 1024), 'hex'), (h * 7) % 1024, 1 + h % 5)
        FROM generate_series(0, $4 - 1) AS h""", code["id"], code["org_id"], code["livemode"], hours)
    tracemalloc.start()
    try:
        response = await get(api, f"/v1/qr-codes/{code['id']}/scans", key, group_by="day",
                             since="2023-01-01T00:00:00Z", until="2026-01-01T00:00:00Z")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totals"]["total_scans"] == hours and len(body["timeseries"]) == 3 * 365 + 1  # 2024 is a leap year
    assert body["timeseries"][0] == {"bucket": "2023-01-01T00:00:00Z", "scans": 24, "uniques": 24}
    sketches = 2 * hours * 1024
    assert peak < sketches / 2, f"one analytics request held {peak / 1e6:.0f} MB"


async def test_a_busy_partial_hour_is_not_held_at_once(api: httpx.AsyncClient, make_key: KeyFactory,
                                                       db: asyncpg.Connection[Any]) -> None:
    """A range that starts or ends inside an hour (every default range: `until` is now) reads that hour's scans
    themselves. For a busy code or group they are read a chunk at a time too (all at once: ~300 bytes a scan,
    46 MB for 150,000 scans)."""
    key = await make_key()
    created = (await api.post("/v1/qr-codes", headers=bearer(key), json={})).json()
    code = await db.fetchrow("SELECT id, org_id, livemode FROM qr_codes WHERE id = $1", created["id"])
    scans = 60_000  # above EXACT_UNIQUES_UP_TO: the sketches count the uniques
    await db.execute("SELECT ensure_scan_partitions('2026-04-01', '2026-04-01')")
    await db.execute("""
        INSERT INTO scans (scan_id, scanned_at, code_id, org_id, livemode, outcome, method, scan_method, ip_hash,
                           visitor_hash, device_type, os, browser)
        SELECT gen_random_uuid(), timestamptz '2026-04-01 10:00:30+00' + make_interval(secs => i * 0.05), $1, $2,
               $3, 'redirected', 'GET', 'camera', md5('ip' || i % 1000), md5('v' || i), 'mobile', 'iOS',
               'Mobile Safari'
        FROM generate_series(1, $4) AS i""", code["id"], code["org_id"], code["livemode"], scans)
    tracemalloc.start()
    try:
        response = await get(api, f"/v1/qr-codes/{code['id']}/scans", key, group_by="hour",
                             since="2026-04-01T10:00:00Z", until="2026-04-01T10:59:59Z")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 200, response.text
    totals = response.json()["totals"]
    assert totals["total_scans"] == scans
    assert abs(totals["unique_scans"] - scans) < scans * 0.1 and abs(totals["unique_ips"] - 1000) < 100
    assert peak < 8e6, f"one analytics request held {peak / 1e6:.0f} MB for {scans} scans of a partial hour"


async def test_accept_text_csv_answers_the_timeseries_as_csv(api: httpx.AsyncClient, dataset: dict[str, Any]) -> None:
    for path in (f"/v1/qr-codes/{dataset['code']['id']}/scans", f"/v1/qr-groups/{dataset['group']['id']}/scans"):
        response = await api.get(path, params=WINDOW, headers={**bearer(dataset["key"]), "Accept": "text/csv"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        lines = response.text.splitlines()
        assert lines[0] == "bucket,scans,uniques" and len(lines) == 4
    code_csv = await api.get(f"/v1/qr-codes/{dataset['code']['id']}/scans", params=WINDOW,
                             headers={**bearer(dataset["key"]), "Accept": "text/csv"})
    assert code_csv.text.splitlines()[1:] == ["2026-04-01T00:00:00Z,4,2", "2026-04-02T00:00:00Z,0,0",
                                              "2026-04-03T00:00:00Z,3,2"]
