-- The sources page shows when each source (NULL: the default endpoint) last sent an event:
-- with this index that is one index lookup per source, not a read of every event.
CREATE INDEX events_by_source ON events (source, received_at);
