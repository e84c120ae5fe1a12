-- Webhook fairness (docs/webhooks.md "Fairness"): deliveries are leased one by one instead of held in a
-- batch transaction, endpoints carry a circuit breaker, and fan-out works per organisation and mode.

-- A dispatcher that claims a delivery leases it until `leased_until`; a dispatcher that dies leaves the
-- lease to expire, and another sends the delivery again (at least once).
ALTER TABLE webhook_deliveries ADD COLUMN leased_until timestamptz, ADD COLUMN leased_by text;
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (endpoint_id) WHERE leased_until IS NOT NULL;
-- Each endpoint's own queue, oldest due first.
CREATE INDEX webhook_deliveries_endpoint_due ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';

-- The circuit breaker: failed attempts in a row, and until when nothing is sent to the endpoint.
ALTER TABLE webhook_endpoints ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN paused_until timestamptz;

-- Undispatched events by organisation and mode, so fan-out can go round them in turn.
CREATE INDEX events_undispatched_org ON events (org_id, livemode, seq) WHERE dispatched_at IS NULL;
