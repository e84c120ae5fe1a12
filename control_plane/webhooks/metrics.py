"""Prometheus metrics of one webhook dispatcher, served on WEBHOOKS_METRICS_BIND when it is set
(docs/webhooks.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

RESULTS = ("succeeded", "retrying", "failed")  # failed: no attempt left, or the receiver answered 410 Gone

# Both are served by partial indexes (events_undispatched, webhook_deliveries_due).
QUEUE_DEPTH = """
SELECT (SELECT count(*) FROM events WHERE dispatched_at IS NULL) AS events,
       (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1) AS due
"""


class WebhookMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter("scanroute_webhook_deliveries", "Delivery attempts, by what became of the delivery",
                                  ["result"], registry=self.registry)
        for result in RESULTS:
            self.deliveries.labels(result)
        self.undispatched = Gauge("scanroute_webhook_undispatched_events",
                                  "Outbox events not yet turned into deliveries", registry=self.registry)
        self.due = Gauge("scanroute_webhook_due_deliveries", "Deliveries due now and not yet sent",
                         registry=self.registry)
