-- When a user last passed a second factor (TOTP), Unix ms: grants with
-- `within` (the escalated tier) allow only that long after it. NULL: never.
ALTER TABLE users ADD COLUMN second_factor_ms BIGINT;
