-- Retention deletes events no delivery refers to; without this index every such check (and
-- the foreign key check on each deleted event) reads the whole deliveries table.
CREATE INDEX deliveries_by_event ON deliveries (event_id);
