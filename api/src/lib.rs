//! HTTP and GraphQL edge of Tickets: schema, auth, RBAC, the server's
//! life cycle and its CLI.
#![forbid(unsafe_code)]

pub mod auth;
pub mod blobs;
pub mod config;
pub mod download;
pub mod error;
pub mod graphql;
pub mod http;
pub mod hygiene;
pub mod metrics;
pub mod multipart;
pub mod secrets;
pub mod service;
pub mod state;
pub mod upload;
