-- Short leases that serialise a critical section across API replicas
-- (e.g. the last-admin check and the role change it guards).
CREATE TABLE leases (
    name       text PRIMARY KEY,
    holder     text,
    expires_at timestamptz NOT NULL
);
