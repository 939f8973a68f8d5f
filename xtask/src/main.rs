//! Maintainer tasks, run as `cargo xtask <task>` (see `.cargo/config.toml`).
//!
//! - `ci`: what CI runs (`.ci/run`): formatting, clippy with warnings denied, and
//!   the whole test suite.
//! - `bench-report`: runs `cacheness-bench` in release mode (with diskcache set up
//!   in a venv under `target/bench/` when Python is available), then rewrites the
//!   generated blocks of `docs/PERFORMANCE.md` and `README.md` and the plots in
//!   `docs/img/`. With `--from results.json` it only regenerates the docs.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Maintainer tasks for cacheness")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// cargo fmt --check, clippy -D warnings, cargo test --workspace.
    Ci,
    /// Runs the benchmarks in release mode and rewrites the generated docs.
    BenchReport(BenchReport),
}

#[derive(Debug, Args)]
struct BenchReport {
    /// The small sizes only (under two minutes on two cores).
    #[arg(long)]
    quick: bool,
    /// Regenerate the docs from this results file; run nothing.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Leave README.md alone (otherwise it must have the `bench:summary` block).
    #[arg(long)]
    no_readme: bool,
    /// Don't set up Python's diskcache; its rows say "not run".
    #[arg(long)]
    no_python: bool,
    /// Extra arguments for cacheness-bench (e.g. `--backends sqlite,json`).
    #[arg(last = true)]
    bench_args: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.task {
        Task::Ci => ci(),
        Task::BenchReport(args) => bench_report(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn run(program: &str, args: &[String]) -> Result<(), String> {
    eprintln!("$ {program} {}", args.join(" "));
    match Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("`{program} {}` failed: {status}", args.join(" "))),
        Err(error) => Err(format!("cannot run {program}: {error}")),
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

/// Runs the same checks as `.ci/run`, stopping at the first that fails.
fn ci() -> Result<(), String> {
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
    for args in steps {
        run(&cargo(), &strings(args))?;
    }
    Ok(())
}

fn bench_report(args: &BenchReport) -> Result<(), String> {
    let bench = strings(&["run", "--release", "--quiet", "-p", "cacheness-bench", "--"]);
    let results = match &args.from {
        Some(from) => from.clone(),
        None => {
            let results = PathBuf::from("target/bench/results.json");
            let mut command = bench.clone();
            if args.quick {
                command.push("--quick".into());
            }
            command.extend(["--out".into(), results.display().to_string()]);
            if !args.no_python {
                match diskcache_python() {
                    Ok(python) => {
                        command.extend(["--python".into(), python.display().to_string()]);
                    }
                    Err(reason) => eprintln!("note: diskcache rows will say \"not run\": {reason}"),
                }
            }
            command.extend(args.bench_args.iter().cloned());
            run(&cargo(), &command)?;
            results
        }
    };
    let mut command = bench;
    command.extend([
        "report".into(),
        "--from".into(),
        results.display().to_string(),
    ]);
    if args.no_readme {
        command.push("--no-readme".into());
    }
    run(&cargo(), &command)
}

/// A Python under `target/bench/venv` with diskcache installed from PyPI, set
/// up on first use.
fn diskcache_python() -> Result<PathBuf, String> {
    let venv = root().join("target/bench/venv");
    let python = venv.join("bin/python");
    let has_diskcache = |python: &Path| {
        Command::new(python)
            .args(["-c", "import diskcache"])
            .status()
            .is_ok_and(|status| status.success())
    };
    if python.exists() && has_diskcache(&python) {
        return Ok(python);
    }
    run(
        "python3",
        &["-m".into(), "venv".into(), venv.display().to_string()],
    )?;
    run(
        &venv.join("bin/pip").display().to_string(),
        &strings(&["install", "--quiet", "diskcache"]),
    )?;
    if has_diskcache(&python) {
        Ok(python)
    } else {
        Err("diskcache installed but cannot be imported".into())
    }
}
