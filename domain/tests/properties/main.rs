//! Properties of both aggregates over random command sequences, plausible
//! and implausible alike: every step keeps the aggregate's rules, the state
//! rebuilt from the events equals the live state, and a refused command
//! emits nothing and changes nothing.

mod account;
mod support;
mod ticket;
