//! The Ticket aggregate: an IT incident from report to resolution.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Ticket, TicketError};
pub use commands::{AssigneeChange, NewAttachment, TicketCommand, TicketUpdate};
pub use events::TicketEvent;
