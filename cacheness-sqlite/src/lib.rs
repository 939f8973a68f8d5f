//! The `sqlite` and `sqlite-memory` metadata backends of cacheness: the index of
//! a cache in SQLite (bundled, so no system library is needed), either in
//! `cache_metadata.db` in the cache directory or in memory.
//!
//! The file backend is the production choice: constant-time operations at any
//! size, an open that reads no entries, and safe sharing by many threads and many
//! processes (WAL mode, a connection per thread, writes in `BEGIN IMMEDIATE`
//! transactions, lock contention retried within a timeout). Small values live
//! inline in the database; large ones in the cache's blob files.
//!
//! ```
//! use cacheness_core::{Cache, key};
//! use cacheness_sqlite::{SqliteBackend, SqliteOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let backend = SqliteBackend::open_with(dir.path(), &SqliteOptions::default())?;
//! let cache = Cache::builder().dir(dir.path()).open(backend)?;
//! cache.put(&key!(model = "xgboost", version = 2), &[0.1, 0.9])?;
//! let scores: Option<Vec<f64>> = cache.get(&key!(version = 2, model = "xgboost"))?;
//! assert_eq!(scores, Some(vec![0.1, 0.9]));
//!
//! // The same API without a file:
//! let memory = Cache::builder().open(SqliteBackend::in_memory()?)?;
//! memory.put(&key!(user = 42), &"Ada")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A database this build cannot use is never deleted behind the caller's back:
//! a file that is not a database, or is corrupt, fails to open with
//! [`SqliteError::Corrupt`] naming it, and [`SqliteBackend::recreate`] (or
//! [`SqliteOptions::recreate_if_corrupt`]) moves it aside and starts afresh. A
//! database written by a newer schema fails with [`SqliteError::NewerSchema`];
//! an older one is migrated in one transaction. A row that cannot be read back
//! (damaged by hand, JSON nested past the parser's limit) never blocks the rest:
//! listings pass over it, `get` of its key names it, and
//! [`MetadataBackend::unreadable`](cacheness_core::MetadataBackend::unreadable)
//! reports it. A symbolic link or FIFO at the database's names is refused
//! ([`SqliteError::NotRegular`]).
//!
//! On disk, the write-ahead log stays within [`SqliteOptions::wal_limit_bytes`]
//! and the file gives back what `clear` and large removals free. A cache on
//! read-only media opens with [`SqliteOptions::read_only`], which creates
//! nothing; a writable open there fails with [`SqliteError::NotWritable`],
//! naming the cause.

mod backend;
mod checkpoint;
mod error;
mod options;
mod pool;
mod row;
mod schema;
mod wal_index;
mod write_tx;

pub use backend::SqliteBackend;
pub use error::SqliteError;
pub use options::{SqliteOptions, Synchronous, TempStore};

/// The name of the database file in the cache directory.
pub const DB_FILE_NAME: &str = "cache_metadata.db";

/// The schema version (`PRAGMA user_version`) this build writes.
pub const SCHEMA_VERSION: i64 = schema::SCHEMA_VERSION;

/// The path reported for the in-memory database.
pub(crate) const MEMORY_PATH: &str = ":memory:";
