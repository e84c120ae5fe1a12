-- The tables every part of scanroute builds on.

CREATE TABLE organisations (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    plan        text NOT NULL DEFAULT 'developer'
                CHECK (plan IN ('free', 'developer', 'scale', 'enterprise')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Keys are 160 random bits: a SHA-256 of the secret is as safe as a slow hash and costs nothing per request.
CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    org_id       text NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    livemode     boolean NOT NULL,
    name         text NOT NULL DEFAULT '',
    secret_hash  bytea NOT NULL UNIQUE,
    prefix       text NOT NULL,
    last4        text NOT NULL,
    scopes       text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_keys_org ON api_keys (org_id, livemode, created_at DESC);

CREATE TABLE folders (
    id          text PRIMARY KEY,
    org_id      text NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    livemode    boolean NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX folders_org ON folders (org_id, livemode, created_at DESC);

CREATE TABLE domains (
    id          text PRIMARY KEY,
    org_id      text NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    livemode    boolean NOT NULL,
    hostname    text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domains_org ON domains (org_id, livemode, created_at DESC);

CREATE TABLE qr_groups (
    id                     text PRIMARY KEY,
    org_id                 text NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    livemode               boolean NOT NULL,
    name                   text NOT NULL DEFAULT '',
    description            text NOT NULL DEFAULT '',
    status                 text CHECK (status IN ('active', 'inactive', 'archived')),
    destination_type       text CHECK (destination_type IN ('url', 'page', 'chatbot', 'knowledge_base')),
    destination_url        text,
    destination_page       uuid,
    destination_chatbot    uuid,
    destination_knowledge_base uuid,
    version                bigint NOT NULL DEFAULT 1,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX qr_groups_org ON qr_groups (org_id, livemode, created_at DESC);

CREATE TABLE qr_codes (
    id                     text PRIMARY KEY,
    org_id                 text NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    livemode               boolean NOT NULL,
    kind                   text NOT NULL CHECK (kind IN ('dynamic', 'static')),
    type                   text NOT NULL,
    name                   text NOT NULL DEFAULT '',
    slug                   text,
    domain                 text,
    group_id               text REFERENCES qr_groups (id) ON DELETE SET NULL,
    status                 text CHECK (status IN ('active', 'inactive', 'archived')),
    destination_type       text CHECK (destination_type IN ('url', 'page', 'chatbot', 'knowledge_base')),
    destination_url        text,
    destination_page       uuid,
    destination_chatbot    uuid,
    destination_knowledge_base uuid,
    content                jsonb,
    design                 jsonb,
    folder_id              text REFERENCES folders (id) ON DELETE SET NULL,
    tags                   text[] NOT NULL DEFAULT '{}',
    scan_count             bigint NOT NULL DEFAULT 0,
    version                bigint NOT NULL DEFAULT 1,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz,
    CHECK ((kind = 'dynamic') = (slug IS NOT NULL AND domain IS NOT NULL))
);
-- Slugs stay reserved after a soft delete: the printed code keeps answering 410.
CREATE UNIQUE INDEX qr_codes_domain_slug ON qr_codes (domain, slug) WHERE slug IS NOT NULL;
CREATE INDEX qr_codes_org ON qr_codes (org_id, livemode, created_at DESC) WHERE deleted_at IS NULL;
CREATE INDEX qr_codes_group ON qr_codes (group_id) WHERE group_id IS NOT NULL;
CREATE INDEX qr_codes_folder ON qr_codes (folder_id) WHERE folder_id IS NOT NULL;
-- Upsert looks codes up by destination URL; md5 keeps the index small for 8000-character URLs.
CREATE INDEX qr_codes_upsert ON qr_codes (org_id, livemode, domain, md5(destination_url))
    WHERE deleted_at IS NULL AND kind = 'dynamic' AND destination_url IS NOT NULL;

-- The ordered key/value maps: `position` keeps the order in which keys were first added.
CREATE TABLE qr_group_url_params (
    group_id  text NOT NULL REFERENCES qr_groups (id) ON DELETE CASCADE,
    key       text NOT NULL,
    value     text NOT NULL,
    position  bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (group_id, key)
);
CREATE TABLE qr_group_properties (LIKE qr_group_url_params INCLUDING ALL);
ALTER TABLE qr_group_properties
    ADD FOREIGN KEY (group_id) REFERENCES qr_groups (id) ON DELETE CASCADE;

CREATE TABLE qr_code_url_params (
    code_id   text NOT NULL REFERENCES qr_codes (id) ON DELETE CASCADE,
    key       text NOT NULL,
    value     text NOT NULL,
    position  bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (code_id, key)
);
CREATE TABLE qr_code_properties (LIKE qr_code_url_params INCLUDING ALL);
ALTER TABLE qr_code_properties
    ADD FOREIGN KEY (code_id) REFERENCES qr_codes (id) ON DELETE CASCADE;

-- The events outbox: written in the same transaction as the change it describes.
CREATE TABLE events (
    seq           bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id            text PRIMARY KEY,
    org_id        text NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    livemode      boolean NOT NULL,
    type          text NOT NULL,
    data          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    dispatched_at timestamptz
);
CREATE INDEX events_org ON events (org_id, livemode, created_at DESC);
CREATE INDEX events_undispatched ON events (seq) WHERE dispatched_at IS NULL;

-- One row per scan, partitioned by day. The edge's scan_id (UUIDv7) is the dedupe key; scanned_at is
-- derived from it, so (scan_id, scanned_at) is unique exactly when scan_id is.
CREATE TABLE scans (
    scan_id          uuid NOT NULL,
    scanned_at       timestamptz NOT NULL,
    code_id          text NOT NULL,
    group_id         text,
    org_id           text NOT NULL,
    livemode         boolean NOT NULL,
    outcome          text NOT NULL,
    method           text NOT NULL,
    scan_method      text NOT NULL,
    ip_hash          text NOT NULL,
    visitor_hash     text NOT NULL,
    user_agent       text NOT NULL DEFAULT '',
    referer          text NOT NULL DEFAULT '',
    accept_language  text NOT NULL DEFAULT '',
    country          text,
    is_bot           boolean NOT NULL DEFAULT false,
    properties       jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (scan_id, scanned_at)
) PARTITION BY RANGE (scanned_at);
CREATE INDEX scans_code_time ON scans (code_id, scanned_at);
CREATE INDEX scans_group_time ON scans (group_id, scanned_at) WHERE group_id IS NOT NULL;

-- Creates the daily partitions covering [first_day, last_day]; safe to call concurrently and repeatedly.
CREATE FUNCTION ensure_scan_partitions(first_day date, last_day date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    day date := first_day;
BEGIN
    WHILE day <= last_day LOOP
        BEGIN
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I PARTITION OF scans FOR VALUES FROM (%L) TO (%L)',
                'scans_' || to_char(day, 'YYYYMMDD'), day::text || ' 00:00:00+00',
                (day + 1)::text || ' 00:00:00+00');
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
            NULL;  -- another worker created it first
        END;
        day := day + 1;
    END LOOP;
END $$;
