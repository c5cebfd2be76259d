//! Tickets' domain: the Ticket and Account aggregates, their commands,
//! events, errors and rules. Pure: no IO, no async runtime, no SQL.
#![forbid(unsafe_code)]

pub mod account;
mod email;
pub mod sealed;
pub mod ticket;
pub mod values;
