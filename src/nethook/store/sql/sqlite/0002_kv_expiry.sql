-- Version 2: expired key/value rows are deleted by the retention purge; this index keeps
-- finding them cheap however much live state there is.
CREATE INDEX kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL;
