//! Use cases: what each operation does, with its access rules, between
//! the GraphQL layer and the write and read sides.

pub mod accounts;
pub mod attachments;
pub mod idempotency;
pub mod tickets;
