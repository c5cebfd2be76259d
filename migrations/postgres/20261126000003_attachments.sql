-- Attachments read model: evidence files, stored content-addressed by sha256.
CREATE TABLE attachments (
    id           uuid PRIMARY KEY,
    ticket_id    uuid NOT NULL,
    filename     text NOT NULL,
    content_type text NOT NULL,
    size         bigint NOT NULL,
    sha256       text NOT NULL,
    uploaded_by  uuid,
    uploaded_at  timestamptz NOT NULL,
    sequence     bigint NOT NULL
);
CREATE INDEX attachments_ticket ON attachments (ticket_id, sequence);
CREATE INDEX attachments_sha256 ON attachments (sha256);
