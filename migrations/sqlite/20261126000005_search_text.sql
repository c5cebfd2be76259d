-- Searchable text, lower-cased by the projector (SQLite's lower() folds
-- ASCII only, so it is computed in Rust for both stores).
ALTER TABLE tickets ADD COLUMN search_text TEXT NOT NULL DEFAULT '';
UPDATE tickets SET search_text = lower(title || char(10) || description);
