"""The local cache's estimate of a cached code against the memory it takes (docs/edge.md, "Hostile input":
every cache is bounded in bytes by an estimate that must stay a little above the truth).

`python -m loadtests.cache_weight [N]`: private PostgreSQL and Redis seeded as for `make bench-edge` (plain
codes that take all their routing from their group), one real protocol edge with a cache large enough to
evict nothing; it is warmed up on 2,000 codes, then asked for N codes (100,000 by default) it has not seen.
Printed: the growth of its RSS per code, and of its own estimate (`scanroute_edge_cache_bytes`) per code.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import time
import urllib.request
from pathlib import Path

from loadtests.bench_edge import edge_env, seed, wait_listening
from loadtests.instructions import drive, first_touches
from shared.embedded import EmbeddedServices, free_port, temporary_root
from shared.processes import spawn, stop

WARM_UP = 2000


def _rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) * 1024  # type: ignore[index]


def _estimate(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as answer:
        text = answer.read().decode()
    return float(re.search(r'^scanroute_edge_cache_bytes\{kind="code"\} (\S+)', text, re.MULTILINE)[1])  # type: ignore[index]


def main() -> int:
    codes = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    root = temporary_root("scanroute-cache-weight-")
    services = EmbeddedServices(root, persistent=False)
    services.start()
    os.environ["BENCH_REDIS_URL"] = services.redis_url
    try:
        asyncio.run(seed(services.database_url, codes + WARM_UP))
        port = free_port()
        env = {**os.environ, **edge_env(services, root, port, "cache-weight"), "EDGE_CACHE_MB": "4096",
               "EDGE_CACHE_ENTRIES": str(10 * codes)}
        process = spawn([sys.executable, "-m", "control_plane.cli", "edge"], env=env)
        try:
            wait_listening(port, process, timeout=120)
            request = first_touches()
            drive(port, request, WARM_UP)
            time.sleep(1)
            rss, estimate = _rss(process.pid), _estimate(port)
            drive(port, request, codes)
            time.sleep(1)
            print(f"{codes:,} plain codes cached: RSS growth {(_rss(process.pid) - rss) / codes:,.0f} bytes per code,"
                  f" estimate {(_estimate(port) - estimate) / codes:,.0f} bytes per code")
        finally:
            stop(process, timeout=60)
    finally:
        services.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
