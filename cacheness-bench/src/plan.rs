//! What a run measures: the mode's sizes, the workloads and the rows.

use std::path::PathBuf;

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
            Mode::Quick => &[(10 * KIB, 256), (MIB, 16)],
            Mode::Full => &[(10 * KIB, 1024), (MIB, 64), (64 * MIB, 2)],
        }
    }

    /// W4: (entries, gets per repetition).
    pub fn w4_sizes(self) -> (u64, u64) {
        match self {
            Mode::Smoke => (50, 500),
            Mode::Quick => (2_000, 50_000),
            Mode::Full => (10_000, 1_000_000),
        }
    }

    /// W5 threads: (thread counts, keys, operations per repetition in total).
    pub fn w5_threads(self) -> (&'static [u64], u64, u64) {
        match self {
            Mode::Smoke => (&[1, 2], 20, 200),
            Mode::Quick => (&[1, 2, 4], 1_000, 10_000),
            Mode::Full => (&[1, 2, 4], 10_000, 400_000),
        }
    }

    /// W5 processes: (processes, distinct keys each).
    pub fn w5_processes(self) -> (u64, u64) {
        match self {
            Mode::Smoke => (4, 10),
            Mode::Quick => (4, 250),
            Mode::Full => (4, 2_000),
        }
    }

    /// W6 and W7: entries held.
    pub fn large_n(self) -> u64 {
        match self {
            Mode::Smoke => 30,
            Mode::Quick => 2_000,
            Mode::Full => 100_000,
        }
    }
}

/// One KiB.
pub const KIB: u64 = 1024;
/// One MiB.
pub const MIB: u64 = 1024 * 1024;

/// The workloads, in report order.
pub const WORKLOADS: &[&str] = &["w1", "w3", "w4", "w5", "w6", "w7"];

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
}

impl Plan {
    /// Whether workload `name` is asked for.
    pub fn runs(&self, name: &str) -> bool {
        self.workloads.iter().any(|workload| workload == name)
    }
}
