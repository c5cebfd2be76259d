-- Set by the transaction that empties the read models for a rebuild and
-- cleared when the rebuild is complete, so one stopped half way is
-- finished before a server serves the read models again.
ALTER TABLE projector_checkpoints ADD COLUMN rebuilding boolean NOT NULL DEFAULT false;
