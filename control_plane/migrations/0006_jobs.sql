-- Export and import jobs (docs/exports.md): queued here, claimed by `scanroute jobs` with SKIP LOCKED.
CREATE TABLE jobs (
    id              text PRIMARY KEY,  -- exp_… or imp_…
    kind            text NOT NULL CHECK (kind IN ('export', 'import')),
    org_id          text NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    livemode        boolean NOT NULL,
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    request         jsonb NOT NULL,  -- the validated export request, or the import's options
    progress_done   integer NOT NULL DEFAULT 0,
    progress_total  integer NOT NULL DEFAULT 0,
    result          jsonb,  -- an import's {"created", "errors"}
    error           jsonb,  -- a problem document when the job failed
    -- Each claim increments `attempt`; a worker writes only while its attempt is current, so a stalled
    -- worker whose lease ran out can never mix its output with the one that took the job over.
    attempt         integer NOT NULL DEFAULT 0,
    heartbeat_at    timestamptz,
    file_name       text,
    media_type      text,
    file_size       bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    expires_at      timestamptz  -- the file is served (and the signed URL valid) until then
);
CREATE INDEX jobs_waiting ON jobs (created_at) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_org ON jobs (org_id, livemode, kind, created_at DESC);
CREATE INDEX jobs_expiring ON jobs (expires_at) WHERE file_size IS NOT NULL;

-- The codes an export prints, fixed when it was requested (the print check ran on exactly these).
CREATE TABLE job_codes (
    job_id    text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position  integer NOT NULL,
    code_id   text NOT NULL,
    PRIMARY KEY (job_id, position)
);

-- An import's uploaded CSV, kept until the job ends.
CREATE TABLE job_inputs (
    job_id  text PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    body    bytea NOT NULL
);

-- Export files stored in PostgreSQL (the default): every control-plane process can serve them.
CREATE TABLE job_file_chunks (
    job_id   text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt  integer NOT NULL,
    seq      integer NOT NULL,
    data     bytea NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
);
