-- Teams own namespaces; members hold one role each. A namespace without a team
-- (the global namespace, and those created before teams) belongs to the admins.

CREATE TABLE teams (
    id          INTEGER PRIMARY KEY,
    -- Personal teams are named '~<username>': '~' cannot start a team name, so no clash.
    name        TEXT    NOT NULL UNIQUE,
    description TEXT    NOT NULL DEFAULT '',
    personal    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

CREATE TABLE team_members (
    team_id INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role    TEXT    NOT NULL CHECK (role IN ('owner', 'contributor', 'viewer')),
    PRIMARY KEY (team_id, user_id)
);

CREATE INDEX team_members_by_user ON team_members (user_id);

ALTER TABLE namespaces ADD COLUMN team_id INTEGER REFERENCES teams(id);

-- The audit trail keeps names, not references, so it stays readable after deletions.
CREATE TABLE activities (
    id           INTEGER PRIMARY KEY,
    actor        TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    -- The team whose members may read the entry; NULL: admins only.
    team_id      INTEGER,
    team         TEXT,
    namespace    TEXT,
    webhook_id   INTEGER,
    webhook_name TEXT,
    webhook_host TEXT,
    detail       TEXT,
    created_at   INTEGER NOT NULL
);

CREATE INDEX activities_by_team ON activities (team_id, id);
CREATE INDEX activities_by_namespace ON activities (namespace, id);
