//! What a run measures: the mode's sizes, the workloads and the rows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Tiny sizes, seconds: checks the harness works (the test suite runs it).
    Smoke,
    /// The small sizes only: under two minutes on two cores.
    Quick,
    /// Every size of BENCHMARK.md.
    Full,
}

impl Mode {
    /// The mode's name in the results file.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Smoke => "smoke",
            Mode::Quick => "quick",
            Mode::Full => "full",
        }
    }

    /// W1: the numbers of entries.
    pub fn w1_sizes(self) -> &'static [u64] {
        match self {
            Mode::Smoke => &[20, 50],
            Mode::Quick => &[50, 200, 1_000],
            Mode::Full => &[50, 200, 500, 1_000, 10_000, 100_000],
        }
    }

    /// W3: (value size in bytes, values per repetition).
    pub fn w3_sizes(self) -> &'static [(u64, u64)] {
        match self {
            Mode::Smoke => &[(10 * KIB, 2)],
            Mode::Quick => &[(10 * KIB, 64), (MIB, 8)],
            Mode::Full => &[(10 * KIB, 1024), (MIB, 64), (64 * MIB, 2)],
        }
    }

    /// W4: (entries, gets per repetition). The full run's 1 000 000 GETs per
    /// distribution are its 5 repetitions of 200 000. The memory layer is
    /// sized to hold all the entries (see `Runner::w4`).
    pub fn w4_sizes(self) -> (u64, u64) {
        match self {
            Mode::Smoke => (50, 500),
            Mode::Quick => (2_000, 10_000),
            Mode::Full => (10_000, 200_000),
        }
    }

    /// W5 threads: (thread counts, keys, operations per repetition in total).
    pub fn w5_threads(self) -> (&'static [u64], u64, u64) {
        match self {
            Mode::Smoke => (&[1, 2], 20, 200),
            Mode::Quick => (&[1, 2, 4], 500, 2_000),
            Mode::Full => (&[1, 2, 4], 10_000, 40_000),
        }
    }

    /// W5 processes: (processes, distinct keys each).
    pub fn w5_processes(self) -> (u64, u64) {
        match self {
            Mode::Smoke => (4, 10),
            Mode::Quick => (4, 100),
            Mode::Full => (4, 2_000),
        }
    }

    /// W8: (entries, tasks of the async API, threads of the sync API for
    /// the many-callers figures).
    pub fn w8_sizes(self) -> (u64, u64, u64) {
        match self {
            Mode::Smoke => (50, 8, 2),
            Mode::Quick => (2_000, 64, 4),
            Mode::Full => (10_000, 64, 4),
        }
    }

    /// W6 and W7: entries held.
    pub fn large_n(self) -> u64 {
        match self {
            Mode::Smoke => 30,
            Mode::Quick => 1_000,
            Mode::Full => 100_000,
        }
    }

    /// W6 and W7: the smaller size a full-run cell falls back to when
    /// [`Mode::large_n`] would take longer than the cell bound.
    pub fn capped_n(self) -> u64 {
        match self {
            Mode::Full => 10_000,
            _ => self.large_n(),
        }
    }

    /// What the mode runs, by workload, for the results file and the report.
    pub fn describe(self) -> BTreeMap<String, String> {
        let list = |values: &[u64]| {
            values
                .iter()
                .map(|value| crate::format::count(*value))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let w3 = self
            .w3_sizes()
            .iter()
            .map(|(size, count)| format!("{} × {count}", crate::format::human_size(*size)))
            .collect::<Vec<_>>()
            .join(", ");
        let (entries, gets) = self.w4_sizes();
        let (threads, keys, ops) = self.w5_threads();
        let (processes, each) = self.w5_processes();
        let count = crate::format::count;
        BTreeMap::from([
            ("w1".to_owned(), format!("N = {}", list(self.w1_sizes()))),
            (
                "w3".to_owned(),
                format!("{w3} values per repetition, compressible and incompressible"),
            ),
            (
                "w4".to_owned(),
                format!(
                    "{} entries, {} GETs per repetition and distribution",
                    count(entries),
                    count(gets)
                ),
            ),
            (
                "w5".to_owned(),
                format!(
                    "{} threads over {} keys, {} operations per repetition; {processes} processes × {} keys",
                    list(threads),
                    count(keys),
                    count(ops),
                    count(each)
                ),
            ),
            (
                "w6".to_owned(),
                format!("{} entries", count(self.large_n())),
            ),
            (
                "w7".to_owned(),
                format!("{} entries", count(self.large_n())),
            ),
            ("w8".to_owned(), {
                let (entries, tasks, threads) = self.w8_sizes();
                format!(
                    "{} entries; many callers: {tasks} tasks (async) or {threads} threads (sync)",
                    count(entries)
                )
            }),
        ])
    }
}

/// One KiB.
pub const KIB: u64 = 1024;
/// One MiB.
pub const MIB: u64 = 1024 * 1024;

/// The workloads, in report order.
pub const WORKLOADS: &[&str] = &["w1", "w3", "w4", "w5", "w6", "w7", "w8"];

/// Every backend of BENCHMARK.md, in report order.
pub const ALL_BACKENDS: &[&str] = &[
    "memory",
    "json",
    "sqlite",
    "sqlite-memory",
    "memlayer+json",
    "memlayer+sqlite",
];

/// What to run, and where.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The sizes.
    pub mode: Mode,
    /// Repetitions per cell (at least 5 for a figure to count).
    pub reps: u32,
    /// Workloads to run (`w2` is drawn from `w1`).
    pub workloads: Vec<String>,
    /// cacheness backends, by facade name.
    pub backends: Vec<String>,
    /// Whether to run the peers and floors too.
    pub peers: bool,
    /// The directory every cache is created under (a fresh one per repetition).
    pub dir: PathBuf,
    /// A Python interpreter that can `import diskcache`, if any.
    pub python: Option<PathBuf>,
    /// This program, to start children (W5 writers, W7 memory).
    pub exe: PathBuf,
    /// Leave the run's cache directories in place at its end.
    pub keep_dirs: bool,
    /// The longest one cell (all its repetitions) may take, estimated from
    /// rates measured earlier in the same run; a cell over it is capped to a
    /// smaller size or not run, and says so. `None`: no bound.
    pub cell_bound: Option<Duration>,
}

impl Plan {
    /// What the plan runs, by workload, with the cell bound.
    pub fn describe(&self) -> BTreeMap<String, String> {
        let mut sizes = self.mode.describe();
        if let Some(bound) = self.cell_bound {
            sizes.insert(
                "bound".into(),
                format!(
                    "a cell whose {} repetitions would take over {} (estimated from rates measured earlier in the run) is not run at that size (W1) or runs at {} entries instead (W6, W7), and says so",
                    self.reps,
                    minutes(bound.as_secs_f64()),
                    crate::format::count(self.mode.capped_n())
                ),
            );
        }
        sizes
    }

    /// Whether workload `name` is asked for.
    pub fn runs(&self, name: &str) -> bool {
        self.workloads.iter().any(|workload| workload == name)
    }
}

/// `40 s`, `3 min`, `1.5 min`.
pub fn minutes(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else {
        let minutes = seconds / 60.0;
        if minutes < 10.0 {
            format!("{minutes:.1} min")
        } else {
            format!("{minutes:.0} min")
        }
    }
}
