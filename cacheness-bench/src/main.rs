//! `cacheness-bench`: runs the benchmark workloads, or writes the report from a
//! results file. See the crate documentation and `shared/BENCHMARK.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use cacheness_bench::plan::{ALL_BACKENDS, Mode, Plan, WORKLOADS};
use cacheness_bench::report::{self, Documents};
use cacheness_bench::results::{Results, SCHEMA_VERSION};
use cacheness_bench::run::{self, ChildRole};
use cacheness_bench::{BenchError, machine};

/// Benchmarks cacheness backends against their peers and floors, in one run.
#[derive(Debug, Parser)]
#[command(
    name = "cacheness-bench",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Task>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Workloads to run, comma-separated (w1..w8; w2 is drawn from w1).
    #[arg(long, value_delimiter = ',', default_value = "w1,w3,w4,w5,w6,w7,w8")]
    workload: Vec<String>,
    /// cacheness backends by facade name, comma-separated; those not compiled
    /// in are reported as not run.
    #[arg(long, value_delimiter = ',', default_values_t = ALL_BACKENDS.iter().map(|name| name.to_string()))]
    backends: Vec<String>,
    /// The small sizes only (under two minutes on two cores).
    #[arg(long, conflicts_with = "smoke")]
    quick: bool,
    /// Tiny sizes, seconds: checks that the harness works; not a figure.
    #[arg(long)]
    smoke: bool,
    /// Repetitions per cell (default 5, the least for a figure that counts;
    /// 3 with --smoke).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    reps: Option<u32>,
    /// Full run: the longest one cell (all its repetitions) may take, in
    /// minutes, estimated from rates measured earlier in the run; a cell over
    /// it is not run at that size (W1) or runs at 10 000 entries (W6, W7), and
    /// the report says so. 0: no bound. Quick and smoke runs have none.
    #[arg(long, default_value_t = 2.0)]
    cell_minutes: f64,
    /// Leave the run's cache directories in place (they are deleted at the end
    /// otherwise) and say where they are.
    #[arg(long)]
    keep_dirs: bool,
    /// Where the results go.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// The directory caches are created under (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Skip the peers and floors (cacache, raw SQLite, raw fs, diskcache).
    #[arg(long)]
    no_peers: bool,
    /// A Python interpreter with diskcache installed (default: `python3` if it
    /// has diskcache).
    #[arg(long)]
    python: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Rewrites the generated blocks of the docs and the plots from a results file.
    Report(ReportArgs),
    /// A child role of a run (W5 writers and checker, W7 memory); internal.
    #[command(hide = true)]
    Child {
        #[command(subcommand)]
        role: ChildRole,
    },
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// The results file.
    #[arg(long, default_value = "target/bench/results.json")]
    from: PathBuf,
    /// The performance document; every generated block must be in it.
    #[arg(long, default_value = "docs/PERFORMANCE.md")]
    performance: PathBuf,
    /// The README; it must have the `bench:summary` block.
    #[arg(long, default_value = "README.md")]
    readme: PathBuf,
    /// Leave the README alone.
    #[arg(long)]
    no_readme: bool,
    /// Where the SVG plots go.
    #[arg(long, default_value = "docs/img")]
    img: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Task::Report(args)) => write_report(&args),
        Some(Task::Child { role }) => play(role),
        None => bench(cli.bench),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut message = format!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: BenchArgs) -> Result<(), BenchError> {
    let mode = if args.smoke {
        Mode::Smoke
    } else if args.quick {
        Mode::Quick
    } else {
        Mode::Full
    };
    let mut workloads = Vec::new();
    for name in &args.workload {
        let name = name.trim().to_ascii_lowercase();
        let name = if name == "w2" { "w1".to_owned() } else { name };
        if !WORKLOADS.contains(&name.as_str()) {
            return Err(BenchError::Child {
                command: "cacheness-bench --workload".into(),
                reason: format!("unknown workload `{name}` (known: w1..w7)"),
            });
        }
        if !workloads.contains(&name) {
            workloads.push(name);
        }
    }
    let python = if args.no_peers {
        None
    } else {
        let candidate = args.python.unwrap_or_else(|| PathBuf::from("python3"));
        if run::python_has_diskcache(&candidate) {
            Some(candidate)
        } else {
            eprintln!(
                "note: `{}` cannot import diskcache; its rows will say \"not run\"",
                candidate.display()
            );
            None
        }
    };
    let dir = args.dir.unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&dir).map_err(|source| BenchError::io(&dir, source))?;
    let plan = Plan {
        mode,
        reps: args.reps.unwrap_or(if args.smoke { 3 } else { 5 }),
        workloads,
        backends: args.backends,
        peers: !args.no_peers,
        dir: dir.clone(),
        python,
        exe: std::env::current_exe().map_err(|source| BenchError::io("current exe", source))?,
        keep_dirs: args.keep_dirs,
        cell_bound: (mode == Mode::Full && args.cell_minutes > 0.0)
            .then(|| std::time::Duration::from_secs_f64(args.cell_minutes * 60.0)),
    };
    let (git_commit, git_dirty) = machine::git_commit();
    let date = machine::utc_now();
    let (cells, leftovers) = run::run(&plan)?;
    let results = Results {
        schema: SCHEMA_VERSION,
        machine: machine::describe(&dir),
        git_commit,
        git_dirty,
        date,
        command: command_line(),
        mode: mode.name().into(),
        repetitions: plan.reps,
        release: !cfg!(debug_assertions),
        backends: plan.backends.clone(),
        sizes: plan.describe(),
        scratch: Some(leftovers.held),
        cells,
    };
    results.save(&args.out)?;
    eprintln!(
        "{} cells written to {}",
        results.cells.len(),
        args.out.display()
    );
    leftovers.delete()
}

fn command_line() -> String {
    let mut args = std::env::args();
    let program = args.next().map_or_else(
        || "cacheness-bench".to_owned(),
        |program| {
            std::path::Path::new(&program)
                .file_name()
                .map_or(program.clone(), |name| name.to_string_lossy().into_owned())
        },
    );
    std::iter::once(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_report(args: &ReportArgs) -> Result<(), BenchError> {
    let results = Results::load(&args.from)?;
    let documents = Documents {
        performance: args.performance.clone(),
        readme: (!args.no_readme).then(|| args.readme.clone()),
        img_dir: args.img.clone(),
    };
    let changed = report::write(&results, &documents)?;
    if changed.is_empty() {
        eprintln!("report: nothing changed");
    }
    for path in changed {
        eprintln!("report: wrote {}", path.display());
    }
    Ok(())
}

fn play(role: ChildRole) -> Result<(), BenchError> {
    let report = run::child(&role)?;
    println!("{report}");
    Ok(())
}
