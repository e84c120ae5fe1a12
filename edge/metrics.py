"""`/metrics` in Prometheus text format, per edge process (each worker has its own registry and cache).

The hot path only bumps plain integers (a counter per outcome, latency buckets, batch-size buckets, cache
hits and misses); a collector turns them into Prometheus metrics at scrape time. prometheus-client's own
Counter and Histogram take a lock per update, which cost a tenth of a scan.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.journal import ScanJournal
from edge.local_cache import LocalCache
from edge.redis_link import RedisLink

OUTCOMES = ("redirected", "inactive", "archived", "unconfigured", "deleted", "unknown", "unavailable",
            "not_allowed", "malformed")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)


class Buckets:
    """A histogram as plain numbers: one list index and two additions per observation."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, running = [], 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=self.total)


class EdgeMetrics(Collector):
    def __init__(self, caches: dict[str, LocalCache[Any]], journal: ScanJournal, link: RedisLink) -> None:
        self.caches = caches
        self.journal = journal
        self.link = link
        self.by_outcome = dict.fromkeys(OUTCOMES, 0)
        self.latency = Buckets(LATENCY_BUCKETS)
        self.batch_size = Buckets(BATCH_BUCKETS)
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def answered(self, outcome: str, seconds: float) -> None:
        self.by_outcome[outcome] += 1
        self.latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("scanroute_edge_requests", "Scan requests answered, by outcome",
                                       labels=["outcome"])
        for outcome, count in self.by_outcome.items():
            requests.add_metric([outcome], count)
        yield requests
        yield self.latency.family("scanroute_edge_request_seconds", "Scan request latency inside the edge")
        yield self.batch_size.family("scanroute_edge_record_batch_size", "Scans per group-committed batch")
        hits = CounterMetricFamily("scanroute_edge_cache_hits", "Local cache hits", labels=["kind"])
        misses = CounterMetricFamily("scanroute_edge_cache_misses", "Local cache misses", labels=["kind"])
        size = GaugeMetricFamily("scanroute_edge_cache_entries", "Local cache entries", labels=["kind"])
        for kind, cache in self.caches.items():
            hits.add_metric([kind], cache.hits)
            misses.add_metric([kind], cache.misses)
            size.add_metric([kind], len(cache))
        yield from (hits, misses, size)
        yield GaugeMetricFamily("scanroute_edge_journal_depth", "Scans in the local journal, not yet in Redis",
                                value=self.journal.depth)
        yield GaugeMetricFamily("scanroute_edge_redis_up", "1 while this process trusts Redis",
                                value=int(self.link.up))
