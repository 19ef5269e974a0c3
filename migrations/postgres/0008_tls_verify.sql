-- Per-webhook certificate verification (Harbor's "skip certificate verification").
ALTER TABLE webhooks ADD COLUMN tls_verify BOOLEAN NOT NULL DEFAULT TRUE;
