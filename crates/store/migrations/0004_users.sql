-- People who sign in. `email` is lower-case and unique; `password_hash` an
-- argon2id PHC string (NULL: no local password, SSO only). A session issued
-- before `sessions_after_ms` is dead (logout everywhere, disable).
CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    email              TEXT NOT NULL UNIQUE,
    name               TEXT NOT NULL,
    password_hash      TEXT,
    disabled           BIGINT NOT NULL DEFAULT 0,
    groups             TEXT NOT NULL DEFAULT '[]',
    sessions_after_ms  BIGINT NOT NULL DEFAULT 0,
    created_ms         BIGINT NOT NULL,
    updated_ms         BIGINT NOT NULL
);

-- Keys the edges share: the session-signing key (random, made by the first
-- edge to need it; every edge on the same store signs and checks with it).
CREATE TABLE edge_keys (
    name        TEXT PRIMARY KEY,
    secret      TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);
