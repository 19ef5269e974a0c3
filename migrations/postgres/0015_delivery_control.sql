-- Mirrors migrations/sqlite/0015_delivery_control.sql.
-- Per-webhook delivery control.
-- rate_limit_milli: the rate limit in thousandths of a delivery per second (2.5/s is
-- 2500), NULL for none. ordering: 'none', or 'fifo' for one delivery at a time in order.
-- The circuit breaker, kept here so that every process sharing the database sees it and it
-- survives restarts: circuit_state 'closed', 'open' or 'half-open'; circuit_failures,
-- failed attempts in a row; circuit_open_until (ms), NULL while closed, else when the
-- probe may go (open) or until when the probe's claim holds (half-open); the claims pass
-- over a webhook while it is in the future. circuit_cooldown_ms: the last cool-down,
-- doubled after each failed probe; circuit_probe: the delivery sent as the probe.
ALTER TABLE webhooks ADD COLUMN rate_limit_milli BIGINT;
ALTER TABLE webhooks ADD COLUMN ordering TEXT NOT NULL DEFAULT 'none';
ALTER TABLE webhooks ADD COLUMN circuit_state TEXT NOT NULL DEFAULT 'closed';
ALTER TABLE webhooks ADD COLUMN circuit_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN circuit_open_until BIGINT;
ALTER TABLE webhooks ADD COLUMN circuit_cooldown_ms BIGINT;
ALTER TABLE webhooks ADD COLUMN circuit_probe BIGINT;

-- The claims look closer only at these webhooks, normally none: one look at an empty index.
CREATE INDEX webhooks_gated ON webhooks (id)
    WHERE circuit_open_until IS NOT NULL OR ordering = 'fifo';
-- A fifo delivery waits while an earlier one of its webhook is unfinished: the first
-- entry of its webhook here says whether one is.
CREATE INDEX deliveries_unfinished_by_webhook ON deliveries (webhook_id, id)
    WHERE state IN ('pending', 'retrying');
