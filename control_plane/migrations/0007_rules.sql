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

-- Which rule or split variant chose the destination of a scan (NULL: neither).
ALTER TABLE scans ADD COLUMN rule smallint, ADD COLUMN variant smallint;
-- Rollups keep them as dimensions; -1 stands for NULL because a primary key cannot hold NULL.
ALTER TABLE scan_rollups
    ADD COLUMN rule smallint NOT NULL DEFAULT -1,
    ADD COLUMN variant smallint NOT NULL DEFAULT -1,
    DROP CONSTRAINT scan_rollups_pkey,
    ADD PRIMARY KEY (code_id, hour, group_id, livemode, country, device_type, os, browser, scan_method, scanner_app,
                     outcome, rule, variant);

-- The expiry sweep of the ingest worker (qr.expired once per code) reads only codes not notified yet.
CREATE INDEX qr_codes_limit_reached_pending ON qr_codes (id)
    WHERE scan_limit_reached_at IS NOT NULL AND expired_notified_at IS NULL;
CREATE INDEX qr_codes_group_not_notified ON qr_codes (group_id)
    WHERE expired_notified_at IS NULL AND deleted_at IS NULL;
