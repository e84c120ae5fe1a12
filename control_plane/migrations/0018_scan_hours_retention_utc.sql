-- Retention drops the hourly rows of the days whose partitions it drops: UTC days (migration 0001 bounds each
-- partition at 00:00+00). `hour < cutoff` compared with a date, which PostgreSQL turns into midnight of the
-- session's zone: west of UTC the first hours of the oldest day kept lost their counts though their scans
-- were kept, east of UTC counts outlived their scans. The cutoff is now midnight UTC, in any session.
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
    DELETE FROM scan_hours WHERE hour < (cutoff::timestamp AT TIME ZONE 'UTC');
    RETURN dropped;
END $$;
