//! Authentication building blocks: password hashing and policy, access
//! and refresh tokens. The extractors that use them live with the HTTP
//! layer; the keys live in application state.

pub mod password;
pub mod tokens;
