-- Rules, split, validity, scan limits and passwords on codes and groups (docs/rules.md).
-- `rules`, `split` and `expired_destination` hold the API's normalised JSON; NULL = not set (inherited).
ALTER TABLE qr_codes
    ADD COLUMN rules jsonb,
    ADD COLUMN split jsonb,
    ADD COLUMN valid_from timestamptz,
    ADD COLUMN valid_until timestamptz,
    ADD COLUMN max_scans integer CHECK (max_scans > 0),
    ADD COLUMN expired_destination jsonb,
    ADD COLUMN password_hash text,
    -- set by the ingest worker when the code's human scans reach its effective max_scans
    ADD COLUMN scan_limit_reached_at timestamptz,
    -- `qr.expired` was emitted (once per code)
    ADD COLUMN expired_notified_at timestamptz;

ALTER TABLE qr_groups
    ADD COLUMN rules jsonb,
    ADD COLUMN split jsonb,
    ADD COLUMN valid_from timestamptz,
    ADD COLUMN valid_until timestamptz,
    ADD COLUMN max_scans integer CHECK (max_scans > 0),
    ADD COLUMN expired_destination jsonb,
    ADD COLUMN password_hash text;

-- Codes whose `valid_until` may still need a `qr.expired` event.
CREATE INDEX qr_codes_valid_until_pending ON qr_codes (valid_until)
    WHERE valid_until IS NOT NULL AND expired_notified_at IS NULL;
CREATE INDEX qr_groups_valid_until ON qr_groups (valid_until) WHERE valid_until IS NOT NULL;
