//! Maintainer tasks, run as `cargo xtask <task>` (see `.cargo/config.toml`).
//!
//! - `ci`: what CI runs (`.ci/run`): formatting, clippy with warnings denied, and
//!   the whole test suite.

use std::env;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let task = env::args().nth(1);
    match task.as_deref() {
        Some("ci") => ci(),
        Some(other) => {
            eprintln!("unknown task `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: cargo xtask <task>\n\ntasks:\n  ci    cargo fmt --check, clippy -D warnings, cargo test --workspace";

/// Runs the same checks as `.ci/run`, stopping at the first that fails.
fn ci() -> ExitCode {
    let steps: [&[&str]; 3] = [
        &["fmt", "--all", "--check"],
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &["test", "--workspace"],
    ];
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for args in steps {
        eprintln!("$ cargo {}", args.join(" "));
        match Command::new(&cargo).args(args).status() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!("`cargo {}` failed: {status}", args.join(" "));
                return ExitCode::FAILURE;
            }
            Err(error) => {
                eprintln!("cannot run cargo: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
