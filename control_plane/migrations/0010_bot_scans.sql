-- Bot scans per code and group over a range (docs/api.md, scan analytics: `totals.bot_scans`). Rollups hold
-- human scans only, so bots are counted from the scans; partial indexes keep that cheap whatever the number
-- of human scans, and cost nothing on inserting a human scan.
CREATE INDEX scans_code_bots ON scans (code_id, scanned_at) WHERE is_bot;
CREATE INDEX scans_group_bots ON scans (group_id, scanned_at) WHERE is_bot AND group_id IS NOT NULL;
