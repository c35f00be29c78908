-- A user's second factor: the TOTP secret (base32; NULL: none enrolled) and
-- the SHA-256 digests of their unused recovery codes (JSON array).
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN recovery_hashes TEXT NOT NULL DEFAULT '[]';
