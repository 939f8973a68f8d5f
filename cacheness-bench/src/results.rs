//! The results file (`target/bench/results.json`): what one run measured, on
//! which machine, at which commit. Written by the harness, read by the report.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};

/// The version of the results format; the report refuses other versions.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything one run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema: u32,
    /// The machine the figures come from.
    pub machine: Machine,
    /// `git rev-parse HEAD` of the measured tree (`unknown` outside git).
    pub git_commit: String,
    /// Whether the tree had uncommitted changes.
    pub git_dirty: bool,
    /// When the run started, UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: String,
    /// The command line that produced the file.
    pub command: String,
    /// `smoke`, `quick` or `full`.
    pub mode: String,
    /// Repetitions per cell.
    pub repetitions: u32,
    /// Whether the harness was built with optimizations.
    pub release: bool,
    /// The cacheness backends asked for, in order.
    pub backends: Vec<String>,
    /// What the mode runs, by workload (`w1` → `N = 50, 200, 1 000`), including
    /// the bounds a full run puts on slow cells; empty in results written
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sizes: BTreeMap<String, String>,
    /// What the run's cache directories held: at its end, just before they
    /// were deleted (they are kept until then: see `docs/PERFORMANCE.md`),
    /// plus the few-file ones deleted when their repetition ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<Scratch>,
    /// One object per measured (or skipped) cell.
    pub cells: Vec<Cell>,
}

/// What a run's cache directories held at its end, before they were deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scratch {
    /// Files and directories in them (a hard-linked file counts once).
    pub files: u64,
    /// Bytes allocated on disk for them.
    pub bytes: u64,
}

impl Results {
    /// Reads and checks a results file.
    pub fn load(path: &Path) -> Result<Results> {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
            path: path.to_owned(),
            source,
        })?;
        let results: Results = serde_json::from_str(&text).map_err(|source| BenchError::Parse {
            path: path.to_owned(),
            source,
        })?;
        if results.schema != SCHEMA_VERSION {
            return Err(BenchError::Schema {
                path: path.to_owned(),
                found: results.schema,
                expected: SCHEMA_VERSION,
            });
        }
        Ok(results)
    }

    /// Writes the results as pretty JSON, creating the parent directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|source| BenchError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        let mut text = serde_json::to_string_pretty(self).map_err(|source| BenchError::Parse {
            path: path.to_owned(),
            source,
        })?;
        text.push('\n');
        std::fs::write(path, text).map_err(|source| BenchError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// The cells of `workload` measured for `backend` (any status).
    pub fn cells<'a>(
        &'a self,
        workload: &'a str,
        backend: &'a str,
    ) -> impl Iterator<Item = &'a Cell> + 'a {
        self.cells
            .iter()
            .filter(move |cell| cell.workload == workload && cell.backend == backend)
    }

    /// The cell of `workload` and `backend` whose params include every pair of
    /// `params`.
    pub fn find(&self, workload: &str, backend: &str, params: &[(&str, Param)]) -> Option<&Cell> {
        self.cells.iter().find(|cell| {
            cell.workload == workload
                && cell.backend == backend
                && params
                    .iter()
                    .all(|(name, value)| cell.params.get(*name) == Some(value))
        })
    }

    /// The rows (backends, peers, floors) of `workload`, in first-seen order.
    pub fn rows(&self, workload: &str) -> Vec<&str> {
        let mut rows: Vec<&str> = Vec::new();
        for cell in self.cells.iter().filter(|cell| cell.workload == workload) {
            if !rows.contains(&cell.backend.as_str()) {
                rows.push(&cell.backend);
            }
        }
        rows
    }
}

/// The machine a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical cores available to the process.
    pub cores: usize,
    /// Total memory in bytes (0 if unknown).
    pub memory_bytes: u64,
    /// Operating system and kernel.
    pub os: String,
    /// Filesystem type of the cache directory (`ext4`, `tmpfs`...).
    pub filesystem: String,
    /// The directory the caches were created under.
    pub cache_dir: String,
}

/// A parameter value of a cell: a number or a word.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Param {
    /// A count or a size.
    Int(u64),
    /// A name (`80/20`, `compressible`...).
    Text(String),
}

impl From<u64> for Param {
    fn from(value: u64) -> Self {
        Param::Int(value)
    }
}

impl From<&str> for Param {
    fn from(value: &str) -> Self {
        Param::Text(value.to_owned())
    }
}

impl std::fmt::Display for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Param::Int(value) => write!(f, "{value}"),
            Param::Text(value) => f.write_str(value),
        }
    }
}

/// What a row is: cacheness itself, another library, or a floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// A cacheness backend through the facade.
    Cacheness,
    /// Another cache library (cacache, diskcache).
    Peer,
    /// The cost of the storage itself (raw rusqlite, raw fs).
    Floor,
}

/// One measured combination of workload, row and parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// `w1` ... `w7`.
    pub workload: String,
    /// A backend name (`sqlite`) or a peer/floor (`cacache`, `raw-sqlite`...).
    pub backend: String,
    /// What the row is.
    pub kind: RowKind,
    /// The cell's parameters (`n`, `size`, `threads`...).
    pub params: BTreeMap<String, Param>,
    /// `None` when measured; why not otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
    /// What the reader must know about a measured cell: a size capped below
    /// the specification's to keep a full run feasible, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The measured figures by name; units are in the name (`_ops_s`, `_ms`,
    /// `_us`, `_mb_s`, `_bytes`, `_ratio`, `_count`).
    #[serde(default)]
    pub metrics: BTreeMap<String, Metric>,
}

impl Cell {
    /// The median of metric `name`, when measured.
    pub fn median(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).map(|metric| metric.median)
    }
}

/// One figure over the repetitions: median, min, max and every sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// The median sample.
    pub median: f64,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
    /// Every sample, one per repetition, in order.
    pub samples: Vec<f64>,
}

impl Metric {
    /// The summary of `samples`; `None` when there are none or one is not finite.
    pub fn of(samples: Vec<f64>) -> Option<Metric> {
        if samples.is_empty() || samples.iter().any(|sample| !sample.is_finite()) {
            return None;
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Some(Metric {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let metric = Metric::of(vec![5.0, 1.0, 3.0]).unwrap();
        assert_eq!((metric.median, metric.min, metric.max), (3.0, 1.0, 5.0));
        assert_eq!(metric.samples, vec![5.0, 1.0, 3.0]);
        assert_eq!(Metric::of(vec![4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Metric::of(vec![]).is_none());
        assert!(Metric::of(vec![1.0, f64::NAN]).is_none());
    }
}
