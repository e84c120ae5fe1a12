-- The usage meter: one counter per organisation and calendar month (UTC). Live mode only: test mode is free.
CREATE TABLE usage_counters (
    org_id        text NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    period_start  date NOT NULL,
    qr_generated  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, period_start)
);

CREATE INDEX events_org_type ON events (org_id, livemode, type, created_at DESC);
