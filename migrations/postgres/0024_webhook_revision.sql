-- A webhook's settings revision: every change of its settings (headers and signing keys
-- included) adds one. Deliveries born claimed are sent with the dispatcher's copy of the
-- settings only while its revision is the one the ingest transaction read.
ALTER TABLE webhooks ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
