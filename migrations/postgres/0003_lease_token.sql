-- Each claim of a delivery takes the next token; an attempt is recorded only under the
-- token it was claimed with, so a worker that stalled past its lease can neither send
-- during a newer claim nor overwrite that claim's result. Mirrors the SQLite migration.
ALTER TABLE deliveries ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
