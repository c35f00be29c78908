-- Every access decision the edges make (once a policy is loaded), for the
-- audit: allowed or denied, who, which resource, the rule, grant or door
-- that decided, how the visitor identified themselves, and from where.
-- Identical decisions within a second are one row with their count.
CREATE TABLE access_decisions (
    id         TEXT PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    resource   TEXT NOT NULL,
    principal  TEXT NOT NULL,
    decision   TEXT NOT NULL,
    reason     TEXT NOT NULL,
    method     TEXT NOT NULL,
    client     TEXT NOT NULL,
    count      BIGINT NOT NULL
);
CREATE INDEX access_decisions_at ON access_decisions (at_ms);
