-- The codes list's search (`q`: a substring of the name or the slug, `ILIKE '%…%'`) was a scan of the
-- organisation's codes. Trigram indexes answer it from the few rows that contain the searched text
-- (docs/dashboard.md; BENCHMARKS.md, dashboard). pg_trgm is a trusted extension: the database's owner may
-- create it without being a superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX qr_codes_name_trgm ON qr_codes USING gin (name gin_trgm_ops) WHERE deleted_at IS NULL;
CREATE INDEX qr_codes_slug_trgm ON qr_codes USING gin (slug gin_trgm_ops) WHERE deleted_at IS NULL;

-- Bumped when an owner resets a user's password, changes their role or removes them: a session remembers
-- the value it was signed in with, and one signed in before the change no longer opens a page.
ALTER TABLE users ADD COLUMN session_epoch bigint NOT NULL DEFAULT 0;
