-- Standard Webhooks signing secrets (sealed), the one being rotated out with its end, and
-- since when a webhook's attempts have all failed (for auto-disable).
ALTER TABLE webhooks ADD COLUMN signing_secret BYTEA;
ALTER TABLE webhooks ADD COLUMN previous_signing_secret BYTEA;
ALTER TABLE webhooks ADD COLUMN previous_secret_until BIGINT;
ALTER TABLE webhooks ADD COLUMN failing_since BIGINT;
