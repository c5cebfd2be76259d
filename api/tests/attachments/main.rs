//! Issue 3, evidence files, end to end: uploads over the GraphQL multipart
//! request spec, type sniffing, size and count limits, sanitised names,
//! content-addressed blobs and their clean-up, and guarded downloads with
//! ranges. A real server per test on its own database; every test runs on
//! both stores (`<test>::postgres`, `<test>::sqlite`).

// The shared harness; this binary does not use every helper in it.
#[path = "../it/support.rs"]
#[allow(dead_code)]
mod support;

mod common;

mod accepted;
mod bucket;
mod bucket_leftovers;
mod concurrency;
mod download;
mod filenames;
mod leftovers;
mod limits;
mod refused;
mod retried;
mod storage;
