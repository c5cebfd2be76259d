-- Read models: written only by the projector, rebuilt from the events.
CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    version       INTEGER NOT NULL
);
CREATE INDEX users_created ON users (created_at, id);

CREATE TABLE tickets (
    id             BLOB PRIMARY KEY,
    title          TEXT NOT NULL,
    description    TEXT NOT NULL,
    priority       TEXT NOT NULL,
    priority_rank  INTEGER NOT NULL,
    status         TEXT NOT NULL,
    reporter_id    BLOB NOT NULL,
    assignee_id    BLOB,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    version        INTEGER NOT NULL,
    notes_envelope TEXT,
    deleted_at     TEXT
);
CREATE INDEX tickets_created ON tickets (created_at, id);
CREATE INDEX tickets_updated ON tickets (updated_at, id);
CREATE INDEX tickets_priority ON tickets (priority_rank, created_at, id);
CREATE INDEX tickets_reporter ON tickets (reporter_id, created_at, id);
CREATE INDEX tickets_assignee ON tickets (assignee_id);
CREATE INDEX tickets_status ON tickets (status);

CREATE TABLE ticket_history (
    ticket_id  BLOB NOT NULL,
    sequence   INTEGER NOT NULL,
    at         TEXT NOT NULL,
    actor_id   BLOB,
    actor_role TEXT,
    action     TEXT NOT NULL,
    field      TEXT,
    from_value TEXT,
    to_value   TEXT,
    PRIMARY KEY (ticket_id, sequence)
);

CREATE TABLE projector_checkpoints (
    name           TEXT PRIMARY KEY,
    transaction_id INTEGER NOT NULL,
    position       INTEGER NOT NULL
);
