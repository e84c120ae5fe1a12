-- Deleting a webhook endpoint marks it (docs/webhooks.md, "Deleting an endpoint"): from then on it gets no
-- fan-out, claims or API answers, and the dispatchers remove its delivery log in short batches, then the row.
-- A DELETE cascading over the whole log at once held the endpoint for as long as the log was long.
-- Idempotent: a database that ran this file under its earlier name (0020_webhook_endpoint_deletes) has both.
ALTER TABLE webhook_endpoints ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
CREATE INDEX IF NOT EXISTS webhook_endpoints_deleted ON webhook_endpoints (deleted_at) WHERE deleted_at IS NOT NULL;
