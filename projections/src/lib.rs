//! The read side: the projector that turns the event stream into read
//! models and the audit history, and the queries over them.
#![forbid(unsafe_code)]

mod batch;
mod by_position;
pub mod feed;
pub mod projector;
pub mod read;
pub mod views;
mod writes;
