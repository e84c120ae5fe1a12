-- Claims a worker handed back because it was stopping (SIGTERM): they do not count against the job's
-- attempts (docs/exports.md, "The job worker"). `attempt` still grows with every claim: it fences writes.
ALTER TABLE jobs ADD COLUMN stops integer NOT NULL DEFAULT 0;
