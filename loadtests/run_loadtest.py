"""`make loadtest`: seed a campaign, scan it with locust while admins re-route it, then account for
every scan: each response the edge gave must be in the analytics exactly once, and no redirect may be
stale. Exits non-zero if anything was lost, duplicated or stale.

Settings (environment): LOAD_USERS (default 50), LOAD_SPAWN_RATE (10/s), LOAD_DURATION (60s), LOAD_DRAIN
(seconds to wait for ingest, 120), plus the campaign knobs of loadtests/campaign.py. Runs against a
scratch stack (loadtests/stack.py): private servers unless DATABASE_URL/REDIS_URL are set.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import redis

from loadtests.campaign import Knobs
from loadtests.seed import seed
from loadtests.stack import Stack, scratch_stack
from shared.keys import INGEST_GROUP, RedisKeys


async def scans_by_code(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT code_id, count(*) AS n FROM scans GROUP BY code_id")
        return {r["code_id"]: r["n"] for r in rows}
    finally:
        await conn.close()


def drain(stack: Stack, expected: int, limit: float) -> dict[str, int]:
    """Wait until the analytics hold `expected` scans, or stop changing, or `limit` seconds pass."""
    deadline, last, last_change = time.monotonic() + limit, -1, time.monotonic()
    while True:
        counts = asyncio.run(scans_by_code(stack.database_url))
        total = sum(counts.values())
        if total != last:
            last, last_change = total, time.monotonic()
        if total >= expected or time.monotonic() > deadline or time.monotonic() - last_change > 15:
            return counts
        time.sleep(0.5)


def report(results: dict[str, Any], rows: dict[str, int], stream: dict[str, int]) -> int:
    responses: dict[str, int] = results["responses"]
    lost = sum(max(0, n - rows.get(code, 0)) for code, n in responses.items())
    duplicated = sum(max(0, n - responses.get(code, 0)) for code, n in rows.items())
    print("\n=== accounting ===")
    print(f"responses seen by locust: {sum(responses.values())} "
          f"({', '.join(f'{s}: {n}' for s, n in sorted(results['statuses'].items()))})")
    print(f"scan stream now: {stream['length']} entries (trimmed behind the ingest), {stream['pending']} pending")
    print(f"rows in the scans table: {sum(rows.values())}")
    print(f"group re-routes during the run: {results['rerouted']}")
    print(f"locust failures: {results['failures']} (stale redirects and unexpected statuses included), "
          f"scenario exceptions: {results['exceptions']}")
    print(f"lost: {lost}   duplicated: {duplicated}   stale: {results['stale_count']}")
    for example in results["stale"][:5]:
        print(f"  stale example: {example}")
    return 1 if lost or duplicated or results["stale_count"] or results["exceptions"] else 0


def main() -> int:
    env = os.environ
    knobs = Knobs.from_env()
    with scratch_stack(("control-plane", "edge", "ingest"), INGEST_BLOCK_MS="50") as stack, \
            tempfile.TemporaryDirectory() as work:
        edge_host = stack.urls["edge"].removeprefix("http://")
        started = time.monotonic()
        campaign = seed(stack.urls["api"], stack.key, edge_host, knobs)
        print(f"seeded {len(campaign.codes)} codes in {len(campaign.groups)} groups "
              f"in {time.monotonic() - started:.1f} s")
        campaign_file, results_file = Path(work) / "campaign.json", Path(work) / "results.json"
        campaign.save(campaign_file)
        command = [str(Path(sys.executable).with_name("locust")), "-f", "loadtests/locustfile.py", "--headless",
                   "-u", env.get("LOAD_USERS", "50"), "-r", env.get("LOAD_SPAWN_RATE", "10"),
                   "-t", env.get("LOAD_DURATION", "60s"), "--host", stack.urls["edge"], "--stop-timeout", "5",
                   "--only-summary", "--exit-code-on-error", "0", "--loglevel", "WARNING"]
        subprocess.run(command, env={**env, **stack.env, "LOADTEST_CAMPAIGN": str(campaign_file),
                                     "LOADTEST_RESULTS": str(results_file)}, check=True)
        results = json.loads(results_file.read_text())
        rows = drain(stack, sum(results["responses"].values()), float(env.get("LOAD_DRAIN", "120")))
        client = redis.Redis.from_url(stack.redis_url)
        keys = RedisKeys(stack.namespace)
        stream = {"length": client.xlen(keys.scans),
                  "pending": client.xpending(keys.scans, INGEST_GROUP)["pending"]}
        client.close()
        return report(results, rows, stream)


if __name__ == "__main__":
    sys.exit(main())
