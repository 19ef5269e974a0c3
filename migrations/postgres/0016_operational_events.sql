-- Herald's own events (webhook.disabled, delivery.exhausted, ...): the event itself is a
-- row of `events` like any registry event; this says what it is about, and `occurrence`
-- keeps one event per occurrence (a failure announced twice is stored once). A registry
-- cannot write here, so no registry event can pass for one of these or take its key.
CREATE TABLE operational_events (
    event_id    BIGINT  PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL,
    -- The webhook it is about; no foreign key, the event outlives a deleted webhook.
    webhook_id  BIGINT  NOT NULL,
    delivery_id BIGINT,
    occurrence  TEXT    NOT NULL UNIQUE
);
