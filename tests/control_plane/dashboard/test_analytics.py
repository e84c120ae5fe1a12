from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from control_plane.ingest.worker import IngestWorker
from tests.conftest import KeyFactory, bearer
from tests.control_plane.api.test_analytics import IPHONE_SAFARI, ingest, scan, worker  # noqa: F401
from tests.control_plane.dashboard.conftest import BrowserFactory, UserFactory, sign_in


async def test_code_and_group_analytics_show_the_apis_figures_and_a_chart(
        browser: BrowserFactory, make_user: UserFactory, make_key: KeyFactory, api: httpx.AsyncClient,
        db: asyncpg.Connection[Any], worker: IngestWorker):  # noqa: F811
    await make_user("vic@example.com", "viewer")
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "run"})).json()
    code_id = (await api.post("/v1/qr-codes", headers=bearer(key), json={"group_id": group["id"]})).json()["id"]
    code = dict(await db.fetchrow("SELECT id, org_id, group_id FROM qr_codes WHERE id = $1", code_id))
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    await ingest(worker, [scan(code, an_hour_ago, f"visitor-{n % 2}", "203.0.113.9", IPHONE_SAFARI)
                          for n in range(3)])
    client = browser()
    await sign_in(client, "vic@example.com")
    for path in (f"/app/codes/{code_id}/analytics", f"/app/groups/{group['id']}/analytics?range=1&group_by=hour"):
        page = await client.get(path)
        assert page.status_code == 200
        assert re.search(r'id="total-scans">3<', page.text)
        chart = re.search(r'<div id="timeseries-chart".*?(<svg .*?</svg>)', page.text, re.S)
        assert chart and ">Unique visitors</text>" in chart.group(1) and "<path" in chart.group(1)
        assert "<td>US</td>" in page.text


async def test_an_hourly_range_beyond_the_apis_limit_is_explained(browser: BrowserFactory, make_user: UserFactory,
                                                                  make_key: KeyFactory, api: httpx.AsyncClient):
    await make_user()
    key = await make_key()
    code_id = (await api.post("/v1/qr-codes", headers=bearer(key), json={})).json()["id"]
    client = browser()
    await sign_in(client)
    page = await client.get(f"/app/codes/{code_id}/analytics", params={"range": "90", "group_by": "hour"})
    assert page.status_code == 422 and "a range by hour covers at most 31 days" in page.text
