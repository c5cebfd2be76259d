//! The projector against real databases: every test makes its own
//! PostgreSQL database or SQLite file, and the contract tests run on both.

mod access;
mod concurrency;
mod connections;
mod fixture;
mod ordering;
mod replay;
mod write_rules;
