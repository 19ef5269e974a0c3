-- Only a fifo webhook's deliveries need to be found by the order check, so only they are
-- kept in its index: a delivery of any other webhook (normally all of them) no longer
-- writes an index entry on insert and removes it on success. `fifo` is set from the
-- webhook when the delivery is written, and on its unfinished deliveries when its
-- ordering changes.
ALTER TABLE deliveries ADD COLUMN fifo BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE deliveries SET fifo = TRUE
    WHERE state IN ('pending', 'retrying')
      AND webhook_id IN (SELECT id FROM webhooks WHERE ordering = 'fifo');
DROP INDEX deliveries_unfinished_by_webhook;
CREATE INDEX deliveries_unfinished_fifo ON deliveries (webhook_id, id)
    WHERE fifo AND state IN ('pending', 'retrying');
