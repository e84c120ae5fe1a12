-- The cache sync re-applies every code whose `version` changed, not only the codes an event names
-- (docs/freshness.md, "The cache sync's cursor"): a group's deletion detaches its codes — a new version each —
-- with one `qr_group.deleted` that does not name them, and a write-through of them lost to a Redis outage left
-- their rows with the deleted group's id. `changed_xid` is the id of the transaction that last changed a
-- code's version (or created it); the sync walks the codes in the same range of transaction ids as the events
-- it passes.
--
-- Codes written before this migration get 0 (the events that named them are followed as before). A constant
-- default first, so that the table is not rewritten. Idempotent, should it run again under another number.
ALTER TABLE qr_codes ADD COLUMN IF NOT EXISTS changed_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE qr_codes ALTER COLUMN changed_xid SET DEFAULT pg_current_xact_id();
CREATE INDEX IF NOT EXISTS qr_codes_changed ON qr_codes (changed_xid, id);

CREATE OR REPLACE FUNCTION qr_codes_version_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;
-- Only a change of `version`: counting scans (the ingest worker) leaves it, and the row stays a HOT update.
DROP TRIGGER IF EXISTS qr_codes_version_changed ON qr_codes;
CREATE TRIGGER qr_codes_version_changed BEFORE UPDATE ON qr_codes FOR EACH ROW
    WHEN (NEW.version IS DISTINCT FROM OLD.version) EXECUTE FUNCTION qr_codes_version_changed();
