-- Whether Redis may hold rows older than PostgreSQL (docs/freshness.md). A write that could not update
-- Redis sets `pending_through` to the newest outbox `seq`; edges then read PostgreSQL instead of Redis's
-- rows until the cache sync has re-applied the outbox up to there and set it back to 0.
CREATE TABLE cache_repair (
    only_row        boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    pending_through bigint NOT NULL DEFAULT 0
);
INSERT INTO cache_repair DEFAULT VALUES;
