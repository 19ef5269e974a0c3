-- Herald's schema on SQLite. Times are Unix milliseconds (UTC); secrets are sealed BLOBs.

CREATE TABLE namespaces (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    description TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);

-- The global namespace holds repositories without a '/'; it always exists.
INSERT INTO namespaces (name, description, created_at)
VALUES ('_global', 'Repositories without a namespace', CAST(strftime('%s','now') AS INTEGER) * 1000);

CREATE TABLE webhooks (
    id             INTEGER PRIMARY KEY,
    namespace_id   INTEGER NOT NULL REFERENCES namespaces(id) ON DELETE CASCADE,
    name           TEXT    NOT NULL,
    url            TEXT    NOT NULL,
    request_method TEXT    NOT NULL,
    content_type   TEXT    NOT NULL,
    username       TEXT,
    password       BLOB,
    enabled        INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (namespace_id, name)
);

-- Ingest looks up the enabled webhooks of one namespace for every relevant event.
CREATE INDEX webhooks_enabled_by_namespace ON webhooks (namespace_id) WHERE enabled = 1;

CREATE TABLE webhook_headers (
    webhook_id INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    name       TEXT    NOT NULL COLLATE NOCASE,
    value      BLOB    NOT NULL,
    PRIMARY KEY (webhook_id, name)
);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    -- The registry's event id: the same event received twice is stored once.
    registry_id TEXT    UNIQUE,
    action      TEXT,
    repository  TEXT,
    namespace   TEXT,
    tag         TEXT,
    digest      TEXT,
    media_type  TEXT,
    actor       TEXT,
    status      TEXT    NOT NULL CHECK (status IN ('accepted', 'skipped', 'ignored')),
    reason      TEXT,
    body        TEXT    NOT NULL,
    received_at INTEGER NOT NULL
);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
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
    updated_at      INTEGER NOT NULL
);

-- Workers look only at due deliveries: the index holds none of the finished history.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state IN ('pending', 'retrying');
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id);

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

CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    email         TEXT,
    admin         INTEGER NOT NULL DEFAULT 0,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    label        TEXT    NOT NULL DEFAULT '',
    -- SHA-256 of the token: the token itself is shown once and never stored.
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
