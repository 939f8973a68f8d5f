//! # cacheness-bench
//!
//! The benchmark harness of cacheness (`shared/BENCHMARK.md` is its
//! specification). The `cacheness-bench` binary runs workloads W1–W7 on every
//! backend compiled into the facade, chosen by name, beside the peers and
//! floors measured in the same run (cacache, raw rusqlite, raw fs, and Python's
//! diskcache when available), and writes `target/bench/results.json`.
//! `cacheness-bench report` (run by `cargo xtask bench-report`) turns a results
//! file into the generated blocks of `docs/PERFORMANCE.md` and `README.md` and
//! the SVG plots of `docs/img/`.
//!
//! The library holds the results types, so tests and tools read the JSON with
//! the same structs the harness writes:
//!
//! ```
//! use cacheness_bench::results::Metric;
//! use cacheness_bench::format::{number, times};
//!
//! let put = Metric::of(vec![10_400.0, 9_800.0, 10_100.0, 10_900.0, 9_950.0]).unwrap();
//! assert_eq!((put.median, put.min, put.max), (10_100.0, 9_800.0, 10_900.0));
//! assert_eq!(number(put.median), "10 100");
//! assert_eq!(times(put.median / 180.0), "×56");
//! ```

pub mod error;
pub mod format;
pub mod machine;
pub mod markers;
pub mod plan;
pub mod plots;
pub mod report;
pub mod results;
pub mod run;
pub mod seed;
pub mod stores;

pub use error::{BenchError, Result};
