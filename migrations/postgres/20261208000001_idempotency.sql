-- Idempotency-Key: a mutation's key, what it asked (a digest of the
-- request) and what it did. The stream and version are written by the
-- same transaction as the events the mutation appended, so a retry after
-- a crash finds them; the answer is stored once it is known.
-- Times are milliseconds since the Unix epoch.
CREATE TABLE idempotency_keys (
    scope          TEXT NOT NULL,
    idem_key       TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,
    claim          TEXT NOT NULL,
    created_ms     BIGINT NOT NULL,
    claimed_ms     BIGINT NOT NULL,
    aggregate_type TEXT,
    aggregate_id   TEXT,
    version        BIGINT,
    appended       BIGINT,
    response       TEXT,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_ms);
