-- Short leases that serialise a critical section across API replicas
-- (e.g. the last-admin check and the role change it guards).
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT,
    expires_at TEXT NOT NULL
);
