"""`make bench-export`: print at volume, against a real control plane and a real `scanroute jobs` process.

- a 10,000-code `pdf_sheet` and `zip` (svg, png): time from the request to `succeeded` (budget: 2 minutes),
  and the worker process's peak memory (VmHWM), next to the same export of 1,000 codes: flat memory
  means the two peaks are close (the ratio near 1);
- a 10,000-row CSV import (budget: 30 s);
- a `scans_csv` of 1,000,000 scans, with the worker's peak memory next to 100,000 scans.

Each measurement starts a fresh worker process, so its peak belongs to that one job.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from loadtests.stack import Stack, scratch_stack
from shared.processes import spawn, stop

JOB_LIMIT = 600.0  # seconds any one job may take before the benchmark gives up
EXPORTS = (
    ("pdf_sheet avery-l7160", {"format": "pdf_sheet", "sheet": {"template": "avery-l7160", "label": "name"}}),
    ("zip svg", {"format": "zip", "image_format": "svg"}),
    ("zip png 300 dpi", {"format": "zip", "image_format": "png", "size_mm": 30, "dpi": 300}),
)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def run_job(stack: Stack, client: httpx.Client, path: str, start: Any) -> tuple[float, float, dict[str, Any]]:
    """Start a worker, queue the job, wait for its end: (seconds, worker peak MB, job)."""
    worker = spawn([sys.executable, "-m", "control_plane.cli", "jobs"], env={**stack.env, "JOBS_POLL_INTERVAL": "0.05"})
    try:
        time.sleep(1.0)  # the worker's start-up is not the job's cost
        started = time.perf_counter()
        job_id = start()
        deadline = started + JOB_LIMIT
        while True:
            job = client.get(f"{path}/{job_id}").json()
            if job["status"] in ("succeeded", "failed") or time.perf_counter() > deadline:
                break
            assert worker.poll() is None, "the worker died"
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        peak = peak_rss_mb(worker.pid)
    finally:
        stop(worker, signal.SIGTERM)
    assert job["status"] == "succeeded", job
    return elapsed, peak, job


def export(stack: Stack, client: httpx.Client, body: dict[str, Any]) -> tuple[float, float, dict[str, Any]]:
    def start() -> str:
        response = client.post("/v1/exports", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    return run_job(stack, client, "/v1/exports", start)


def campaign(rows: int) -> bytes:
    lines = ["name,url,tags,utm_source"] + [f"Table {n},https://example.com/menu/{n},bench,flyer"
                                            for n in range(1, rows + 1)]
    return ("\n".join(lines) + "\n").encode()


async def seed_scans(database_url: str, code_id: str, org_id: str, count: int) -> None:
    """`count` scans over the last 20 days (every 50th a bot), straight into the table."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT ensure_scan_partitions((now() - interval '21 days')::date, now()::date)")
        await conn.execute(
            "INSERT INTO scans (scan_id, scanned_at, code_id, org_id, livemode, outcome, method, scan_method, ip_hash,"
            " visitor_hash, user_agent, referer, accept_language, country, is_bot, device_type, os, browser)"
            " SELECT gen_random_uuid(), now() - (n * interval '1 second') * (1728000.0 / $3), $1, $2, true,"
            " 'redirected', 'GET', 'camera', md5(n::text), md5((n % 5000)::text),"
            " 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)', '', 'en-US', 'US', n % 50 = 0, 'mobile',"
            " 'iOS', 'Mobile Safari' FROM generate_series(1, $3) AS n", code_id, org_id, count)
    finally:
        await conn.close()


def main() -> None:
    with scratch_stack(("control-plane",)) as stack, httpx.Client(
            base_url=stack.urls["api"], headers={"Authorization": f"Bearer {stack.key}"}, timeout=300) as client:
        groups = {}
        for count in (1_000, 10_000):
            group = client.post("/v1/qr-groups", json={"name": f"{count} tables"}).json()
            minted = client.post(f"/v1/qr-groups/{group['id']}/codes", json={"count": count, "name_prefix": "Table "})
            assert minted.status_code == 201, minted.text
            groups[count] = group["id"]
        print("export of 10,000 codes (budget < 120 s), worker peak memory next to 1,000 codes:")
        for name, body in EXPORTS:
            small = export(stack, client, {**body, "group_id": groups[1_000]})
            large = export(stack, client, {**body, "group_id": groups[10_000]})
            print(f"  {name:<22} {large[0]:6.1f} s, {large[2]['file_size'] / 1e6:6.1f} MB file; worker peak "
                  f"{large[1]:.0f} MB (1,000 codes: {small[0]:.1f} s, peak {small[1]:.0f} MB; ratio "
                  f"{large[1] / small[1]:.2f})")

        def start_import() -> str:
            response = client.post("/v1/imports", content=campaign(10_000), headers={"Content-Type": "text/csv"})
            assert response.status_code == 202, response.text
            return str(response.json()["id"])

        seconds, peak, job = run_job(stack, client, "/v1/imports", start_import)
        assert job["result"]["created"] == 10_000
        print(f"import of 10,000 rows (budget < 30 s): {seconds:.1f} s, worker peak {peak:.0f} MB")

        scans = {}
        for count in (100_000, 1_000_000):
            code = client.post("/v1/qr-codes", json={"destination": {"type": "url", "url": "https://example.com/"}}).json()
            org_id = asyncio.run(_org_of(stack.database_url, code["id"]))
            asyncio.run(seed_scans(stack.database_url, code["id"], org_id, count))
            scans[count] = export(stack, client, {"format": "scans_csv", "code_ids": [code["id"]]})
        (small_s, small_peak, _), (large_s, large_peak, large_job) = scans[100_000], scans[1_000_000]
        print(f"scans_csv of 1,000,000 scans: {large_s:.1f} s, {large_job['file_size'] / 1e6:.0f} MB file; worker peak "
              f"{large_peak:.0f} MB (100,000 scans: {small_s:.1f} s, peak {small_peak:.0f} MB; ratio "
              f"{large_peak / small_peak:.2f})")


async def _org_of(database_url: str, code_id: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return str(await conn.fetchval("SELECT org_id FROM qr_codes WHERE id = $1", code_id))
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
