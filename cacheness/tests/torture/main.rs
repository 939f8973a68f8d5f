//! The reliability and security torture suite (docs/RELIABILITY.md): one test
//! binary, a module per concern, sharing `support`. Tests that kill or race
//! processes re-run this binary as their child, selecting the child's role by
//! its full test name (`crash::crash_child_role`).

mod support;

mod concurrency;
mod corruption;
mod crash;
mod disk;
mod hostile;
mod maintenance;
mod paths;
mod single_flight;
