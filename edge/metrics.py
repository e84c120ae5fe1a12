"""`/metrics` in Prometheus text format, per edge process (each worker has its own registry and cache).

The hot path only bumps plain integers (a counter per outcome, latency buckets, batch-size buckets, cache
hits and misses); a collector turns them into Prometheus metrics at scrape time. prometheus-client's own
Counter and Histogram take a lock per update, which cost a tenth of a scan.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.journal import ScanJournal
from edge.local_cache import LocalCache
from edge.redis_link import RedisLink

if TYPE_CHECKING:
    from edge.code_filter import CodeFilter
    from edge.heap import FrozenHeap
    from edge.invalidations import InvalidationFollower
    from edge.recorder import ScanRecorder

OUTCOMES = ("redirected", "inactive", "archived", "unconfigured", "deleted", "unknown", "unavailable",
            "not_allowed", "scheduled", "expired", "password_prompt", "password_failed", "password_throttled",
            "malformed")
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
    def __init__(self, caches: dict[str, LocalCache[Any]], journal: ScanJournal, link: RedisLink,
                 follower: InvalidationFollower, code_filter: CodeFilter | None = None) -> None:
        self.caches = caches
        self.code_filter = code_filter
        self.journal = journal
        self.link = link
        self.follower = follower
        self.recorder: ScanRecorder | None = None  # set at start-up
        self.heap: FrozenHeap | None = None  # set at start-up
        self.by_outcome = dict.fromkeys(OUTCOMES, 0)
        self.latency = Buckets(LATENCY_BUCKETS)
        self.batch_size = Buckets(BATCH_BUCKETS)
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def answered(self, outcome: str, seconds: float) -> None:
        self.by_outcome[outcome] += 1
        latency = self.latency  # Buckets.observe, inlined: once per request
        latency.counts[bisect.bisect_left(latency.bounds, seconds)] += 1
        latency.total += seconds

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def freshness(self) -> dict[str, Any]:
        """The read-your-writes state of this process (docs/freshness.md), for `/readyz`."""
        follower = self.follower
        now = time.monotonic()
        return {
            "edge_id": follower.edge_id,
            "applied_position": follower.last_id,
            "caught_up_seconds_ago": round(now - follower.caught_up_at, 3) if follower.caught_up_at else None,
            "local_cache": "fresh" if follower.fence.until > now else "fenced",
            "redis_rows": "current" if self.link.rows_current else "pending repair check",
            "stale_answers": sum(cache.stale_answers for cache in self.caches.values()),
        }

    def code_filter_state(self) -> dict[str, Any] | None:
        """The filter of existing codes (docs/freshness.md), for `/readyz`."""
        code_filter = self.code_filter
        if code_filter is None:
            return None
        copy = code_filter.copy
        return {"state": code_filter.state(), "bytes": code_filter.bytes, "bits": copy.m if copy else None,
                "generation": copy.generation if copy else None, "answered_unknown": code_filter.answered,
                "loads": code_filter.loads, "deltas": code_filter.deltas}

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
        weight = GaugeMetricFamily("scanroute_edge_cache_bytes", "Local cache size, estimated (bounded by"
                                   " EDGE_CACHE_MB)", labels=["kind"])
        for kind, cache in self.caches.items():
            hits.add_metric([kind], cache.hits)
            misses.add_metric([kind], cache.misses)
            size.add_metric([kind], len(cache))
            weight.add_metric([kind], cache.bytes + cache.negative_bytes)
        yield from (hits, misses, size, weight)
        yield GaugeMetricFamily("scanroute_edge_journal_depth", "Scans in the local journal, not yet in Redis",
                                value=self.journal.depth)
        yield GaugeMetricFamily("scanroute_edge_journal_bytes", "Size of the local journal (bounded by"
                                " EDGE_JOURNAL_MB)", value=self.journal.size)
        shed = CounterMetricFamily("scanroute_edge_shed", "Scans answered 503 because neither the scan stream nor"
                                   " the journal had room, by reason", labels=["reason"])
        if self.recorder is not None:
            for reason, count in self.recorder.shed.items():
                shed.add_metric([reason], count)
        yield shed
        yield GaugeMetricFamily("scanroute_edge_redis_up", "1 while this process trusts Redis",
                                value=int(self.link.up))
        if self.heap is not None:
            yield from self._collector(self.heap)
        yield from self._freshness()
        if self.code_filter is not None:
            yield from self._code_filter(self.code_filter)

    @staticmethod
    def _collector(heap: FrozenHeap) -> Iterator[Metric]:
        collections = CounterMetricFamily("scanroute_edge_gc_collections", "Collections of Python's cycle"
                                          " collector, by generation (edge/heap.py)", labels=["generation"])
        seconds = CounterMetricFamily("scanroute_edge_gc_seconds", "Time the process spent in them",
                                      labels=["generation"])
        for generation in range(3):
            collections.add_metric([str(generation)], heap.collections[generation])
            seconds.add_metric([str(generation)], heap.seconds[generation])
        yield from (collections, seconds)
        yield GaugeMetricFamily("scanroute_edge_gc_frozen_objects", "Objects frozen out of the collector's"
                                " generations: what survived a collection (most of it the local cache); at most"
                                " this many, as counted at the last check plus those frozen since",
                                value=heap.frozen)
        yield CounterMetricFamily("scanroute_edge_gc_whole_collections", "Collections of everything, frozen"
                                  " objects included, run when those grew by a quarter", value=heap.whole_collections)

    @staticmethod
    def _code_filter(code_filter: CodeFilter) -> Iterator[Metric]:
        yield CounterMetricFamily("scanroute_edge_code_filter_answers", "Unknown slugs answered 404 by the"
                                  " filter of existing codes alone: no Redis or PostgreSQL read, no cache entry",
                                  value=code_filter.answered)
        yield CounterMetricFamily("scanroute_edge_code_filter_bypassed", "Local cache misses looked up without"
                                  " the filter of existing codes, because it did not count at the time (Redis"
                                  " down, fenced, being loaded or checked)", value=code_filter.bypassed)
        yield GaugeMetricFamily("scanroute_edge_code_filter_bytes", "Size of this process's copy of the filter"
                                " of existing codes (outside EDGE_CACHE_MB)", value=code_filter.bytes)
        yield GaugeMetricFamily("scanroute_edge_code_filter_trusted", "1 while the filter of existing codes"
                                " answers unknown slugs, 0 while lookups go on without it",
                                value=int(code_filter.trusted()))
        yield CounterMetricFamily("scanroute_edge_code_filter_loads", "Loads of the filter of existing codes"
                                  " from Redis (whole)", value=code_filter.loads)
        yield CounterMetricFamily("scanroute_edge_code_filter_deltas", "Writes of codes applied to this process's"
                                  " copy of the filter of existing codes from the bits their invalidation named,"
                                  " without a load", value=code_filter.deltas)

    def _freshness(self) -> Iterator[Metric]:
        follower, now = self.follower, time.monotonic()
        stale = CounterMetricFamily("scanroute_edge_stale_answers",
                                    "Rows answered from the local cache unconfirmed, because no store answered",
                                    labels=["kind"])
        for kind, cache in self.caches.items():
            stale.add_metric([kind], cache.stale_answers)
        yield stale
        applied_ms = int((follower.last_id or "0-0").partition("-")[0])
        yield GaugeMetricFamily("scanroute_edge_invalidation_applied_timestamp_seconds",
                                "Time of the newest invalidation this process applied (its stream position)",
                                value=applied_ms / 1000)
        yield follower.lag.family("scanroute_edge_invalidation_lag_seconds",
                                  "From an invalidation's XADD to its drop from this process's local cache")
        age = now - follower.caught_up_at if follower.caught_up_at else float("inf")
        yield GaugeMetricFamily("scanroute_edge_caught_up_age_seconds",
                                "Since the follower last confirmed being at the end of the invalidation stream",
                                value=age)
        yield GaugeMetricFamily("scanroute_edge_local_cache_fresh",
                                "1 while the lease lets the local cache answer, 0 while it is fenced",
                                value=int(follower.fence.until > now))
        yield GaugeMetricFamily("scanroute_edge_redis_rows_current",
                                "1 while Redis's rows count (no repair of Redis pending)",
                                value=int(self.link.rows_current))
