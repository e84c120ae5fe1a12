"""Prometheus metrics of one webhook dispatcher, served on WEBHOOKS_METRICS_BIND when it is set
(docs/webhooks.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

RESULTS = ("succeeded", "retrying", "failed")  # failed: no attempt left, or the receiver answered 410 Gone
# Pending deliveries: due and waiting for a slot; in flight (leased); scheduled for a later retry;
# parked behind a disabled endpoint.
DELIVERY_STATES = ("due", "in_flight", "scheduled", "parked")
# Enabled endpoints whose circuit is open (nothing sent until the pause ends), and those failing since
# their last success; disabled ones.
ENDPOINT_STATES = ("paused", "failing", "disabled")

QUEUE_DEPTH = """
SELECT (SELECT count(*) FROM events WHERE dispatched_at IS NULL) AS undispatched,
       count(*) FILTER (WHERE next_attempt_at <= $1 AND (leased_until IS NULL OR leased_until <= $1)) AS due,
       count(*) FILTER (WHERE leased_until > $1) AS in_flight,
       count(*) FILTER (WHERE next_attempt_at > $1 AND (leased_until IS NULL OR leased_until <= $1)) AS scheduled,
       count(*) FILTER (WHERE next_attempt_at IS NULL AND (leased_until IS NULL OR leased_until <= $1)) AS parked
FROM webhook_deliveries WHERE status = 'pending'
  AND endpoint_id NOT IN (SELECT id FROM webhook_endpoints WHERE deleted_at IS NOT NULL)"""
ENDPOINT_HEALTH = """
SELECT count(*) FILTER (WHERE enabled AND paused_until > $1) AS paused,
       count(*) FILTER (WHERE enabled AND failing_since IS NOT NULL) AS failing,
       count(*) FILTER (WHERE NOT enabled) AS disabled
FROM webhook_endpoints WHERE deleted_at IS NULL"""


class WebhookMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter("scanroute_webhook_deliveries", "Delivery attempts, by what became of the delivery",
                                  ["result"], registry=self.registry)
        for result in RESULTS:
            self.deliveries.labels(result)
        self.undispatched = Gauge("scanroute_webhook_undispatched_events",
                                  "Outbox events not yet turned into deliveries", registry=self.registry)
        self.queued = Gauge("scanroute_webhook_pending_deliveries", "Pending deliveries, by state",
                            ["state"], registry=self.registry)
        self.endpoints = Gauge("scanroute_webhook_endpoints", "Webhook endpoints in backoff or disabled, by state",
                               ["state"], registry=self.registry)
        self.held = Gauge("scanroute_webhook_held_queues",
                          "Organisation/mode pairs whose events wait in the outbox (WEBHOOK_ORG_QUEUE reached)",
                          registry=self.registry)
        self.in_flight = Gauge("scanroute_webhook_in_flight", "Deliveries this process is sending or recording",
                               registry=self.registry)
