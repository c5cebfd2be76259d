//! Write side: cqrs-es wiring, the event store choice (PostgreSQL or
//! SQLite) and the services commands need (the cipher, retries).
#![forbid(unsafe_code)]

pub mod cipher;
pub mod db;
pub mod event_repo;
pub mod idempotency;
pub mod json_text;
pub mod keys;
pub mod lease;
pub mod parts;
pub mod statements;
pub mod write;
