-- Dashboard users (docs/dashboard.md): members of one organisation with a role. An e-mail address signs in
-- to exactly one account across the installation, whatever its case.
CREATE TABLE users (
    id             text PRIMARY KEY,
    org_id         text NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    email          text NOT NULL,
    role           text NOT NULL CHECK (role IN ('viewer', 'editor', 'owner')),
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email ON users (lower(email));
CREATE INDEX users_org ON users (org_id, created_at);
