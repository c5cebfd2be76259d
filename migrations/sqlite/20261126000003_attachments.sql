-- Attachments read model: evidence files, stored content-addressed by sha256.
CREATE TABLE attachments (
    id           BLOB PRIMARY KEY,
    ticket_id    BLOB NOT NULL,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    uploaded_by  BLOB,
    uploaded_at  TEXT NOT NULL,
    sequence     INTEGER NOT NULL
);
CREATE INDEX attachments_ticket ON attachments (ticket_id, sequence);
CREATE INDEX attachments_sha256 ON attachments (sha256);
