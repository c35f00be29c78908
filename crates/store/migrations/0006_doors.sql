-- A resource's own doors, besides sign-in: a password or a PIN (argon2id
-- PHC strings; one of each per resource), and share links (the SHA-256 of
-- the token, hex; the token itself is shown once). A link is dead once
-- revoked or past its expiry (NULL: none).
CREATE TABLE resource_secrets (
    resource    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    PRIMARY KEY (resource, kind)
);

CREATE TABLE share_links (
    id          TEXT PRIMARY KEY,
    resource    TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    note        TEXT NOT NULL DEFAULT '',
    created_by  TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT,
    revoked_ms  BIGINT
);
