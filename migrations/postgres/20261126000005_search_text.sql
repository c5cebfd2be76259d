-- Searchable text, lower-cased by the projector (SQLite's lower() folds
-- ASCII only, so it is computed in Rust for both stores).
ALTER TABLE tickets ADD COLUMN search_text text NOT NULL DEFAULT '';
UPDATE tickets SET search_text = lower(title || E'\n' || description);
