-- Which source an event came from (NULL: the default endpoint) and when the registry says
-- it happened (ms since the epoch; NULL when it did not say so readably): CloudEvents'
-- `source` and `time`, and the API's event records, read them.
ALTER TABLE events ADD COLUMN source TEXT, ADD COLUMN occurred_at BIGINT;
