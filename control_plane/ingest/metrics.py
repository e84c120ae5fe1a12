"""Prometheus metrics of one ingest worker, served on INGEST_METRICS_BIND when it is set (docs/ingest.md).

Updated once per batch, never per scan, so prometheus-client's locked counters cost nothing measurable.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

DEAD_LETTER_REASONS = ("undecodable", "rejected", "attempts")


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.read = Counter("scanroute_ingest_entries_read", "Scan-stream entries read, re-read or claimed",
                            registry=self.registry)
        self.stored = Counter("scanroute_ingest_scans_stored", "Scans inserted into PostgreSQL",
                              registry=self.registry)
        self.duplicates = Counter("scanroute_ingest_duplicates",
                                  "Entries whose scan was stored before (redelivered, replayed)",
                                  registry=self.registry)
        self.dead_letters = Counter("scanroute_ingest_dead_letters", "Entries set aside as dead letters",
                                    ["reason"], registry=self.registry)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        self.failed_batches = Counter("scanroute_ingest_failed_batches",
                                      "Batches not stored, to be retried: outage (PostgreSQL or Redis away) or error",
                                      ["kind"], registry=self.registry)
        for kind in ("outage", "error"):
            self.failed_batches.labels(kind)
        self.unread = Gauge("scanroute_ingest_lag_entries", "Entries not yet read by the consumer group",
                            registry=self.registry)
        self.pending = Gauge("scanroute_ingest_pending_entries", "Entries read but not yet acknowledged",
                             registry=self.registry)
        self.stream_length = Gauge("scanroute_ingest_stream_length", "Entries in the scan stream",
                                   registry=self.registry)
        self.newest_scan = Gauge("scanroute_ingest_newest_scan_timestamp_seconds",
                                 "When the newest scan this worker stored was made; time() minus it is the lag",
                                 registry=self.registry)
