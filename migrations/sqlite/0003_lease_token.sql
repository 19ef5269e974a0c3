-- Each claim of a delivery takes the next token; an attempt is recorded only under the
-- token it was claimed with, so a worker that stalled past its lease can neither send
-- during a newer claim nor overwrite that claim's result.
ALTER TABLE deliveries ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
