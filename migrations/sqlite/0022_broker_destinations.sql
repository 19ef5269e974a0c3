-- A source of kind zot or distribution may read its events from NATS instead of HTTP: a
-- durable JetStream pull consumer on a stream, filtered to a subject. Broker destinations
-- need no column: their URL is the webhook's, their credentials its username and
-- (sealed) password.
ALTER TABLE sources ADD COLUMN nats_url TEXT;
ALTER TABLE sources ADD COLUMN nats_subject TEXT;
ALTER TABLE sources ADD COLUMN nats_stream TEXT;
ALTER TABLE sources ADD COLUMN nats_consumer TEXT;
ALTER TABLE sources ADD COLUMN nats_username TEXT;
-- Sealed like every secret; never returned.
ALTER TABLE sources ADD COLUMN nats_password BLOB;
