"""`make bench-dashboard`: server-side render time and page weight of the dashboard's heaviest lists.

An organisation with 1,000 groups and 100,000 codes (100 per group), and one code with 1,000,000 scans
stored through the real ingest path. Each page is fetched signed in, through the whole control-plane app
in this process, and compared with the API's JSON answer to the same question measured in the same run
(the ratio is what the dashboard's HTML costs on top of the service call both make). Budgets (issue 14):
groups and codes lists < 150 ms p95, analytics of the 1M-scan code < 300 ms p95. The codes search is also
timed without the trigram indexes of migration 0012 (dropped in this run's scratch database), as the
reference for what they save, and the indexes its plan uses are printed.

    python -m loadtests.bench_dashboard [--codes 100000] [--groups 1000] [--analytics-scans 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import secrets
import time

import asyncpg
import httpx
import redis.asyncio as aioredis

from control_plane.api.app import create_app
from control_plane.services.keys import SCOPES, create_key, ensure_org
from control_plane.services.users import create_user
from loadtests.bench_api import percentile
from loadtests.bench_ingest import ingest_month_of_scans
from loadtests.scan_traffic import Code
from loadtests.stack import scratch_database
from shared.database import create_pool
from shared.settings import ControlPlaneSettings

PASSWORD = "bench password 123"
RUNS = 60


async def seed(database_url: str, groups: int, codes: int) -> tuple[str, str]:
    """The organisation's groups and codes in a few statements; returns (org id, API key)."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        org_id = await ensure_org(conn, "bench")
        await conn.execute("UPDATE organisations SET plan = 'enterprise' WHERE id = $1", org_id)
        key = (await create_key(conn, org_id, livemode=True, scopes=list(SCOPES))).secret
        await create_user(conn, org_id, "bench@example.com", "owner", PASSWORD)
        await conn.execute(
            "INSERT INTO qr_groups (id, org_id, livemode, name, status, destination_type, destination_url)"
            " SELECT 'grp_' || md5('g' || n), $1, true, 'Print run ' || n, 'active', 'url',"
            " 'https://example.com/run/' || n FROM generate_series(1, $2) AS n", org_id, groups)
        await conn.execute(
            "INSERT INTO qr_codes (id, org_id, livemode, kind, type, name, slug, domain, group_id, scan_count,"
            " created_at)"
            " SELECT 'qr_' || md5('c' || n), $1, true, 'dynamic', 'url', 'Table ' || n, substr(md5('s' || n), 1, 9),"
            " 'bench.test', 'grp_' || md5('g' || (n % $3 + 1)), n % 97, now() - n * interval '1 second'"
            " FROM generate_series(1, $2) AS n", org_id, codes, groups)
        await conn.execute("VACUUM ANALYZE qr_codes")
        await conn.execute("VACUUM ANALYZE qr_groups")
    finally:
        await conn.close()
    return org_id, key


async def scanned_code(database_url: str, redis_url: str, org_id: str, scans: int) -> str:
    """A code of the organisation with `scans` scans over 30 days, through the ingest worker."""
    pool = await create_pool(database_url, min_size=1, max_size=2)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        code_id = "qr_" + secrets.token_hex(12)
        await pool.execute("INSERT INTO qr_codes (id, org_id, livemode, kind, type, name, slug, domain)"
                           " VALUES ($1, $2, true, 'dynamic', 'url', 'Scanned a million times', $3, 'bench.test')",
                           code_id, org_id, secrets.token_hex(5))
        await ingest_month_of_scans(pool, redis, database_url, redis_url, Code(code_id, org_id, None), scans)
    finally:
        await redis.aclose()
        await pool.close()
    return code_id


def _indexes(plan: dict[str, object]) -> set[str]:
    found = {str(plan["Index Name"])} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        found |= _indexes(child)
    return found


async def search_plan(database_url: str, org_id: str, text: str) -> str:
    """Which indexes the codes search (`q`, a substring of name or slug) uses, as the service queries it."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) SELECT count(*) FROM qr_codes c WHERE c.org_id = $1 AND c.livemode = true"
            " AND c.deleted_at IS NULL AND (c.name ILIKE $2 OR c.slug ILIKE $2)", org_id, f"%{text}%")
    finally:
        await conn.close()
    top = json.loads(plan)[0]["Plan"]
    return ", ".join(sorted(_indexes(top))) or "none (a scan of the organisation's rows)"


async def signed_in(client: httpx.AsyncClient) -> None:
    form = await client.get("/app/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    done = await client.post("/app/login", data={"email": "bench@example.com", "password": PASSWORD,
                                                 "csrf_token": token.group(1)})
    assert done.status_code == 303, done.text


async def timed(client: httpx.AsyncClient, path: str,
                headers: dict[str, str] | None = None) -> tuple[list[float], bytes]:
    await client.get(path, headers=headers)  # warm-up: pools, template compilation, plans
    timings, body = [], b""
    for _ in range(RUNS):
        started = time.perf_counter()
        response = await client.get(path, headers=headers)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:500])
        body = response.content
    return timings, body


async def assets(client: httpx.AsyncClient, html: bytes) -> int:
    """Bytes of the stylesheets and scripts the page loads (charts are inline SVG, images not counted)."""
    total = 0
    for src in re.findall(rb'(?:href|src)="(/app/static/[^"]+)"', html):
        total += len((await client.get(src.decode())).content)
    return total


def line(label: str, timings: list[float], budget: float | None = None) -> str:
    text = f"{label}: p50 {percentile(timings, 50):.1f} ms, p95 {percentile(timings, 95):.1f} ms"
    return text + (f" (budget p95 < {budget:.0f} ms)" if budget else "")


async def bench(database_url: str, redis_url: str, args: argparse.Namespace) -> None:
    org_id, key = await seed(database_url, args.groups, args.codes)
    code_id = await scanned_code(database_url, redis_url, org_id, args.analytics_scans)
    settings = ControlPlaneSettings.from_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                                              "REDIS_NAMESPACE": f"bench{secrets.token_hex(4)}",
                                              "CACHE_SYNC_INTERVAL": "0"})
    app = create_app(settings)
    api_headers = {"Authorization": f"Bearer {key}"}
    cases: list[tuple[str, str, str, float]] = [
        (f"groups list, page 1 of {args.groups:,} groups", "/app/groups", "/v1/qr-groups", 150),
        (f"codes list, page 1 of {args.codes:,} codes", "/app/codes", "/v1/qr-codes", 150),
        ("codes list, searched", "/app/codes?q=Table+4242", "/v1/qr-codes?q=Table+4242", 150),
        ("codes list, most scanned first", "/app/codes?sort=-scan_count", "/v1/qr-codes?sort=-scan_count", 150),
        (f"analytics of a code with {args.analytics_scans:,} scans, 30 days by day",
         f"/app/codes/{code_id}/analytics", f"/v1/qr-codes/{code_id}/scans", 300),
    ]
    print(f"codes search plan: indexes used: {await search_plan(database_url, org_id, 'Table 4242')}")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp.bench", timeout=60) as client:
            await signed_in(client)
            for label, page, api_path, budget in cases:
                page_times, html = await timed(client, page)
                api_times, _ = await timed(client, api_path, api_headers)
                static = await assets(client, html)
                ratio = percentile(page_times, 95) / percentile(api_times, 95)
                print(line(f"{label}: dashboard", page_times, budget))
                print(line(f"{label}: API JSON (reference)", api_times)
                      + f"; ratio of p95 {ratio:.2f}")
                print(f"{label}: page weight {len(html):,} B HTML + {static:,} B CSS/JS = {len(html) + static:,} B"
                      f" ({len(gzip.compress(html)):,} B HTML gzipped)")
            # The same search without the trigram indexes of migration 0012, in this run: what they save.
            with_indexes, _ = await timed(client, "/app/codes?q=Table+4242")
            conn = await asyncpg.connect(database_url, timeout=10)
            try:
                await conn.execute("DROP INDEX qr_codes_name_trgm, qr_codes_slug_trgm")
            finally:
                await conn.close()
            without, _ = await timed(client, "/app/codes?q=Table+4242")
            print(line("codes list, searched, without the trigram indexes (reference)", without)
                  + f"; with them, again: p95 {percentile(with_indexes, 95):.1f} ms")


def main(args: argparse.Namespace) -> None:
    with scratch_database() as scratch:
        asyncio.run(bench(scratch.database_url, scratch.redis_url, args))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--codes", type=int, default=100_000)
    parser.add_argument("--analytics-scans", type=int, default=1_000_000)
    main(parser.parse_args())
