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

-- Keys the HMAC that names image URLs when IMAGE_URL_SECRET is not set: generated once, shared by every
-- control-plane process, stable across restarts (gen_random_uuid is a CSPRNG; two give 244 random bits).
CREATE TABLE render_secret (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    secret      text NOT NULL
);
INSERT INTO render_secret (secret) VALUES (replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
