-- A delivery's id is its Standard Webhooks message id (`webhook-id`), on which receivers
-- deduplicate. `INTEGER PRIMARY KEY` alone reuses the highest id after it is deleted
-- (a deleted webhook, retention), so a receiver would drop a new message as a repeat.
-- AUTOINCREMENT never reuses an id. SQLite cannot add it to a table, so the table is
-- rebuilt with every row and id kept. Foreign keys stay on (a migration runs in a
-- transaction, where they cannot be switched off), so nothing is dropped while anything
-- references it: a DROP of a referenced table would cascade into its children. Renaming
-- `deliveries` points `attempts` at the old copy; `attempts` is then rebuilt against the
-- new table, and the old copies go, children first.
ALTER TABLE deliveries RENAME TO deliveries_old;
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id        INTEGER NOT NULL REFERENCES events(id),
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'retrying', 'succeeded', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    locked_until    INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    -- The last request sent (Authorization and custom header values redacted);
    -- request_body is NULL when it is the event body itself, to store it once.
    request_method  TEXT,
    request_url     TEXT,
    request_headers TEXT,
    request_body    TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    lease_token     INTEGER NOT NULL DEFAULT 0
);
INSERT INTO deliveries (id, webhook_id, event_id, state, attempts, next_attempt_at,
    locked_until, last_status, last_error, request_method, request_url, request_headers,
    request_body, created_at, updated_at, lease_token)
SELECT id, webhook_id, event_id, state, attempts, next_attempt_at, locked_until,
    last_status, last_error, request_method, request_url, request_headers, request_body,
    created_at, updated_at, lease_token
FROM deliveries_old;

ALTER TABLE attempts RENAME TO attempts_old;
CREATE TABLE attempts (
    id               INTEGER PRIMARY KEY,
    delivery_id      INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    started_at       INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    status           INTEGER,
    error            TEXT,
    response_headers TEXT    NOT NULL DEFAULT '[]',
    response_body    TEXT    NOT NULL DEFAULT '',
    truncated        INTEGER NOT NULL DEFAULT 0,
    manual           INTEGER NOT NULL DEFAULT 0
);
INSERT INTO attempts SELECT * FROM attempts_old;

DROP TABLE attempts_old;
DROP TABLE deliveries_old;
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state IN ('pending', 'retrying');
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id);
CREATE INDEX deliveries_by_webhook_time ON deliveries (webhook_id, created_at);
CREATE INDEX deliveries_by_event ON deliveries (event_id);
