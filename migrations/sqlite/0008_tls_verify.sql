-- Per-webhook certificate verification (Harbor's "skip certificate verification").
ALTER TABLE webhooks ADD COLUMN tls_verify INTEGER NOT NULL DEFAULT 1;
