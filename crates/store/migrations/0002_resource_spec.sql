-- The resource as submitted through the API, in the config file's shape
-- (JSON). The edge re-validates it at every load, so settings the typed
-- columns do not carry (udp idle_timeout, ...) survive a restart. NULL for
-- resources the config file manages.
ALTER TABLE resources ADD COLUMN spec TEXT;
