"""`make bench-freshness`: what read-your-writes costs (docs/freshness.md), measured in one run.

1. Write latency (PATCH of a code and of a group, alternating) with 0 edge processes, then 1, 2 and 4
   healthy ones — idle, and saturated by wrk, with the mechanism on and (the reference for the same load)
   off — and with one of two edges frozen by SIGSTOP (bounded by the lease). Target: p99 < 50 ms with
   healthy edges.
2. The follower's lag under saturation: from the edges' own `/metrics` histogram.
3. Edge scan throughput with the mechanism on and off (`EDGE_READ_YOUR_WRITES=false`): both edges on the
   same CPU, loaded *at the same time* by two wrk processes on the other CPU, so that whatever else runs
   on the machine slows both alike and the CPU goes to each in turn: the ratio of their rates is the
   ratio of their costs per scan. Several rounds; the median and the spread of the ratios are printed.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import httpx

from loadtests.bench_api import percentile
from loadtests.bench_edge import HOST, SERVER_CPU, find_or_install, run_wrk, wait_listening
from loadtests.stack import Stack, scratch_stack
from shared.embedded import free_port
from shared.processes import spawn, stop

WRITES = 200
FROZEN_SECONDS = 3.0


@contextmanager
def edges(stack: Stack, count: int, **env: str) -> Iterator[list[str]]:
    """`count` edge processes (one worker each) on free ports, all on the server CPU."""
    with ExitStack() as cleanup:
        urls = []
        for _ in range(count):
            port = free_port()
            process = spawn(["taskset", "-c", SERVER_CPU, sys.executable, "-m", "control_plane.cli", "edge"],
                            env={**stack.env, "EDGE_BIND": f"127.0.0.1:{port}", **env})
            cleanup.callback(stop, process, signal.SIGTERM)
            wait_listening(port, process)
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_ready(url)
        yield urls


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).json().get("freshness", {}).get("local_cache") == "fresh":
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} never caught up")


@contextmanager
def frozen(process_pid: int) -> Iterator[None]:
    os.kill(process_pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process_pid, signal.SIGCONT)


class Writer:
    def __init__(self, api: httpx.Client, group_id: str, code_id: str) -> None:
        self.api = api
        self.group_id = group_id
        self.code_id = code_id
        self.n = 0

    def write(self) -> float:
        self.n += 1
        path = f"/v1/qr-groups/{self.group_id}" if self.n % 2 else f"/v1/qr-codes/{self.code_id}"
        started = time.perf_counter()
        response = self.api.patch(path, json={"destination": {"type": "url", "url": f"https://e.example/{self.n}"}})
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.text
        return elapsed

    def latencies(self, count: int) -> list[float]:
        return [self.write() for _ in range(count)]


def line(name: str, values: list[float]) -> str:
    return (f"{name:<44} p50 {percentile(values, 50):7.1f} ms  p99 {percentile(values, 99):7.1f} ms  "
            f"max {max(values):7.1f} ms  ({len(values)} writes)")


@contextmanager
def saturated(wrk: str, urls: list[str], slug: str, host: str) -> Iterator[None]:
    """wrk against every edge until the block ends (bounded: wrk runs for at most 10 minutes)."""
    processes = [subprocess.Popen(["taskset", "-c", "1", wrk, "-t1", "-c16", "-d600s", "-H", f"Host: {host}",
                                   f"{url}/{slug}"], stdout=subprocess.DEVNULL) for url in urls]
    try:
        time.sleep(1.0)
        yield
    finally:
        for process in processes:
            stop(process, signal.SIGINT)


def lag_quantiles(url: str) -> str:
    """The follower's lag from the edge's histogram: the bucket bounds holding the median and the p99."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    buckets = [(float(le), float(n)) for le, n in
               re.findall(r'scanroute_edge_invalidation_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', text)]
    total = buckets[-1][1] if buckets else 0.0
    if not total:
        return "no invalidation applied"

    def bound(q: float) -> str:
        return next(f"≤ {le * 1000:g} ms" for le, n in buckets if n >= q * total)

    return f"median {bound(0.5)}, p99 {bound(0.99)} ({total:.0f} invalidations)"


def measure_writes(stack: Stack, writer: Writer, wrk: str | None, slug: str, host: str) -> None:
    writer.latencies(20)  # warm-up
    print(line("no edge (reference)", writer.latencies(WRITES)), flush=True)
    for count in (1, 2, 4):
        with edges(stack, count) as urls:
            print(line(f"{count} edge process(es), idle", writer.latencies(WRITES)), flush=True)
            if wrk:
                with saturated(wrk, urls, slug, host):
                    busy = writer.latencies(WRITES)
                print(line(f"{count} edge process(es), saturated by wrk", busy), flush=True)
                print(f"    follower lag while saturated: {lag_quantiles(urls[0])}", flush=True)
        if wrk:
            with edges(stack, count, EDGE_READ_YOUR_WRITES="false") as urls, saturated(wrk, urls, slug, host):
                busy = writer.latencies(WRITES)
            print(line(f"{count} edge process(es), saturated, mechanism off", busy), flush=True)
    with edges(stack, 2) as urls:
        pid = int(httpx.get(f"{urls[1]}/readyz", timeout=5).json()["freshness"]["edge_id"].split(":")[1])
        with frozen(pid):
            started, during = time.monotonic(), []
            while time.monotonic() - started < FROZEN_SECONDS:
                during.append(writer.write())
        print(line("2 edge processes, one frozen 3 s (SIGSTOP)", during), flush=True)


def measure_scans(stack: Stack, wrk: str, slug: str, host: str, rounds: int, seconds: int) -> None:
    with edges(stack, 1) as on, edges(stack, 1, EDGE_READ_YOUR_WRITES="false") as off:
        ratios, rates = [], {"on": [], "off": []}
        for _ in range(rounds + 1):  # the first round warms up
            with ThreadPoolExecutor(2) as pool:
                both = [pool.submit(run_wrk, wrk, name, f"{url}/{slug}", seconds, 32)
                        for name, url in (("on", on[0]), ("off", off[0]))]
                result_on, result_off = (future.result() for future in both)
            rates["on"].append(result_on.rps)
            rates["off"].append(result_off.rps)
            ratios.append(result_on.rps / result_off.rps)
    ratios, rates = ratios[1:], {name: values[1:] for name, values in rates.items()}
    for name in ("on", "off"):
        print(f"edge scans, read-your-writes {name:<3}: median {statistics.median(rates[name]):,.0f} req/s "
              f"(min {min(rates[name]):,.0f}, max {max(rates[name]):,.0f}; sharing one CPU)")
    print(f"on/off per round: median {statistics.median(ratios):.3f}, spread {min(ratios):.3f}–{max(ratios):.3f} "
          f"({rounds} rounds of {seconds} s, both loaded at once; 1.0 = no cost)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    wrk = find_or_install("wrk")
    if wrk is None:
        print("wrk is missing (apt-get install wrk): measuring idle writes only", flush=True)
    with scratch_stack(("control-plane",), DEFAULT_DOMAIN=HOST) as stack, httpx.Client(
            base_url=stack.urls["api"], headers={"Authorization": f"Bearer {stack.key}"}, timeout=30) as api:
        group = api.post("/v1/qr-groups", json={"destination": {"type": "url", "url": "https://g.example/"}}).json()
        code = api.post("/v1/qr-codes", json={"group_id": group["id"],
                                              "destination": {"type": "url", "url": "https://c.example/"}}).json()
        hot = api.post("/v1/qr-codes", json={"group_id": group["id"]}).json()
        host = hot["domain"]
        print(f"{os.cpu_count()} CPUs; edges on CPU {SERVER_CPU}, wrk on CPU 1; lease 1 s", flush=True)
        measure_writes(stack, Writer(api, group["id"], code["id"]), wrk, hot["slug"], host)
        if wrk:
            measure_scans(stack, wrk, hot["slug"], host, args.rounds, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
