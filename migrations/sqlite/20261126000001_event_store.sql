-- The event store. SQLite serialises writers, so the position's order is
-- the commit order; AUTOINCREMENT keeps it from being reused or renumbered.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    sequence       INTEGER NOT NULL CHECK (sequence >= 1),
    event_type     TEXT NOT NULL,
    event_version  TEXT NOT NULL,
    payload        TEXT NOT NULL,
    metadata       TEXT NOT NULL,
    recorded_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (aggregate_type, aggregate_id, sequence)
);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;

CREATE TABLE snapshots (
    aggregate_type   TEXT NOT NULL,
    aggregate_id     TEXT NOT NULL,
    last_sequence    INTEGER NOT NULL,
    current_snapshot INTEGER NOT NULL,
    payload          TEXT NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

CREATE TABLE data_keys (
    ticket_id  BLOB PRIMARY KEY,
    kid        TEXT NOT NULL,
    wrapped    TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    user_id     BLOB NOT NULL,
    family_id   BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT,
    revoked_at  TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
