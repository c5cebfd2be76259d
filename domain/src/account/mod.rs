//! The Account aggregate: who may sign in and with which role. Role changes
//! are events, so reviewers can see who granted admin rights and when.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Account, AccountError};
pub use commands::AccountCommand;
pub use events::AccountEvent;
