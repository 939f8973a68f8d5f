//! The one error type of the JSON backend.

use std::io;
use std::path::PathBuf;

/// Everything that can fail in the JSON backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// A filesystem operation on the metadata files failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done, e.g. "append to journal".
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The metadata was written by a newer version of cacheness.
    #[error(
        "{path} has format version {found}, newer than the version {supported} this build reads"
    )]
    NewerFormat {
        /// The snapshot or journal.
        path: PathBuf,
        /// The version found in the file.
        found: u64,
        /// The newest version this build reads.
        supported: u64,
    },

    /// A metadata file is damaged and could not be repaired where it was read.
    #[error("corrupted metadata {path}: {reason}")]
    Corrupted {
        /// The file read.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// An entry given to `put` cannot be stored (its blob name could point
    /// outside the blob store).
    #[error("invalid entry {key}: {reason}")]
    InvalidEntry {
        /// The entry's key.
        key: String,
        /// Why it was refused.
        reason: String,
    },

    /// An entry is in the metadata but cannot be decoded (nested past the
    /// parser's depth limit, a field of the wrong type). It is kept as written
    /// until removed (`MetadataBackend::remove_unreadable`, `cacheness verify
    /// --repair`) or replaced by a new put of its key.
    #[error("entry {key} in the json metadata of {dir} cannot be read: {reason}")]
    Unreadable {
        /// The entry's key.
        key: String,
        /// The cache dir.
        dir: PathBuf,
        /// Why it cannot be decoded, and in which file.
        reason: String,
    },

    /// A write through a handle opened with `JsonBackend::open_read_only`.
    #[error("the json metadata of {dir} was opened read-only; it is not written")]
    ReadOnly {
        /// The cache dir.
        dir: PathBuf,
    },

    /// Listing the blob files for a rebuild failed.
    #[error("cannot list the blob files to rebuild the metadata: {0}")]
    Blobs(#[source] cacheness_core::Error),

    /// An entry could not be serialized to JSON.
    #[error("cannot serialize entry {key}: {source}")]
    Serialize {
        /// The entry's key.
        key: String,
        /// What serde_json reported.
        #[source]
        source: serde_json::Error,
    },

    /// An option is out of range.
    #[error("invalid option `{field}`: {reason}")]
    InvalidOption {
        /// The option's field name.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
}

impl JsonError {
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        JsonError::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}

impl From<JsonError> for cacheness_core::Error {
    fn from(error: JsonError) -> Self {
        match error {
            JsonError::InvalidOption { field, reason } => {
                cacheness_core::Error::Config { field, reason }
            }
            other => cacheness_core::Error::backend("json", other),
        }
    }
}
