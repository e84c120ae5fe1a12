-- The ingest worker updates these rows in every batch (a code's scan_count, the rollups and sketches of the
-- current hour). With free space left on each page, PostgreSQL updates a row in place, a HOT update that adds
-- no index entries, as none of the columns it changes is indexed; on full pages every update adds an entry to
-- every index (qr_codes has nine). docs/ingest.md, "Throughput". Applies to pages filled from now on.
ALTER TABLE qr_codes SET (fillfactor = 70);
ALTER TABLE scan_rollups SET (fillfactor = 80);
ALTER TABLE scan_sketches SET (fillfactor = 80);

-- Sketches are 1,024-byte registers, compressed when stored: lz4 compresses and decompresses them faster than
-- the default pglz (about a fifth of the sketches' cost in the ingest transaction, BENCHMARKS.md). Values stored
-- before stay readable; a server built without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE scan_sketches ALTER COLUMN visitors SET COMPRESSION lz4, ALTER COLUMN ips SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available: scan sketches stay compressed with pglz';
END $$;
