-- Warren's state. Portable SQL: it runs unchanged on SQLite and PostgreSQL.
-- Times are Unix milliseconds (BIGINT); flags are BIGINT 0/1; structured
-- settings are JSON text. Ids of log rows are time-sortable text.

CREATE TABLE orgs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE sites (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    name        TEXT NOT NULL,
    managed_by  TEXT NOT NULL,               -- 'file' or 'api'
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);

-- A site's secrets: the current one has retired_ms NULL; a rotated-out one
-- keeps working until grace_until_ms.
CREATE TABLE site_secrets (
    id              TEXT PRIMARY KEY,
    site_id         TEXT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    secret_hash     TEXT NOT NULL,           -- argon2id PHC string
    created_ms      BIGINT NOT NULL,
    retired_ms      BIGINT,
    grace_until_ms  BIGINT
);
CREATE INDEX site_secrets_by_site ON site_secrets (site_id);

CREATE TABLE resources (
    name            TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,           -- http | tls | tcp | udp
    host            TEXT,
    path            TEXT,
    listen          TEXT,
    proxy_protocol  TEXT,                    -- NULL, 'v1' or 'v2'
    balance         TEXT NOT NULL,
    fail_closed     BIGINT NOT NULL,
    health          TEXT,                    -- JSON, NULL when unchecked
    managed_by      TEXT NOT NULL,
    version         BIGINT NOT NULL,         -- bumped on every change
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL
);

-- What the edge routes on must be unique: an http host + path, a tls SNI
-- name, a tcp/udp listen address (tcp and udp may share a port number;
-- port 0, "any free port", never clashes).
CREATE UNIQUE INDEX resources_route ON resources (host, (COALESCE(path, ''))) WHERE kind = 'http';
CREATE UNIQUE INDEX resources_sni ON resources (host) WHERE kind = 'tls';
CREATE UNIQUE INDEX resources_listen ON resources (kind, listen)
    WHERE listen IS NOT NULL AND listen NOT LIKE '%:0';

CREATE TABLE targets (
    resource    TEXT NOT NULL REFERENCES resources (name) ON DELETE CASCADE,
    position    BIGINT NOT NULL,
    site_id     TEXT NOT NULL REFERENCES sites (id),
    address     TEXT NOT NULL,
    PRIMARY KEY (resource, position)
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,            -- public part of the token
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL,               -- argon2id PHC string of the secret part
    scope       TEXT NOT NULL,               -- 'read' or 'admin'
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT,
    last_used_ms BIGINT
);

CREATE TABLE agents (
    instance        TEXT PRIMARY KEY,
    site_id         TEXT NOT NULL,
    version         TEXT NOT NULL,
    platform        TEXT NOT NULL,
    address         TEXT NOT NULL,
    first_seen_ms   BIGINT NOT NULL,
    last_seen_ms    BIGINT NOT NULL
);
CREATE INDEX agents_by_site ON agents (site_id);

CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    detail      TEXT NOT NULL                -- JSON
);

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object      TEXT NOT NULL,
    before_json TEXT,
    after_json  TEXT
);

-- Counters such as the configuration version agents resynchronise against.
CREATE TABLE meta (
    name    TEXT PRIMARY KEY,
    value   BIGINT NOT NULL
);
INSERT INTO meta (name, value) VALUES ('config_version', 0);
INSERT INTO orgs (id, name, created_ms) VALUES ('default', 'default', 0);
