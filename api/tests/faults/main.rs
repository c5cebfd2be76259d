//! Fault trials against the real `tickets` binary, run as a child process
//! the way an operator runs it: `kill -9` under a mixed write load, its
//! PostgreSQL restarted under load, and the disk under its store or its
//! blobs filling up. Each checks that every acknowledged write is found
//! exactly once afterwards and that the read models equal a rebuild from
//! zero.
//!
//! The short forms run in the suite; `TICKETS_FAULT_ROUNDS=<n>` runs each
//! trial for `n` rounds instead (see `rounds`). Each trial prints its
//! figures (`--nocapture` shows them).

// The shared harness of the API tests; this binary uses a few of its
// helpers and the attachment tests' multipart builder.
#[path = "../it/support.rs"]
#[allow(dead_code)]
mod support;

#[path = "../attachments/common.rs"]
#[allow(dead_code)]
mod common;

mod client;
mod cluster;
mod disk;
mod ledger;
mod load;
mod process;
mod read_models;

mod disk_full;
mod kill;
mod pg_restart;

/// How many rounds a trial runs: `TICKETS_FAULT_ROUNDS`, else its short form.
pub fn rounds(short: usize) -> usize {
    match std::env::var("TICKETS_FAULT_ROUNDS") {
        Ok(value) => value.parse().unwrap_or_else(|_| panic!("TICKETS_FAULT_ROUNDS is not a count: {value:?}")),
        Err(_) => short,
    }
}
