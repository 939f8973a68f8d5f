//! The errors of the SQLite backend.

use std::io;
use std::path::PathBuf;

/// Everything that can fail in the SQLite backend. Each variant names the
/// database file (`:memory:` for the in-memory backend).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The database could not be opened or set up.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },

    /// The file is not a SQLite database, or it is damaged. It was left as it is;
    /// [`SqliteBackend::recreate`](crate::SqliteBackend::recreate) or
    /// [`SqliteOptions::recreate_if_corrupt`](crate::SqliteOptions::recreate_if_corrupt)
    /// start over.
    #[error("{path} is not a usable sqlite database (not a database, or corrupt): {source}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },

    /// The file is a SQLite database, but one of another program: it has tables
    /// and no cacheness schema version.
    #[error(
        "{path} is a sqlite database of another program (tables {tables}), not a cacheness cache"
    )]
    Foreign {
        /// The database file.
        path: PathBuf,
        /// The tables found, comma-separated.
        tables: String,
    },

    /// The database was written by a newer cacheness with a schema this build
    /// does not know.
    #[error(
        "{path} has schema version {found}, newer than version {supported} that this build of cacheness-sqlite knows"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version stored in the file (`PRAGMA user_version`).
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },

    /// Migrating an older schema failed; the database was left unchanged.
    #[error("cannot migrate {path} from schema version {from}: {source}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The version the migration started from.
        from: i64,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },

    /// A query failed.
    #[error("{operation} on {path}: {source}")]
    Query {
        /// What was being done, e.g. "put".
        operation: &'static str,
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },

    /// A stored row cannot be read back as an entry.
    #[error("invalid `{column}` of entry {key} in {path}: {reason}")]
    InvalidRow {
        /// The database file.
        path: PathBuf,
        /// The entry's key in hex, or `?` when the key itself is unreadable.
        key: String,
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// An entry could not be written because a field could not be encoded.
    #[error("cannot encode `{column}` of entry {key}: {source}")]
    Encode {
        /// The entry's key in hex.
        key: String,
        /// The column.
        column: &'static str,
        /// What the encoder reported.
        #[source]
        source: serde_json::Error,
    },

    /// The cache directory could not be created.
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The database file could not be created with private permissions.
    #[error("cannot create database file {path}: {source}")]
    CreateFile {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The database file, its log or its shared-memory index is not a regular
    /// file (a symbolic link, a FIFO, a device, a directory): it was left alone
    /// and nothing was opened through it.
    #[error("refusing {path}: {source}")]
    NotRegular {
        /// The file found.
        path: PathBuf,
        /// What it is.
        #[source]
        source: io::Error,
    },

    /// The database (or the directory it would be created in) cannot be written:
    /// a read-only file system, or no permission. Nothing was created; a
    /// read-only open ([`SqliteOptions::read_only`](crate::SqliteOptions::read_only))
    /// can still read an existing database there.
    #[error("cannot open {path} for writing: {source}")]
    NotWritable {
        /// The database file or the cache directory.
        path: PathBuf,
        /// Why not, as the system reported it (e.g. "Read-only file system").
        #[source]
        source: io::Error,
    },

    /// A read-only open found no database: a read-only open creates nothing.
    #[error("{path} does not exist (a read-only open creates nothing)")]
    NotFound {
        /// The database file looked for.
        path: PathBuf,
    },

    /// The database exists but cannot be read without changing it.
    #[error("cannot open {path} read-only: {reason}")]
    CannotOpenReadOnly {
        /// The database file.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// A write was asked of a backend opened read-only.
    #[error("{operation} on {path}: the database was opened read-only")]
    ReadOnly {
        /// What was asked, e.g. "put".
        operation: &'static str,
        /// The database file.
        path: PathBuf,
    },

    /// Moving a damaged database aside failed.
    #[error("cannot move {path} aside to recreate it: {source}")]
    Recreate {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// An option has a value SQLite cannot use.
    #[error("invalid sqlite option `{field}`: {reason}")]
    InvalidOption {
        /// The option, e.g. "page_size".
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
}

impl SqliteError {
    /// Whether the error is SQLite reporting a lock held elsewhere (`SQLITE_BUSY`
    /// or `SQLITE_LOCKED`), which is worth retrying.
    pub fn is_busy(&self) -> bool {
        match self {
            SqliteError::Open { source, .. }
            | SqliteError::Migrate { source, .. }
            | SqliteError::Query { source, .. } => is_busy(source),
            _ => false,
        }
    }
}

/// Whether SQLite reports the disk (or the file system's quota) full.
pub(crate) fn is_disk_full(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DiskFull)
    )
}

pub(crate) fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// The error of opening the database at `path`: `Corrupt` when SQLite says the
/// file is damaged or not a database, else `Open`.
pub(crate) fn open_error(path: &std::path::Path, source: rusqlite::Error) -> SqliteError {
    if is_corrupt(&source) {
        SqliteError::Corrupt {
            path: path.to_owned(),
            source,
        }
    } else {
        SqliteError::Open {
            path: path.to_owned(),
            source,
        }
    }
}

pub(crate) fn is_corrupt(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

impl From<SqliteError> for cacheness_core::Error {
    fn from(error: SqliteError) -> Self {
        match error {
            SqliteError::InvalidOption { field, reason } => cacheness_core::Error::Config {
                field,
                reason: format!("sqlite: {reason}"),
            },
            other => {
                let backend = match &other {
                    SqliteError::Open { path, .. }
                    | SqliteError::Corrupt { path, .. }
                    | SqliteError::Foreign { path, .. }
                    | SqliteError::NewerSchema { path, .. }
                    | SqliteError::Migrate { path, .. }
                    | SqliteError::Query { path, .. }
                    | SqliteError::InvalidRow { path, .. }
                    | SqliteError::Recreate { path, .. }
                        if path.as_os_str() == crate::MEMORY_PATH =>
                    {
                        "sqlite-memory"
                    }
                    _ => "sqlite",
                };
                cacheness_core::Error::backend(backend, other)
            }
        }
    }
}
