-- The cache sync follows the outbox by the writing transaction's id, then `seq` (docs/freshness.md, "The
-- cache sync's cursor"): `seq` is taken at INSERT, not at COMMIT, so a sync that followed it alone could
-- pass an event whose transaction had not committed yet, and never re-apply it.
--
-- Events written before this migration get 0, so they come first, in `seq` order as before (a cursor kept
-- by an earlier version, a `seq`, becomes the position (0, seq)); later ones get their transaction's id.
-- A constant default first, so that the table is not rewritten.
ALTER TABLE events ADD COLUMN xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
CREATE INDEX events_position ON events (xid, seq);

-- `cache_repair.pending_through` now holds a transaction id horizon (no transaction at or above it had
-- committed when the mark was set): a repair still pending from before is over once the sync has passed
-- every transaction up to this one.
UPDATE cache_repair SET pending_through = pg_current_xact_id()::text::bigint + 1 WHERE pending_through > 0;
