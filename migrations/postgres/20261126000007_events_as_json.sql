-- Events and snapshots keep the JSON text as written (`json`) rather than
-- a parsed tree (`jsonb`): nothing queries inside them, and the projector
-- reads every event back as text, which from `jsonb` meant printing each
-- one again (commands/src/json_text.rs). The rewrite fires no row trigger,
-- and every event keeps its content: what it holds now is printed once.
ALTER TABLE events
    ALTER COLUMN payload TYPE json USING payload::json,
    ALTER COLUMN metadata TYPE json USING metadata::json;
ALTER TABLE snapshots ALTER COLUMN payload TYPE json USING payload::json;
