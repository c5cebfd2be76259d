//! The Tickets benchmark, shipped with the project.
//!
//! `cargo run --release -p bench -- --store postgres --scenario all` makes
//! a fresh database, seeds it through the write side in this process, then
//! starts the server in a process of its own (this binary again, serving
//! the same `Application` as `tickets`), drives it over HTTP with a closed
//! loop of keep-alive clients, and prints one table: requests per
//! second and latency percentiles per scenario, each compared with the same
//! work done directly in SQL in the same run. `--target http://127.0.0.1:…`
//! drives a server that is already running instead, seeding over GraphQL.
//! `--tiny` finishes in seconds; `tests/tiny.rs` runs it on both stores.
//!
//! Modules: [`config`] (flags), [`server`] (the store and the seeding
//! application, memory), [`child`] (the server and rebuild processes),
//! [`cpu`] (CPU per request: this process, PostgreSQL, everything else),
//! [`seed`] and [`remote`] (seeding), [`driver`] (closed loop, histograms),
//! [`gql`] (HTTP client, documents), [`scenarios`] (HTTP scenarios),
//! [`reference`] (plain SQL), [`events`] (rebuild data and rebuild),
//! [`report`] (table and JSON), [`run`] (the whole run).
#![forbid(unsafe_code)]

pub mod child;
pub mod config;
pub mod cpu;
pub mod driver;
pub mod events;
pub mod gql;
pub mod reference;
pub mod remote;
pub mod report;
pub mod run;
pub mod scenarios;
pub mod seed;
pub mod server;

pub use run::run;
