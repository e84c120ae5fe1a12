"""`make bench-api`: control-plane budgets (BENCHMARKS.md), measured over HTTP against a real server.

- mint 1,000 codes into a group (target < 1 s), median of several runs;
- group PATCH latency with 10 codes (the reference) and with 10,000 codes (target p99 < 20 ms and
  independent of the number of codes: the ratio should be close to 1).
"""

from __future__ import annotations

import statistics
import time

import httpx

from loadtests.stack import scratch_stack

RUNS = 5
PATCHES = 200


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def mint(client: httpx.Client, group_id: str, count: int) -> float:
    started = time.perf_counter()
    response = client.post(f"/v1/qr-groups/{group_id}/codes", json={"count": count, "name_prefix": "Table "})
    elapsed = time.perf_counter() - started
    assert response.status_code == 201, response.text
    return elapsed


def patch_latencies(client: httpx.Client, group_id: str) -> list[float]:
    latencies = []
    for n in range(PATCHES):
        started = time.perf_counter()
        response = client.patch(f"/v1/qr-groups/{group_id}",
                                json={"destination": {"type": "url", "url": f"https://example.com/{n}"}})
        latencies.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return latencies


def main() -> None:
    with scratch_stack(("control-plane",)) as stack, httpx.Client(
            base_url=stack.urls["api"], headers={"Authorization": f"Bearer {stack.key}"}, timeout=120) as client:
        client.post("/v1/usage")  # warm the connection
        mint_times = []
        for _ in range(RUNS):
            group = client.post("/v1/qr-groups", json={}).json()
            mint_times.append(mint(client, group["id"], 1000))
        small = client.post("/v1/qr-groups", json={}).json()
        mint(client, small["id"], 10)
        large = client.post("/v1/qr-groups", json={}).json()
        mint(client, large["id"], 10_000)
        reference, measured = patch_latencies(client, small["id"]), patch_latencies(client, large["id"])
    print(f"mint 1,000 codes: median {statistics.median(mint_times) * 1000:.0f} ms "
          f"(min {min(mint_times) * 1000:.0f}, max {max(mint_times) * 1000:.0f}; {RUNS} runs; target < 1000 ms)")
    for name, values in (("group of 10", reference), ("group of 10,000", measured)):
        print(f"group PATCH, {name}: p50 {percentile(values, 50):.1f} ms, p99 {percentile(values, 99):.1f} ms "
              f"({PATCHES} requests)")
    ratio = percentile(measured, 99) / percentile(reference, 99)
    print(f"p99 ratio 10,000 / 10 codes: {ratio:.2f} (1.0 = independent of code count; target p99 < 20 ms)")


if __name__ == "__main__":
    main()
