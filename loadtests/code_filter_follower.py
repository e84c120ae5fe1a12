"""What one code creation costs an edge's invalidation follower (BENCHMARKS.md, "filter-delta"): the creation's
entry either names the bits it set (the edge sets them in its copy) or does not (the edge loads the whole
filter, as every edge did before), alternating in rounds, against a private redis-server holding a filter
sized for 2,000,000 codes (1,000,000 codes at half its capacity):

    python -m loadtests.code_filter_follower [--creations 100] [--rounds 3]

Each creation is the control plane's own steps (`CodeFilterWriter.add`, `EdgeCache.invalidate`, and the wait
for the edges' confirmations that holds a write's 2xx), followed by one real follower thread. Printed per
creation: the write's wait for confirmation, the follower thread's CPU time (it holds the GIL meanwhile, so
the event loop's scans wait), and the bytes Redis sent to its clients.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import threading
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from control_plane.services.cache import EdgeCache, filter_delta
from edge.code_filter import CodeFilter
from edge.invalidations import InvalidationFollower
from edge.local_cache import Fence
from edge.redis_link import RedisLink
from shared.code_filter import DELTA_KEYS, FilterCopy, bits_for, empty, encode_delta
from shared.embedded import find_binary, free_port, redis_answers
from shared.keys import NEGATIVE_ENTRIES, RedisKeys

CAPACITY = 2_000_000
DOMAIN = "qr.example.com"


def thread_cpu(thread: threading.Thread) -> float:
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


async def sent_bytes(client: aioredis.Redis) -> int:
    return int((await client.info("stats"))["total_net_output_bytes"])


async def creations(cache: EdgeCache, follower: InvalidationFollower, count: int, *, delta: bool,
                    ) -> tuple[list[float], float, float]:
    """(each write's wait for the edge, follower CPU seconds per creation, bytes sent per creation)."""
    waits = []
    cpu, sent = thread_cpu(follower._thread), await sent_bytes(cache.redis)
    for _ in range(count):
        code = (DOMAIN, secrets.token_urlsafe(6))
        shape = await cache.code_filter.add([code])
        position = await cache.invalidate([NEGATIVE_ENTRIES],
                                          filter_delta=filter_delta([code], {shape}) if delta else None)
        assert position is not None
        started = time.perf_counter()
        assert not await cache.confirmations.wait(position), "the follower did not confirm within the lease"
        waits.append(time.perf_counter() - started)
    return waits, (thread_cpu(follower._thread) - cpu) / count, (await sent_bytes(cache.redis) - sent) / count


def pieces(code_filter: CodeFilter, raw: bytes) -> str:
    """The copy's own part, without the follower's read and confirmation: building it from a GET's bytes, and
    setting the bits of a delta of 1 and of 500 codes (medians of 50)."""
    def median(work: Callable[[], object]) -> float:
        times = []
        for _ in range(50):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e6

    copy = code_filter.copy
    assert copy is not None
    one = encode_delta((copy.generation, copy.m), [(DOMAIN, secrets.token_urlsafe(6))])
    many = encode_delta((copy.generation, copy.m), [(DOMAIN, secrets.token_urlsafe(6)) for _ in range(DELTA_KEYS)])
    return (f"in the edge's thread: FilterCopy from the GET's bytes {median(lambda: FilterCopy(raw)):.0f} µs;"
            f" apply a delta of 1 code {median(lambda: code_filter.apply(one)):.1f} µs,"
            f" of {DELTA_KEYS} codes {median(lambda: code_filter.apply(many)):.0f} µs")


async def main(args: argparse.Namespace) -> None:
    port = free_port()
    server = subprocess.Popen([str(find_binary("redis-server")), "--port", str(port), "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}"
    try:
        while not redis_answers(port):
            await asyncio.sleep(0.05)
        client = aioredis.Redis.from_url(url)
        keys = RedisKeys("bench")
        await client.set(keys.code_filter, empty(bits_for(CAPACITY), 1))
        cache = EdgeCache(client, keys)
        code_filter = CodeFilter(keys.code_filter, RedisLink(), Fence())
        follower = InvalidationFollower(url, keys, [], Fence(), "bench-edge", lambda _: None,
                                        code_filter=code_filter)
        follower.start()
        follower.ready.wait(10)
        results: dict[bool, tuple[list[float], list[float], list[float]]] = {False: ([], [], []), True: ([], [], [])}
        for _ in range(args.rounds):
            for delta in (False, True):
                waits, cpu, sent = await creations(cache, follower, args.creations, delta=delta)
                results[delta][0].extend(waits)
                results[delta][1].append(cpu)
                results[delta][2].append(sent)
        loads, deltas = code_filter.loads, code_filter.deltas
        size = await client.strlen(keys.code_filter)
        follower.stop()
        parts = pieces(code_filter, await client.get(keys.code_filter) or b"")
        await client.aclose()
    finally:
        server.terminate()
        server.wait()
    print(f"filter {size / 2**20:.2f} MB; {args.rounds} rounds x {args.creations} creations each way;"
          f" follower: {loads} loads, {deltas} deltas")
    for delta, how in ((False, "entry without bits: load whole"), (True, "entry naming its bits: delta")):
        waits, cpu, sent = results[delta]
        print(f"{how:32} write waits median {statistics.median(waits) * 1e3:6.2f} ms,"
              f" p90 {statistics.quantiles(waits, n=10)[-1] * 1e3:6.2f} ms; follower CPU"
              f" {statistics.median(cpu) * 1e3:7.3f} ms/creation; Redis sent {statistics.median(sent):12,.0f}"
              " B/creation")
    print(parts)
    before, after = results[False], results[True]
    print(f"ratios (load / delta): wait {statistics.median(before[0]) / statistics.median(after[0]):.1f}x,"
          f" follower CPU {statistics.median(before[1]) / statistics.median(after[1]):.0f}x,"
          f" bytes {statistics.median(before[2]) / statistics.median(after[2]):.0f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
