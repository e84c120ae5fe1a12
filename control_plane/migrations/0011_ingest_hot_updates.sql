-- The ingest worker updates these rows in every batch (a code's scan_count, the rollups and sketches of the
-- current hour). With free space left on each page, PostgreSQL updates a row in place, a HOT update that adds
-- no index entries, as none of the columns it changes is indexed; on full pages every update adds an entry to
-- every index (qr_codes has nine). docs/ingest.md, "Throughput". Applies to pages filled from now on.
ALTER TABLE qr_codes SET (fillfactor = 70);
ALTER TABLE scan_rollups SET (fillfactor = 80);
ALTER TABLE scan_sketches SET (fillfactor = 80);
