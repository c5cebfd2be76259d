//! Authentication building blocks: password hashing and policy, access
//! tokens, refresh-token sessions and the per-request caller.

pub mod bounded_keys;
pub mod caller;
pub mod password;
pub mod sessions;
pub mod tokens;
