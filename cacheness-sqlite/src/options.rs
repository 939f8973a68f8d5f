//! The tunables of a SQLite metadata database.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// How a SQLite backend sets up its database: the pragmas applied to every
/// connection, the connection pool and what to do with a damaged file.
///
/// Every field has a default (see [`SqliteOptions::default`]), so a config file
/// names only what it changes; unknown fields are rejected:
///
/// ```
/// use cacheness_sqlite::{SqliteOptions, Synchronous};
///
/// let options: SqliteOptions =
///     serde_json::from_str(r#"{"synchronous": "full", "busy_timeout_ms": 250}"#)?;
/// assert_eq!(options.synchronous, Synchronous::Full);
/// assert_eq!(options.busy_timeout, std::time::Duration::from_millis(250));
/// assert_eq!(options.page_size, SqliteOptions::default().page_size);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteOptions {
    /// `PRAGMA page_size`, in bytes: a power of two from 512 to 65 536 (default
    /// 4 096). Only takes effect when the database file is created.
    ///
    /// Every commit writes each page it changed, whole, to the write-ahead log, so
    /// small pages make small writes cheap; large pages (the Python original used
    /// 32 KiB) make full scans of huge caches a little faster and cost up to 8×
    /// the bytes written per put.
    pub page_size: u32,
    /// `PRAGMA cache_size`, in KiB, per connection (default 20 000, about 20 MB):
    /// how many recently used pages each connection keeps in memory. More keeps
    /// more of a large cache's index hot; each pooled connection has its own.
    pub cache_size_kib: u64,
    /// `PRAGMA mmap_size`, in bytes (default 0, no map; the Python original
    /// used 512 MiB): reads of the database file up to this offset go through
    /// a shared memory map instead of `read` calls, saving a copy per page.
    /// Address space, not memory: the OS shares and evicts the mapped pages.
    ///
    /// In WAL mode the map has a price: SQLite must look every page it fetches
    /// up in the log first, not only the pages its cache misses, and pages
    /// every commit rewrites (the roots, the counters) sit deep in the log's
    /// index. Side by side in one process (`sqlite_mmap_ab` example), no map
    /// gave 1.4–1.65× the gets and 1.1–1.2× the puts when writes and reads
    /// mix, and 1.07× the gets on read-only caches of 1 000 and 10 000 entries.
    /// The map won (about 1.1× the gets) only for read-only use of a cache
    /// larger than `cache_size_kib`: set it for such caches.
    pub mmap_size: u64,
    /// How long an operation waits for a lock held by another connection or
    /// process before failing with "database is locked" (default 10 s; in config
    /// files `busy_timeout_ms`). Sets `PRAGMA busy_timeout` and bounds the
    /// backend's own retries.
    #[serde(rename = "busy_timeout_ms", deserialize_with = "duration_from_ms")]
    pub busy_timeout: Duration,
    /// `PRAGMA synchronous` (default [`Synchronous::Normal`]): when SQLite waits
    /// for the disk. See [`Synchronous`].
    pub synchronous: Synchronous,
    /// `PRAGMA temp_store` (default [`TempStore::Memory`]): where temporary tables
    /// and sort buffers of large queries live.
    pub temp_store: TempStore,
    /// `PRAGMA wal_autocheckpoint`, in pages (default 1 000, SQLite's own
    /// default: ~4 MiB of log with 4 KiB pages; 0 turns automatic
    /// checkpoints off): once the write-ahead log holds this many pages, they
    /// are copied back into the database file, which is synced. Larger batches
    /// copy a page rewritten many times only once and sync less often, but let
    /// the log file and crash recovery grow. With checkpoints off, the log
    /// grows until a connection closes. [`wal_limit_bytes`](Self::wal_limit_bytes)
    /// caps this at a quarter of the limit ([`checkpoint_pages`](Self::checkpoint_pages)
    /// gives the value used).
    ///
    /// The file backend does not make a put wait for that copy, as SQLite's own
    /// automatic checkpoint would (with `synchronous = NORMAL` it is when the
    /// log reaches the disk: ~100 ms for a 40 MB log here): a thread of the backend,
    /// `cacheness-ckpt`, started at the first checkpoint, copies while puts go
    /// on, and the next put copies only the short tail that they added
    /// meanwhile. The log may therefore grow past this size, and a put waits for
    /// the thread only once it holds 4 times as many pages (at most
    /// [`wal_limit_bytes`](Self::wal_limit_bytes)). A connection of your
    /// own given [`pragmas`](Self::pragmas) checkpoints as SQLite does, and so
    /// does the backend with [`checkpoint_thread`](Self::checkpoint_thread) off.
    pub wal_autocheckpoint: u32,
    /// The most disk the write-ahead log (`cache_metadata.db-wal`) may take, in
    /// bytes (default 16 MiB; 0: no limit beyond `wal_autocheckpoint`'s; else at
    /// least 64 KiB). Checkpoints start at a quarter of it (or at
    /// `wal_autocheckpoint` pages, if fewer), commits wait for them once the log
    /// holds 4 times that, and `PRAGMA journal_size_limit` truncates the file
    /// back to the limit when the log starts over, so the file does not keep a
    /// peak size. (A reader holding an old snapshot can still hold the log
    /// back, as in any WAL database; the backend's reads are short.) Should the
    /// disk fill anyway, the write that does not fit deletes the reserve file
    /// (`cache_metadata.db-reserve`: an eighth of this limit, from 64 KiB to
    /// 1 MiB, of allocated zeros, made at open), checkpoints and truncates the
    /// log, and is tried once more.
    ///
    /// A smaller limit keeps a small cache small on disk (the log is otherwise
    /// the largest file of a cache of a few MB) and leaves a full disk less to
    /// fill; it costs puts a checkpoint (two syncs) for every limit's worth of
    /// log they write. A cache with a size limit is best given a log limit of
    /// the same order (the `cacheness` facade derives it from `max_size`).
    pub wal_limit_bytes: u64,
    /// Whether the file backend runs its checkpoints on a thread of its own
    /// (default `true`; see [`wal_autocheckpoint`](Self::wal_autocheckpoint)).
    /// Off, the put that fills the log copies it back, as SQLite does by itself.
    pub checkpoint_thread: bool,
    /// How many idle connections the pool keeps (default 8; at least 1). Each
    /// thread doing an operation takes a connection of its own, so readers never
    /// wait for each other; beyond this many, extra connections are opened for
    /// the moment and closed. The in-memory backend always has exactly one.
    pub max_idle_connections: usize,
    /// Whether opening a file that is not a SQLite database, or is corrupt, moves
    /// it aside (to `cache_metadata.db.corrupt`) and starts a fresh one instead
    /// of failing (default `false`: opening fails with an error naming the
    /// file, and nothing is touched). See also
    /// [`SqliteBackend::recreate`](crate::SqliteBackend::recreate).
    pub recreate_if_corrupt: bool,
    /// Whether the file backend opens the database only to read it (default
    /// `false`): for a cache on read-only media, or a tool that must not change
    /// it. Nothing is created (no directory, no database: a missing one is
    /// [`SqliteError::NotFound`](crate::SqliteError::NotFound)), no schema is
    /// migrated, and every write fails with
    /// [`SqliteError::ReadOnly`](crate::SqliteError::ReadOnly); recorded reads
    /// ([`touch`](cacheness_core::MetadataBackend::touch)) are dropped, so gets
    /// are served.
    ///
    /// The log (`-wal`) and shared-memory index (`-shm`) are never created
    /// either. With both present (a writer has the cache open, or was killed),
    /// the handle reads through them and sees other processes' commits. With no
    /// log (the last writer closed cleanly), the file is opened as SQLite's
    /// `immutable`: no locks, nothing to create, the right mode for read-only
    /// media, but a writer that opens the cache later is not seen, and what it
    /// changes meanwhile may read as damage. A log without an index is
    /// [`SqliteError::CannotOpenReadOnly`](crate::SqliteError::CannotOpenReadOnly).
    pub read_only: bool,
}

impl Default for SqliteOptions {
    /// 4 KiB pages, 20 MB page cache per connection, no memory map, 10 s
    /// busy timeout, `synchronous = NORMAL`, temporary data in memory, a
    /// checkpoint every 1 000 pages on the backend's own thread and a log of at
    /// most 16 MiB, up to 8 idle connections, and no recreation of damaged
    /// files, opened to write.
    fn default() -> Self {
        SqliteOptions {
            page_size: 4096,
            cache_size_kib: 20_000,
            mmap_size: 0,
            busy_timeout: Duration::from_secs(10),
            synchronous: Synchronous::Normal,
            temp_store: TempStore::Memory,
            wal_autocheckpoint: 1_000,
            wal_limit_bytes: 16 << 20,
            checkpoint_thread: true,
            max_idle_connections: 8,
            recreate_if_corrupt: false,
            read_only: false,
        }
    }
}

impl SqliteOptions {
    /// The pragmas the backend sets on each connection it opens, as SQL text:
    /// for a connection of your own that should behave like the backend's (a
    /// raw SQLite baseline, a tool reading the file).
    ///
    /// The backend also sets `page_size` and `journal_mode = WAL` once, when it
    /// creates the file; [`file_pragmas`](Self::file_pragmas) gives those.
    ///
    /// ```
    /// use cacheness_sqlite::SqliteOptions;
    ///
    /// let options = SqliteOptions::default();
    /// let conn = rusqlite::Connection::open_in_memory()?;
    /// conn.execute_batch(&options.pragmas())?;
    /// let pages: i64 = conn.query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0))?;
    /// assert_eq!(pages, i64::from(options.checkpoint_pages()));
    /// # Ok::<(), rusqlite::Error>(())
    /// ```
    pub fn pragmas(&self) -> String {
        format!(
            "PRAGMA busy_timeout = {};\n\
             PRAGMA synchronous = {};\n\
             PRAGMA cache_size = -{};\n\
             PRAGMA temp_store = {};\n\
             PRAGMA wal_autocheckpoint = {};\n\
             PRAGMA journal_size_limit = {};\n\
             PRAGMA mmap_size = {};\n",
            self.busy_timeout.as_millis().min(i32::MAX as u128),
            self.synchronous.pragma_value(),
            self.cache_size_kib,
            self.temp_store.pragma_value(),
            self.checkpoint_pages(),
            match i64::try_from(self.wal_limit_bytes) {
                Ok(0) | Err(_) => -1,
                Ok(bytes) => bytes,
            },
            self.mmap_size,
        )
    }

    /// The log's length, in pages, at which a checkpoint starts:
    /// [`wal_autocheckpoint`](Self::wal_autocheckpoint), or a quarter of
    /// [`wal_limit_bytes`](Self::wal_limit_bytes) in frames if that is fewer
    /// (at least 1; 0 only when `wal_autocheckpoint` is 0).
    ///
    /// ```
    /// use cacheness_sqlite::SqliteOptions;
    ///
    /// let small = SqliteOptions { wal_limit_bytes: 256 << 10, ..SqliteOptions::default() };
    /// assert_eq!(small.checkpoint_pages(), 15); // 256 KiB of 4 120-byte frames, / 4
    /// assert_eq!(SqliteOptions::default().checkpoint_pages(), 1_000);
    /// ```
    pub fn checkpoint_pages(&self) -> u32 {
        if self.wal_autocheckpoint == 0 || self.wal_limit_bytes == 0 {
            return self.wal_autocheckpoint;
        }
        // A frame is a 24-byte header and a page.
        let frames = self.wal_limit_bytes / (u64::from(self.page_size) + 24);
        let quarter = u32::try_from(frames / 4).unwrap_or(u32::MAX);
        self.wal_autocheckpoint.min(quarter).max(1)
    }

    /// The pragmas that belong to the database file, which the backend sets when
    /// it creates one: the page size and `auto_vacuum = INCREMENTAL` (both
    /// effective only before the first table) and WAL mode (recorded in the
    /// file).
    pub fn file_pragmas(&self) -> String {
        format!(
            "PRAGMA page_size = {};\nPRAGMA auto_vacuum = INCREMENTAL;\nPRAGMA journal_mode = WAL;\n",
            self.page_size
        )
    }

    /// Checks the values SQLite would silently ignore or misread.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(512..=65_536).contains(&self.page_size) || !self.page_size.is_power_of_two() {
            return Err((
                "page_size",
                format!("{} is not a power of two from 512 to 65536", self.page_size),
            ));
        }
        if self.wal_limit_bytes != 0 && self.wal_limit_bytes < 64 << 10 {
            return Err((
                "wal_limit_bytes",
                format!(
                    "{} is under 64 KiB (0 means no limit)",
                    self.wal_limit_bytes
                ),
            ));
        }
        if self.max_idle_connections == 0 {
            return Err(("max_idle_connections", "must be at least 1".into()));
        }
        if i64::try_from(self.cache_size_kib).is_err() {
            return Err((
                "cache_size_kib",
                format!("{} is too large", self.cache_size_kib),
            ));
        }
        if i64::try_from(self.mmap_size).is_err() {
            return Err(("mmap_size", format!("{} is too large", self.mmap_size)));
        }
        Ok(())
    }
}

/// `PRAGMA synchronous`: how hard a commit tries to reach the disk.
///
/// In WAL mode (the file backend always uses it) no setting can corrupt the
/// database; they differ in what a power loss or OS crash may take back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Never waits for the disk: fastest; an OS crash or power loss may lose
    /// recent commits (a crash of the process alone loses nothing).
    Off,
    /// Waits for the disk at checkpoints only: the last commits before a power
    /// loss may be lost, never half-applied. The usual choice with WAL.
    #[default]
    Normal,
    /// Waits for the disk at every commit: a finished put survives power loss.
    Full,
    /// Like `Full`, and also syncs the directory after deleting the journal.
    Extra,
}

impl Synchronous {
    pub(crate) fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
        }
    }
}

/// `PRAGMA temp_store`: where temporary tables and indices live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TempStore {
    /// SQLite's compile-time default (files, for the bundled build).
    Default,
    /// Temporary files: bounded memory for huge sorts.
    File,
    /// Memory: no temporary files for the sorts of listings and eviction.
    #[default]
    Memory,
}

impl TempStore {
    pub(crate) fn pragma_value(self) -> &'static str {
        match self {
            TempStore::Default => "DEFAULT",
            TempStore::File => "FILE",
            TempStore::Memory => "MEMORY",
        }
    }
}

fn duration_from_ms<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_unknown_fields_are_rejected() {
        assert!(SqliteOptions::default().validate().is_ok());
        let empty: SqliteOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, SqliteOptions::default());
        assert!(serde_json::from_str::<SqliteOptions>(r#"{"page_sise": 4096}"#).is_err());
    }

    #[test]
    fn bad_values_name_their_field() {
        let bad_page = SqliteOptions {
            page_size: 3000,
            ..SqliteOptions::default()
        };
        assert_eq!(bad_page.validate().unwrap_err().0, "page_size");
        let no_pool = SqliteOptions {
            max_idle_connections: 0,
            ..SqliteOptions::default()
        };
        assert_eq!(no_pool.validate().unwrap_err().0, "max_idle_connections");
        let tiny_log = SqliteOptions {
            wal_limit_bytes: 4096,
            ..SqliteOptions::default()
        };
        assert_eq!(tiny_log.validate().unwrap_err().0, "wal_limit_bytes");
    }

    #[test]
    fn every_pragma_reaches_the_connection() {
        let options = SqliteOptions {
            page_size: 8192,
            cache_size_kib: 1234,
            mmap_size: 1 << 20,
            busy_timeout: Duration::from_millis(4321),
            synchronous: Synchronous::Full,
            temp_store: TempStore::File,
            wal_autocheckpoint: 777,
            wal_limit_bytes: 50 << 20,
            ..SqliteOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("raw.db")).unwrap();
        conn.execute_batch(&options.file_pragmas()).unwrap();
        conn.execute_batch(&options.pragmas()).unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        let read = |pragma: &str| -> rusqlite::types::Value {
            conn.query_row(&format!("PRAGMA {pragma}"), [], |row| row.get(0))
                .unwrap()
        };
        use rusqlite::types::Value::{Integer, Text};
        assert_eq!(read("page_size"), Integer(8192));
        assert_eq!(read("journal_mode"), Text("wal".into()));
        assert_eq!(read("busy_timeout"), Integer(4321));
        assert_eq!(read("synchronous"), Integer(2));
        assert_eq!(read("cache_size"), Integer(-1234));
        assert_eq!(read("temp_store"), Integer(1));
        assert_eq!(read("wal_autocheckpoint"), Integer(777));
        assert_eq!(read("journal_size_limit"), Integer(50 << 20));
        assert_eq!(read("auto_vacuum"), Integer(2));
        assert_eq!(read("mmap_size"), Integer(1 << 20));
    }
}
