-- People's devices (issue 18): a phone or laptop with the stock WireGuard
-- app, dialing the edge's WireGuard endpoint. `public_key` is the device's
-- WireGuard key (base64, 44 characters; its private key is never stored),
-- `address` its IPv4 address in the devices' range (dotted), `user_email`
-- the person it acts for (lower-case), `tags` a JSON array of `tag:NAME`.
CREATE TABLE devices (
    name        TEXT PRIMARY KEY,
    user_email  TEXT NOT NULL,
    tags        TEXT NOT NULL,
    public_key  TEXT NOT NULL UNIQUE,
    address     TEXT NOT NULL UNIQUE,
    created_by  TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);
