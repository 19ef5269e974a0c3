-- Processes sharing the database register here and heartbeat; a claim names the process
-- that holds it, so the others can give back a dead process's claims within seconds
-- instead of waiting for their leases.
CREATE TABLE workers (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host         TEXT   NOT NULL,
    pid          BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
ALTER TABLE deliveries ADD COLUMN claimed_by BIGINT;
CREATE INDEX deliveries_claimed_by ON deliveries (claimed_by) WHERE claimed_by IS NOT NULL;
