-- Browser sessions of the web UI. The cookie holds a random token; only its hash is stored.
CREATE TABLE sessions (
    token_hash TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX sessions_by_expiry ON sessions (expires_at);
-- The webhook page charts the last 24 hours of a webhook's deliveries.
CREATE INDEX deliveries_by_webhook_time ON deliveries (webhook_id, created_at);
