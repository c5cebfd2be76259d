-- Read models: written only by the projector, rebuilt from the events.
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    display_name  text NOT NULL,
    role          text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL,
    version       bigint NOT NULL
);
CREATE INDEX users_created ON users (created_at, id);

CREATE TABLE tickets (
    id             uuid PRIMARY KEY,
    title          text NOT NULL,
    description    text NOT NULL,
    priority       text NOT NULL,
    priority_rank  smallint NOT NULL,
    status         text NOT NULL,
    reporter_id    uuid NOT NULL,
    assignee_id    uuid,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    version        bigint NOT NULL,
    -- Sealed, never plaintext: opened per request for admins only.
    notes_envelope text,
    deleted_at     timestamptz
);
CREATE INDEX tickets_created ON tickets (created_at, id);
CREATE INDEX tickets_updated ON tickets (updated_at, id);
CREATE INDEX tickets_priority ON tickets (priority_rank, created_at, id);
CREATE INDEX tickets_reporter ON tickets (reporter_id, created_at, id);
CREATE INDEX tickets_assignee ON tickets (assignee_id);
CREATE INDEX tickets_status ON tickets (status);

CREATE TABLE ticket_history (
    ticket_id  uuid NOT NULL,
    sequence   bigint NOT NULL,
    at         timestamptz NOT NULL,
    actor_id   uuid,
    actor_role text,
    action     text NOT NULL,
    field      text,
    from_value text,
    to_value   text,
    PRIMARY KEY (ticket_id, sequence)
);

CREATE TABLE projector_checkpoints (
    name           text PRIMARY KEY,
    transaction_id xid8 NOT NULL,
    position       bigint NOT NULL
);
