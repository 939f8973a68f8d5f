//! The integration tests of cacheness-json, in one binary: one link instead of
//! one per file.

mod conformance;
mod hostile_dir;
mod inline;
mod multi_process;
mod read_only;
mod recovery;
mod support;
mod unreadable;
