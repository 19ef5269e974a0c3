-- Per-webhook signature scheme: 'v1' (HMAC-SHA256, every existing webhook) or 'v1a'
-- (ed25519; the private key is sealed in signing_secret as whsk_..., like a v1 secret).
ALTER TABLE webhooks ADD COLUMN signature TEXT NOT NULL DEFAULT 'v1';
-- Mutual TLS to receivers: the client certificate chain (PEM, public) and its private key
-- (sealed, never returned). Both are set or cleared together.
ALTER TABLE webhooks ADD COLUMN client_certificate TEXT;
ALTER TABLE webhooks ADD COLUMN client_key BLOB;
