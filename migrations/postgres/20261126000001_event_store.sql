-- The event store: the only source of truth. postgres-es writes the seven
-- named columns; the database fills the rest.
CREATE TABLE events (
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint NOT NULL CHECK (sequence >= 1),
    event_type     text NOT NULL,
    event_version  text NOT NULL,
    payload        jsonb NOT NULL,
    metadata       jsonb NOT NULL,
    -- Global position. Drawn at insert, visible at commit: never read alone.
    position       bigserial NOT NULL UNIQUE,
    -- The writing transaction; the projector reads only below the oldest
    -- running transaction, so a late commit is never skipped.
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE INDEX events_commit_order ON events (transaction_id, position);

-- Events are kept forever: erasure destroys keys, never rows.
CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable';
END $$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();

CREATE TABLE snapshots (
    aggregate_type   text NOT NULL,
    aggregate_id     text NOT NULL,
    last_sequence    bigint NOT NULL,
    current_snapshot bigint NOT NULL,
    payload          jsonb NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Per-ticket data keys, wrapped by a master key. Deleting a row shreds the
-- ticket's sealed text in every event.
CREATE TABLE data_keys (
    ticket_id  uuid PRIMARY KEY,
    kid        text NOT NULL,
    wrapped    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Sessions: opaque refresh tokens, stored hashed, rotated in families.
CREATE TABLE refresh_tokens (
    token_hash  text PRIMARY KEY,
    user_id     uuid NOT NULL,
    family_id   uuid NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
