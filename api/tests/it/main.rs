//! The API end to end: a real server per test, on its own PostgreSQL
//! database or SQLite file, spoken to over HTTP. Every test runs on both
//! stores (`<test>::postgres`, `<test>::sqlite`).

mod support;

mod accounts;
mod auth;
mod committed;
mod health;
mod hostile;
mod hygiene;
mod idempotency;
mod limits;
mod live;
mod rbac;
mod restart;
mod security;
mod tickets;
