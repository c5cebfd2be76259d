//! HTTP and GraphQL edge of Tickets.
#![forbid(unsafe_code)]
pub mod auth;
