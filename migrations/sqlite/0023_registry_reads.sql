-- Herald reads the registry: read access per source (the default endpoint's is in the
-- configuration), what each manifest push was (its facts), the tag -> digest map that
-- events imply, and each source's reconcile.
ALTER TABLE sources ADD COLUMN registry_url TEXT;
ALTER TABLE sources ADD COLUMN registry_username TEXT;
-- Sealed like every secret; never returned.
ALTER TABLE sources ADD COLUMN registry_password BLOB;

-- Why a reconcile made this event up (NULL: the registry sent it).
ALTER TABLE events ADD COLUMN synthesized TEXT;
-- The facts as JSON; facts_state is NULL (nothing to read), 'pending', 'read' or 'failed'
-- (facts_error says why).
ALTER TABLE events ADD COLUMN facts TEXT;
ALTER TABLE events ADD COLUMN facts_state TEXT;
ALTER TABLE events ADD COLUMN facts_error TEXT;
CREATE INDEX events_facts_pending ON events (id) WHERE facts_state = 'pending';

-- A manifest's facts by digest: digests are immutable, so each is read once. Subject tags
-- are not kept here (they change); they come from registry_tags when an event is read.
CREATE TABLE manifest_facts (
    digest  TEXT PRIMARY KEY,
    facts   TEXT NOT NULL,
    read_at INTEGER NOT NULL
);

-- Per source (the default endpoint is 'default') and repository, the digest each tag
-- points at, as the events (and reconciles) say.
CREATE TABLE registry_tags (
    source     TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (source, repository, tag)
);
CREATE INDEX registry_tags_by_digest ON registry_tags (source, repository, digest);

-- One reconcile per source across every process: a process holds it by its lease.
CREATE TABLE reconciles (
    source       TEXT PRIMARY KEY,
    requested_at INTEGER,
    started_at   INTEGER,
    finished_at  INTEGER,
    -- The last repository compared: a stopped run resumes after it.
    cursor       TEXT,
    learned      INTEGER NOT NULL DEFAULT 0,
    repositories INTEGER NOT NULL DEFAULT 0,
    tags         INTEGER NOT NULL DEFAULT 0,
    pushes       INTEGER NOT NULL DEFAULT 0,
    deletes      INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    owner        TEXT,
    lease_until  INTEGER,
    -- distribution's source.instanceID as last seen: a new one means the registry
    -- restarted, and its in-memory queue of events is gone.
    instance_id  TEXT
);
