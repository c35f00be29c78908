-- Every version of the policy, append-only: the live one is the highest
-- version. A rollback is a new version carrying an older one's text. `text`
-- NULL is "no policy" (every resource open), written only by an explicit
-- DELETE through the API. `source` is 'api' or 'file' (a change of the
-- config file's [policy], recorded at start and reload).
CREATE TABLE policy_versions (
    version       BIGINT PRIMARY KEY,
    text          TEXT,
    sha256        TEXT NOT NULL,
    source        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    restored_from BIGINT,
    created_ms    BIGINT NOT NULL
);

-- The tags a site carries for the policy (JSON array of "tag:NAME").
ALTER TABLE sites ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
