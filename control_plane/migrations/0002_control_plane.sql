-- The usage meter: one counter per organisation and calendar month (UTC). Live mode only: test mode is free.
CREATE TABLE usage_counters (
    org_id        text NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    period_start  date NOT NULL,
    qr_generated  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, period_start)
);

CREATE INDEX events_org_type ON events (org_id, livemode, type, created_at DESC);

-- A group's live code count, kept by statement-level triggers so reading it is O(1) whatever the group's
-- size, and a bulk mint of 10,000 codes updates the group row once.
ALTER TABLE qr_groups ADD COLUMN code_count bigint NOT NULL DEFAULT 0;

CREATE FUNCTION qr_groups_count_codes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Only net changes touch a group row: the ingest's scan_count updates change nothing here.
    IF TG_OP = 'INSERT' THEN
        UPDATE qr_groups g SET code_count = g.code_count + d.n
        FROM (SELECT group_id, count(*) AS n FROM new_rows
              WHERE group_id IS NOT NULL AND deleted_at IS NULL GROUP BY group_id) d
        WHERE g.id = d.group_id;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE qr_groups g SET code_count = g.code_count - d.n
        FROM (SELECT group_id, count(*) AS n FROM old_rows
              WHERE group_id IS NOT NULL AND deleted_at IS NULL GROUP BY group_id) d
        WHERE g.id = d.group_id;
    ELSE
        UPDATE qr_groups g SET code_count = g.code_count + d.n
        FROM (SELECT group_id, sum(n) AS n FROM (
                  SELECT group_id, -1 AS n FROM old_rows WHERE group_id IS NOT NULL AND deleted_at IS NULL
                  UNION ALL
                  SELECT group_id, 1 AS n FROM new_rows WHERE group_id IS NOT NULL AND deleted_at IS NULL
              ) changes GROUP BY group_id HAVING sum(n) <> 0) d
        WHERE g.id = d.group_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER qr_codes_count_insert AFTER INSERT ON qr_codes REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION qr_groups_count_codes();
CREATE TRIGGER qr_codes_count_update AFTER UPDATE ON qr_codes REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION qr_groups_count_codes();
CREATE TRIGGER qr_codes_count_delete AFTER DELETE ON qr_codes REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION qr_groups_count_codes();
