//! The harness's one error type.

use std::path::PathBuf;

/// What can go wrong running the benchmarks or writing the report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A file or directory could not be read or written.
    #[error("cannot access {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A results file is not valid JSON of the expected shape.
    #[error("cannot parse results file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A results file was written by another version of the harness.
    #[error("results file {path} has schema version {found}, this build reads {expected}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// A document's generated-block markers are missing, duplicated or out of
    /// order.
    #[error("{path}: {problem}")]
    Marker {
        /// The document.
        path: PathBuf,
        /// What is wrong with its markers.
        problem: String,
    },
    /// A cache operation failed during a workload.
    #[error("{workload} on {backend} failed")]
    Cache {
        /// The workload.
        workload: String,
        /// The backend.
        backend: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A value read back differs from the value written.
    #[error("{workload} on {backend}: wrong value read back for item {item}")]
    WrongValue {
        /// The workload.
        workload: String,
        /// The backend.
        backend: String,
        /// Which item.
        item: u64,
    },
    /// A child process (W5 writers, W7 memory, the Python driver) failed.
    #[error("child process `{command}` failed: {reason}")]
    Child {
        /// What was run.
        command: String,
        /// Its exit status or stderr.
        reason: String,
    },
    /// A plot could not be drawn.
    #[error("cannot draw {path}: {reason}")]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl BenchError {
    /// A cache error during `workload` on `backend`.
    pub fn cache(
        workload: &str,
        backend: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> BenchError {
        BenchError::Cache {
            workload: workload.to_owned(),
            backend: backend.to_owned(),
            source: source.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> BenchError {
        BenchError::Io {
            path: path.into(),
            source,
        }
    }
}

/// The harness's result type.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
