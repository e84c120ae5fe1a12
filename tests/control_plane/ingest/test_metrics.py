"""An ingest worker process serves Prometheus metrics on INGEST_METRICS_BIND."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from shared.keys import RedisKeys
from shared.processes import spawn, stop
from tests.conftest import ROOT
from tests.control_plane.ingest.test_ingest_recovery import add, code, scan, wait_for
from tests.ports import free_port

__all__ = ["code"]  # the fixture


async def scrape(url: str) -> dict[str, float]:
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            try:
                text = (await client.get(url)).text
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the metrics port never answered"
                await asyncio.sleep(0.05)
    return {f"{s.name}{s.labels or ''}": s.value for family in text_string_to_metric_families(text)
            for s in family.samples}


@pytest.mark.e2e
async def test_the_worker_reports_what_it_read_stored_and_set_aside(
        env: dict[str, str], redis: aioredis.Redis, redis_namespace: str, code: dict[str, Any],
        db: asyncpg.Connection[Any]) -> None:
    port = free_port()
    events = [scan(code) for _ in range(20)]
    await add(redis, RedisKeys(redis_namespace).scans, [e.encode() for e in events] + [b"not json"])
    worker = spawn([sys.executable, "-m", "control_plane.cli", "ingest"], cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env={**os.environ, **env, "INGEST_CONSUMER": "metered",
                                                   "INGEST_METRICS_BIND": f"127.0.0.1:{port}"})
    try:
        await wait_for(lambda: db.fetchval("SELECT count(*) = 1 FROM scan_dead_letters"))
        metrics = await scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        assert stop(worker, signal.SIGTERM) == 0
    assert metrics["scanroute_ingest_entries_read_total"] == 21
    assert metrics["scanroute_ingest_scans_stored_total"] == 20
    assert metrics["scanroute_ingest_duplicates_total"] == 0
    assert metrics["scanroute_ingest_dead_letters_total{'reason': 'undecodable'}"] == 1
    assert metrics["scanroute_ingest_newest_scan_timestamp_seconds"] >= events[0].ts_ms / 1000 - 1
    assert "scanroute_ingest_lag_entries" in metrics
