"""What the filter of existing codes costs a write (BENCHMARKS.md, "edge-filter"): the ADD script for one code
and for 1,000 codes, and an edge's GET of the whole filter, against a private redis-server, with a filter
sized for 2,000,000 codes (`python -m loadtests.code_filter_writes`)."""

from __future__ import annotations

import asyncio
import secrets
import statistics
import subprocess
import time

import redis.asyncio as aioredis

from control_plane.services.code_filter import CodeFilterWriter
from shared.code_filter import bits_for, empty
from shared.embedded import find_binary, free_port, redis_answers
from shared.keys import RedisKeys


async def main() -> None:
    port = free_port()
    server = subprocess.Popen([str(find_binary("redis-server")), "--port", str(port), "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        while not redis_answers(port):
            await asyncio.sleep(0.05)
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}")
        keys = RedisKeys("bench")
        await client.set(keys.code_filter, empty(bits_for(2_000_000), 1))
        writer = CodeFilterWriter(client, keys)
        one, thousand = [], []
        for _ in range(200):
            started = time.perf_counter()
            await writer.add([("qr.example.com", secrets.token_urlsafe(6))])
            one.append(time.perf_counter() - started)
        for _ in range(20):
            codes = [("qr.example.com", secrets.token_urlsafe(6)) for _ in range(1000)]
            started = time.perf_counter()
            await writer.add(codes)
            thousand.append(time.perf_counter() - started)
        stats = (await client.info("commandstats"))["cmdstat_evalsha"]
        started = time.perf_counter()
        size = len(await client.get(keys.code_filter) or b"")
        fetched = time.perf_counter() - started
        print(f"ADD of 1 code: median {statistics.median(one) * 1e3:.3f} ms round trip; of 1,000 codes: median"
              f" {statistics.median(thousand) * 1e3:.2f} ms, max {max(thousand) * 1e3:.2f} ms; Redis's own time"
              f" {stats['usec'] / 1000:.1f} ms over {stats['calls']} calls")
        print(f"GET of the {size / 2**20:.2f} MB filter: {fetched * 1e3:.2f} ms")
        await client.aclose()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    asyncio.run(main())
