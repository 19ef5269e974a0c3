-- Registries other than the default one that feed Herald, each with its own credential:
-- a bearer token (username NULL) as its SHA-256, or Basic auth with an argon2 hash.
CREATE TABLE sources (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL,
    username    TEXT,
    secret_hash TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
