//! The one error type of the core, which backend crates convert their own errors into.

use std::io;
use std::path::PathBuf;

use crate::key::{CacheKey, KeyError};

/// A boxed error from a backend crate or a codec.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can fail in cacheness.
///
/// Every variant names what failed: the path, the key, the backend or the
/// configuration field. A missing or corrupted entry is *not* an error: it is a
/// miss (and a corrupted one is removed and logged).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key or its parameters were malformed.
    #[error(transparent)]
    Key(#[from] KeyError),

    /// A filesystem operation failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done, e.g. "write blob".
        operation: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A metadata backend failed.
    #[error("{backend} backend: {source}")]
    Backend {
        /// The backend's name, e.g. "sqlite".
        backend: String,
        /// The backend crate's own error.
        #[source]
        source: BoxError,
    },

    /// The value could not be encoded by the codec.
    #[error("cannot encode the value for key {key} with codec `{codec}`: {source}")]
    Encode {
        /// The entry's key.
        key: CacheKey,
        /// The codec's name.
        codec: String,
        /// What the codec reported.
        #[source]
        source: BoxError,
    },

    /// The stored value is intact but is not a valid `type_name`; the entry is kept.
    #[error("cannot decode entry {key} as `{type_name}` with codec `{codec}`: {source}")]
    Decode {
        /// The entry's key.
        key: CacheKey,
        /// The Rust type that was requested.
        type_name: &'static str,
        /// The codec's name.
        codec: String,
        /// What the codec reported.
        #[source]
        source: BoxError,
    },

    /// The entry was written by another codec than the one asked to read it.
    #[error("entry {key} was stored with codec `{stored}`, not `{requested}`")]
    CodecMismatch {
        /// The entry's key.
        key: CacheKey,
        /// The codec recorded in the entry.
        stored: String,
        /// The codec of the read.
        requested: String,
    },

    /// The value is larger than the whole cache may hold.
    #[error(
        "the value for key {key} takes {size} bytes, more than the cache size limit of {limit} bytes"
    )]
    TooLarge {
        /// The entry's key.
        key: CacheKey,
        /// Its stored size in bytes.
        size: u64,
        /// The configured size limit.
        limit: u64,
    },

    /// A configuration value is invalid.
    #[error("invalid configuration `{field}`: {reason}")]
    Config {
        /// The field, e.g. "max_size".
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },

    /// An argument of a call is invalid (a prefix with a `/`, say).
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidInput {
        /// What kind of argument, e.g. "prefix".
        what: &'static str,
        /// The value given, escaped for display.
        value: String,
        /// Why it is invalid.
        reason: String,
    },

    /// A put was refused because part of the entry is over one of the limits that
    /// keep every stored entry readable by every backend (see
    /// [`MAX_DESCRIPTION_LEN`](crate::cache::MAX_DESCRIPTION_LEN),
    /// [`MAX_USER_METADATA_LEN`](crate::cache::MAX_USER_METADATA_LEN) and
    /// [`MAX_NESTING`](crate::key::MAX_NESTING)). Parameters over their limits
    /// are [`Error::Key`].
    #[error("entry {key}: the {what} is {actual}, over the limit of {limit}")]
    LimitExceeded {
        /// The entry's key.
        key: CacheKey,
        /// What is measured, with its unit, e.g. "nesting depth of the user
        /// metadata (levels)".
        what: &'static str,
        /// The figure of this entry.
        actual: u64,
        /// The limit.
        limit: u64,
    },

    /// A write was asked of a cache opened read-only
    /// ([`CacheBuilder::read_only`](crate::CacheBuilder::read_only)).
    #[error("cannot {operation}: the cache is open read-only")]
    ReadOnly {
        /// What was refused, e.g. "put" or "clear".
        operation: &'static str,
    },

    /// Data read from disk is damaged and cannot be used.
    #[error("corrupted {what} {path}: {reason}")]
    Corrupted {
        /// What was read, e.g. "blob".
        what: &'static str,
        /// Where it was read from.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// An [`AsyncCache`](crate::AsyncCache) operation could not run: the
    /// Tokio runtime shut down before its blocking thread started.
    #[error("cannot {operation}: the async runtime is shutting down")]
    RuntimeShutdown {
        /// What did not run, e.g. "get".
        operation: &'static str,
    },
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a backend crate's error, naming the backend.
    pub fn backend(backend: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend: backend.into(),
            source: source.into(),
        }
    }

    /// An I/O error on `path` while doing `operation`.
    pub fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}
