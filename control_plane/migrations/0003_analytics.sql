-- Scan analytics: enrichment columns filled by the ingest worker, dead letters, retention.

-- Added to the partitioned parent, so every existing and future daily partition has them.
ALTER TABLE scans
    ADD COLUMN device_type  text NOT NULL DEFAULT 'unknown',
    ADD COLUMN os           text NOT NULL DEFAULT 'Other',
    ADD COLUMN browser      text NOT NULL DEFAULT 'Other',
    ADD COLUMN scanner_app  text;

-- Human scans counted per code, hour and dimension values, kept by the ingest worker in the transaction that
-- inserts the scans (control_plane/scan_rollups.py): analytics over a million scans read a few thousand rows instead. Unknown country and
-- no scanner app are stored as '' because a primary key cannot hold NULL.
CREATE TABLE scan_rollups (
    code_id      text NOT NULL,
    group_id     text NOT NULL DEFAULT '',
    org_id       text NOT NULL,
    livemode     boolean NOT NULL,
    hour         timestamptz NOT NULL,
    country      text NOT NULL DEFAULT '',
    device_type  text NOT NULL,
    os           text NOT NULL,
    browser      text NOT NULL,
    scan_method  text NOT NULL,
    scanner_app  text NOT NULL DEFAULT '',
    outcome      text NOT NULL,
    scans        bigint NOT NULL,
    PRIMARY KEY (code_id, hour, group_id, livemode, country, device_type, os, browser, scan_method, scanner_app,
                 outcome)
);
CREATE INDEX scan_rollups_group ON scan_rollups (group_id, hour) WHERE group_id <> '';

-- HyperLogLog sketches (1024 one-byte registers) of the visitor and IP hashes of human scans per code and
-- hour (control_plane/unique_sketch.py): unique counts over ranges too large to count exactly.
CREATE TABLE scan_sketches (
    code_id   text NOT NULL,
    group_id  text NOT NULL DEFAULT '',
    org_id    text NOT NULL,
    livemode  boolean NOT NULL,
    hour      timestamptz NOT NULL,
    visitors  bytea NOT NULL,
    ips       bytea NOT NULL,
    PRIMARY KEY (code_id, hour, group_id, livemode)
);
CREATE INDEX scan_sketches_group ON scan_sketches (group_id, hour) WHERE group_id <> '';

-- Register-wise maximum: the union of two sketches.
CREATE FUNCTION sketch_union(a bytea, b bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT string_agg(set_byte('\x00'::bytea, 0, greatest(get_byte(a, i), get_byte(b, i))), ''::bytea ORDER BY i)
    FROM generate_series(0, length(a) - 1) AS i
$$;

-- Stream entries the worker could not ingest (undecodable, or rejected by PostgreSQL): kept whole so that
-- an operator can inspect them and replay them with `scanroute dead-letters replay` after a fix.
CREATE TABLE scan_dead_letters (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id    text NOT NULL,
    payload      bytea NOT NULL,
    error        text NOT NULL,
    deliveries   integer NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    replayed_at  timestamptz
);
CREATE INDEX scan_dead_letters_waiting ON scan_dead_letters (id) WHERE replayed_at IS NULL;

-- Retention is dropping whole daily partitions that end on or before `cutoff` (and the rollups of those
-- days); returns how many partitions went.
CREATE FUNCTION drop_scan_partitions_before(cutoff date) RETURNS integer
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
    DELETE FROM scan_rollups WHERE hour < cutoff;
    DELETE FROM scan_sketches WHERE hour < cutoff;
    RETURN dropped;
END $$;
