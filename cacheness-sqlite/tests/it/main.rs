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

/// Whether the tests run as root, which mounting a tmpfs or a read-only bind
/// mount needs (the tests that need one print why they skip otherwise).
fn running_as_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}
