-- Per-webhook filters (JSON; NULL means the defaults) and payload format.
ALTER TABLE webhooks ADD COLUMN filters TEXT;
ALTER TABLE webhooks ADD COLUMN format TEXT NOT NULL DEFAULT 'registry-event';
ALTER TABLE webhooks ADD COLUMN template TEXT;
