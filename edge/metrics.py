"""`/metrics` in Prometheus text format, per edge process (each worker has its own registry and cache).

Counters that the hot path already keeps as plain integers (cache hits and misses) and states (journal
depth, Redis link) are read at scrape time by a collector, so requests pay only for the request counter
and the latency histogram.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.journal import ScanJournal
from edge.local_cache import LocalCache
from edge.redis_link import RedisLink

OUTCOMES = ("redirected", "inactive", "archived", "unconfigured", "deleted", "unknown", "unavailable",
            "not_allowed")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class _StateCollector(Collector):
    def __init__(self, caches: dict[str, LocalCache[Any]], journal: ScanJournal, link: RedisLink) -> None:
        self.caches = caches
        self.journal = journal
        self.link = link

    def collect(self) -> Iterator[Metric]:
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


class EdgeMetrics:
    def __init__(self, caches: dict[str, LocalCache[Any]], journal: ScanJournal, link: RedisLink) -> None:
        self.registry = CollectorRegistry()
        requests = Counter("scanroute_edge_requests", "Scan requests answered, by outcome", ["outcome"],
                           registry=self.registry)
        self.latency = Histogram("scanroute_edge_request_seconds", "Scan request latency inside the edge",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("scanroute_edge_record_batch_size", "Scans per group-committed batch",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.by_outcome = {outcome: requests.labels(outcome) for outcome in OUTCOMES}
        self.registry.register(_StateCollector(caches, journal, link))

    def answered(self, outcome: str, seconds: float) -> None:
        self.by_outcome[outcome].inc()
        self.latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
