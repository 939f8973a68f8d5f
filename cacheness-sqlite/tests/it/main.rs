//! The integration tests of cacheness-sqlite, in one binary: one link instead of
//! one per file, and support code shared as a module.
//!
//! `checkpoint.rs` stays a binary of its own: it counts the checkpoint threads of
//! its process, which the backends opened by the tests here would add to.

mod common;

mod conformance;
mod footprint;
mod hostile;
mod multi_process;
mod open;
mod read_only;
mod unreadable;
