-- Settings the processes sharing a database must agree on: the check value of the secret
-- key (every process must seal and open secrets with the same key).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
