//! The API end to end: a real server per test, on its own PostgreSQL
//! database or SQLite file, spoken to over HTTP. Every test runs on both
//! stores (`<test>::postgres`, `<test>::sqlite`).

mod support;

mod auth;
mod health;
mod hostile;
mod live;
mod rbac;
mod restart;
mod security;
mod tickets;
