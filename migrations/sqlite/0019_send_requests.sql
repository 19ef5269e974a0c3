-- Sends asked for where no dispatcher runs (the command line): a serving process takes
-- each and sends the delivery at once, as a manual attempt with its own settings.
CREATE TABLE send_requests (
    id           INTEGER PRIMARY KEY,
    delivery_id  INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    requested_at INTEGER NOT NULL
);
