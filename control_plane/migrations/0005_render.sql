-- Rendering: what a content-addressed image URL stands for, and the logos embedded in images.

-- Minted when a code's image URL is handed out; the public image route re-renders from it. Rows are
-- immutable: a new payload or design is a new hash (HMAC of both), so the old URL keeps its old image.
CREATE TABLE render_specs (
    hash        text PRIMARY KEY,
    payload     text NOT NULL,
    design      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Logos as fetched once (through the SSRF guard) and normalised to PNG, by SHA-256 of that PNG.
CREATE TABLE render_logos (
    sha256      text PRIMARY KEY,
    png         bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
