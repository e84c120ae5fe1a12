-- One analytics row per code and hour (docs/ingest.md, "Hourly counts"): the hourly sketches gain the number
-- of human scans and their counts per dimension value, packed in one object, and replace `scan_rollups`, which
-- held a row per combination of every dimension — about one row for every two scans over 1,000 codes, and one
-- for every four even for a code scanned hundreds of times an hour (BENCHMARKS.md). The analytics read one
-- dimension at a time and never cross two, so nothing is lost.
--
-- counts: {"country": {"US": 3, "": 1}, "device": {"mobile": 4}, "os": {…}, "browser": {…},
--          "scan_method": {…}, "scanner_app": {…}, "outcome": {…}, "rule": {"": 3, "0": 1}, "variant": {…}}
-- "" stands for none (no country, no scanner app, no rule or variant).
ALTER TABLE scan_sketches RENAME TO scan_hours;
ALTER INDEX scan_sketches_pkey RENAME TO scan_hours_pkey;
ALTER INDEX scan_sketches_group RENAME TO scan_hours_group;
ALTER TABLE scan_hours
    ADD COLUMN scans bigint NOT NULL DEFAULT 0,
    ADD COLUMN counts jsonb NOT NULL DEFAULT '{}';
-- Compressed like the sketches when a row outgrows a page's share (migration 0011).
DO $$
BEGIN
    ALTER TABLE scan_hours ALTER COLUMN counts SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available: scan counts stay compressed with pglz';
END $$;

-- Every hour that has rollups has its sketch (the worker writes both in one transaction); be safe anyway.
INSERT INTO scan_hours (code_id, hour, group_id, livemode, org_id, visitors, ips)
SELECT DISTINCT ON (code_id, hour, group_id, livemode) code_id, hour, group_id, livemode, org_id,
       decode(repeat('00', 1024), 'hex'), decode(repeat('00', 1024), 'hex')
FROM scan_rollups
ON CONFLICT DO NOTHING;

WITH per_value AS (
    SELECT r.code_id, r.hour, r.group_id, r.livemode, d.dimension, d.value, sum(r.scans) AS scans
    FROM scan_rollups r, LATERAL (VALUES
        ('country', r.country), ('device', r.device_type), ('os', r.os), ('browser', r.browser),
        ('scan_method', r.scan_method), ('scanner_app', r.scanner_app), ('outcome', r.outcome),
        ('rule', CASE WHEN r.rule = -1 THEN '' ELSE r.rule::text END),
        ('variant', CASE WHEN r.variant = -1 THEN '' ELSE r.variant::text END)) AS d(dimension, value)
    GROUP BY 1, 2, 3, 4, 5, 6
), per_dimension AS (
    SELECT code_id, hour, group_id, livemode, dimension, jsonb_object_agg(value, scans) AS counts,
           sum(scans) AS scans
    FROM per_value GROUP BY 1, 2, 3, 4, 5
), per_hour AS (
    SELECT code_id, hour, group_id, livemode, jsonb_object_agg(dimension, counts) AS counts,
           max(scans) AS scans  -- every dimension counts every scan once
    FROM per_dimension GROUP BY 1, 2, 3, 4
)
UPDATE scan_hours h SET scans = p.scans, counts = p.counts
FROM per_hour p
WHERE h.code_id = p.code_id AND h.hour = p.hour AND h.group_id = p.group_id AND h.livemode = p.livemode;

DROP TABLE scan_rollups;

CREATE OR REPLACE FUNCTION drop_scan_partitions_before(cutoff date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'scans'::regclass AND c.relname ~ '^scans_[0-9]{8}$'
          AND to_date(substr(c.relname, 7), 'YYYYMMDD') < cutoff
    LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    DELETE FROM scan_hours WHERE hour < cutoff;
    RETURN dropped;
END $$;
