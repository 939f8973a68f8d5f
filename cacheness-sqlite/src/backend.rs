//! [`SqliteBackend`]: the metadata backend over one SQLite database.

use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use cacheness_core::EvictionPolicy;
use cacheness_core::files::open_regular;
use cacheness_core::{
    AccessBatch, BackendStats, CacheKey, Capabilities, Counters, Entry, MetadataBackend,
    ScanFilter, Touch,
};
use rusqlite::{Connection, OptionalExtension};

use crate::error::{SqliteError, is_busy, is_disk_full};
use crate::options::SqliteOptions;
use crate::pool::Pool;
use crate::row::{
    Failure, RowRead, Wide, bind_entry, columns, entry_from_row, other_columns, read_row, wide,
};
use crate::schema::{
    LFU_INDEX, LRS_INDEX, LRU_INDEX, check_read_only, configure, configure_file, ensure_schema,
    open_configured, open_read_only_configured, read_only_uri, refuse_irregular_files, with_suffix,
};
use crate::wal_index::{Header, Watched};
use crate::write_tx::WriteTx;
use crate::{DB_FILE_NAME, MEMORY_PATH};

/// Entries listed per query by [`scan`](MetadataBackend::scan): a scan is a series
/// of short keyset-paged reads, so it never holds a read transaction (which would
/// stall WAL checkpoints) while the caller works, and the caller may use the
/// backend from inside its visitor.
///
/// One buffer holds a page at a time, for the whole scan. At 256 entries of
/// ~312 bytes it stays under glibc's 128 KiB threshold for serving an
/// allocation with its own mapping: a page of 512 was mapped and unmapped at
/// every page, and a process listing 1 000 entries over and over took ~100
/// page faults per listing (~0.8 with 256 or 128; `perf stat`).
const SCAN_PAGE: usize = 256;

/// The metadata of a cache in SQLite: `cache_metadata.db` in the cache
/// directory (backend name `sqlite`), or a private in-memory database (backend
/// name `sqlite-memory`).
///
/// The file backend runs in WAL mode and is safe for many threads and many
/// processes on one directory: each thread works on a pooled connection of its
/// own, writes are `BEGIN IMMEDIATE` transactions (so a put reads the entry it
/// replaces under the write lock), and lock contention is retried for up to
/// [`SqliteOptions::busy_timeout`].
///
/// ```
/// use cacheness_core::{Cache, key};
/// use cacheness_sqlite::SqliteBackend;
///
/// let dir = tempfile::tempdir()?;
/// let cache = Cache::builder().dir(dir.path()).open(SqliteBackend::open(dir.path())?)?;
/// cache.put(&key!(run = 7), &"done")?;
/// drop(cache);
///
/// // Another process (or a later run) sees the entry.
/// let cache = Cache::builder().dir(dir.path()).open(SqliteBackend::open(dir.path())?)?;
/// assert_eq!(cache.get::<String>(&key!(run = 7))?.as_deref(), Some("done"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SqliteBackend {
    /// The database file, or `:memory:`.
    path: PathBuf,
    memory: bool,
    /// Opened with [`SqliteOptions::read_only`]: writes fail, touches are dropped.
    read_only: bool,
    /// The size of the reserve file (see [`RESERVE_SUFFIX`]); 0 in memory and
    /// read-only.
    reserve_bytes: u64,
    busy_timeout: Duration,
    pool: Pool,
    /// What [`data_version`](MetadataBackend::data_version) reads (`None` in memory).
    watcher: Option<Mutex<Watcher>>,
    /// This handle's own write transactions, told apart from other handles' there.
    own: OwnWrites,
    /// Set once this handle made sure an eviction order's index exists, by
    /// [`EvictionOrder::slot`].
    eviction_indexes: [AtomicBool; EVICTION_ORDERS],
}

/// A connection that never writes, and what it saw at the last
/// [`data_version`](MetadataBackend::data_version) call.
///
/// `PRAGMA data_version` on this connection moves whenever any other connection
/// commits, this handle's pooled ones included, so it alone cannot tell our writes
/// from others'. `stats.writes` counts every committed write transaction and
/// [`OwnWrites`] counts ours: their difference counts the others'.
#[derive(Debug)]
struct Watcher {
    /// A connection of its own, and the database's WAL-index header, which moves
    /// with every commit: when it has not moved since the last reading, nothing
    /// needs a query at all.
    watched: Watched,
    /// `PRAGMA data_version` at the last reading: while it stays, nobody
    /// committed and the answer stays (no query of the stats row).
    pragma: i64,
    /// Other handles' write transactions (`stats.writes` minus ours) at the last
    /// exact reading (the first is at open). It only grows, so an equal count
    /// later means none since.
    foreign: u64,
    /// The answer: grows by one when `foreign` grows, or when a reading was not
    /// exact. Never repeats an older value, so no change can hide behind one.
    version: u64,
    /// The WAL-index header read just before the last `pragma` reading.
    header: Option<Header>,
}

impl Watcher {
    /// A watcher over its own connection `conn`, before this handle wrote
    /// anything: every write counted in the database so far is others'.
    fn start(conn: Connection, path: &Path) -> Result<Watcher, SqliteError> {
        let pragma = read_pragma(&conn).map_err(|source| crate::error::open_error(path, source))?;
        let foreign = read_writes(&conn).map_err(|failure| failure.into_error(path, "open"))?;
        Ok(Watcher {
            // After the reads above, which mapped the WAL-index.
            watched: Watched::new(conn),
            pragma,
            foreign,
            version: 0,
            // Not read yet: the first call takes the pragma path.
            header: None,
        })
    }
}

/// This handle's write transactions that changed something, counted as they
/// commit.
#[derive(Debug, Default)]
struct OwnWrites {
    /// Commits known to have succeeded.
    committed: AtomicU64,
    /// Commits under way: between the start of `COMMIT` and the update of
    /// `committed`, the database may already show one more than `committed`.
    committing: AtomicU64,
}

impl OwnWrites {
    /// Commits `tx`, counting it. A commit that fails is not counted; should it
    /// have reached the database anyway, the count of others' writes only grows by
    /// one (a spurious change, never a hidden one).
    fn commit(&self, tx: WriteTx<'_>) -> rusqlite::Result<()> {
        self.committing.fetch_add(1, Ordering::SeqCst);
        let result = tx.commit();
        if result.is_ok() {
            self.committed.fetch_add(1, Ordering::SeqCst);
        }
        self.committing.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

impl SqliteBackend {
    /// Opens (creating if needed) `dir/cache_metadata.db` with the default
    /// [`SqliteOptions`]. `dir` is created (mode 0700) if missing.
    ///
    /// # Errors
    ///
    /// [`SqliteError::Corrupt`] if the file is not a SQLite database or is
    /// damaged (the file is left untouched), [`SqliteError::NewerSchema`] if a
    /// newer cacheness wrote it, and [`SqliteError::Open`] for I/O failures.
    pub fn open(dir: &Path) -> Result<SqliteBackend, SqliteError> {
        SqliteBackend::open_with(dir, &SqliteOptions::default())
    }

    /// Opens (creating if needed) `dir/cache_metadata.db` with `options`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), and [`SqliteError::InvalidOption`] for an option
    /// SQLite cannot use.
    pub fn open_with(dir: &Path, options: &SqliteOptions) -> Result<SqliteBackend, SqliteError> {
        check_options(options)?;
        let path = dir.join(DB_FILE_NAME);
        if options.read_only {
            return SqliteBackend::open_read_only(&path, options);
        }
        create_dir(dir)?;
        check_writable(dir, &path)?;
        match SqliteBackend::open_file(&path, options) {
            Err(SqliteError::Corrupt { source, .. }) if options.recreate_if_corrupt => {
                tracing::warn!(
                    path = %path.display(),
                    error = %source,
                    "metadata database is damaged; moving it aside and starting a new one"
                );
                move_aside(&path)?;
                SqliteBackend::open_file(&path, options)
            }
            other => other,
        }
    }

    /// Moves `dir/cache_metadata.db` aside (to `cache_metadata.db.corrupt`,
    /// replacing an older one; its `-wal` log goes to `cache_metadata.db.corrupt-wal`)
    /// and opens a fresh, empty database with the default options.
    ///
    /// This is the explicit way out after [`open`](Self::open) failed with
    /// [`SqliteError::Corrupt`]. Only call it while no other process uses the
    /// cache: they would keep writing to the old file. Blob files of the lost
    /// entries stay in the directory.
    ///
    /// # Errors
    ///
    /// [`SqliteError::Recreate`] if the file cannot be moved, or any error of
    /// [`open`](Self::open).
    pub fn recreate(dir: &Path) -> Result<SqliteBackend, SqliteError> {
        SqliteBackend::recreate_with(dir, &SqliteOptions::default())
    }

    /// [`recreate`](Self::recreate) with `options`.
    ///
    /// # Errors
    ///
    /// As [`recreate`](Self::recreate).
    pub fn recreate_with(
        dir: &Path,
        options: &SqliteOptions,
    ) -> Result<SqliteBackend, SqliteError> {
        check_options(options)?;
        if options.read_only {
            return Err(SqliteError::InvalidOption {
                field: "read_only",
                reason: "recreating a database writes it".into(),
            });
        }
        create_dir(dir)?;
        let path = dir.join(DB_FILE_NAME);
        move_aside(&path)?;
        SqliteBackend::open_file(&path, options)
    }

    /// A fresh in-memory database with the default options (backend
    /// `sqlite-memory`): SQLite's queries without a file; entries vanish with the
    /// backend.
    ///
    /// # Errors
    ///
    /// [`SqliteError::Open`] if SQLite cannot allocate it.
    pub fn in_memory() -> Result<SqliteBackend, SqliteError> {
        SqliteBackend::in_memory_with(&SqliteOptions::default())
    }

    /// A fresh in-memory database with `options` (the journal, memory map and
    /// pool options do not apply).
    ///
    /// # Errors
    ///
    /// As [`in_memory`](Self::in_memory), and [`SqliteError::InvalidOption`].
    pub fn in_memory_with(options: &SqliteOptions) -> Result<SqliteBackend, SqliteError> {
        check_options(options)?;
        let path = PathBuf::from(MEMORY_PATH);
        let open_error = |source| SqliteError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(open_error)?;
        conn.execute_batch(&format!(
            "PRAGMA page_size = {}; PRAGMA auto_vacuum = INCREMENTAL;",
            options.page_size
        ))
        .map_err(open_error)?;
        configure(&conn, options).map_err(open_error)?;
        ensure_schema(&mut conn, &path)?;
        Ok(SqliteBackend {
            path,
            memory: true,
            read_only: false,
            reserve_bytes: 0,
            busy_timeout: options.busy_timeout,
            pool: Pool::single(conn),
            watcher: None,
            own: OwnWrites::default(),
            eviction_indexes: Default::default(),
        })
    }

    /// The database file (`:memory:` for the in-memory backend).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The read-only open of [`SqliteOptions::read_only`]: creates nothing,
    /// migrates nothing.
    fn open_read_only(path: &Path, options: &SqliteOptions) -> Result<SqliteBackend, SqliteError> {
        refuse_irregular_files(path)?;
        match fs::symlink_metadata(path) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(SqliteError::NotFound {
                    path: path.to_owned(),
                });
            }
            Err(error) => {
                return Err(SqliteError::CannotOpenReadOnly {
                    path: path.to_owned(),
                    reason: error.to_string(),
                });
            }
        }
        let exists = |suffix| fs::symlink_metadata(with_suffix(path, suffix)).is_ok();
        let (log, index) = (exists("-wal"), exists("-shm"));
        if log && !index {
            return Err(SqliteError::CannotOpenReadOnly {
                path: path.to_owned(),
                reason: "its log (-wal) exists without its shared-memory index (-shm), \
                         which a read-only open does not create"
                    .into(),
            });
        }
        // No log: nothing was left to copy back, and the database file alone is
        // the cache (see `SqliteOptions::read_only`).
        let immutable = !log;
        let uri =
            read_only_uri(path, immutable).map_err(|error| SqliteError::CannotOpenReadOnly {
                path: path.to_owned(),
                reason: error.to_string(),
            })?;
        let open_error = |source| crate::error::open_error(path, source);
        let deadline = Instant::now() + options.busy_timeout;
        let (conn, watcher) = retry_until(deadline, SqliteError::is_busy, || {
            let conn = open_read_only_configured(path, &uri, options).map_err(open_error)?;
            check_read_only(&conn, path)?;
            if immutable {
                // Nothing this handle could see changes.
                return Ok((conn, None));
            }
            let conn_watcher =
                open_read_only_configured(path, &uri, options).map_err(open_error)?;
            let watcher = Watcher::start(conn_watcher, path)?;
            Ok((conn, Some(Mutex::new(watcher))))
        })?;
        Ok(SqliteBackend {
            path: path.to_owned(),
            memory: false,
            read_only: true,
            reserve_bytes: 0,
            busy_timeout: options.busy_timeout,
            pool: Pool::file(conn, path.to_owned(), options, Some(uri)).map_err(open_error)?,
            watcher,
            own: OwnWrites::default(),
            // A read-only handle creates no index: it sorts without one.
            eviction_indexes: std::array::from_fn(|_| AtomicBool::new(true)),
        })
    }

    fn open_file(path: &Path, options: &SqliteOptions) -> Result<SqliteBackend, SqliteError> {
        create_database_file(path)?;
        let deadline = Instant::now() + options.busy_timeout;
        // Opening races with other processes creating the same file: retry the
        // whole setup while another holds the lock, within the busy timeout.
        let (conn, watcher) = retry_until(deadline, SqliteError::is_busy, || {
            let open_error = |source| crate::error::open_error(path, source);
            let mut conn = open_configured(path, options).map_err(open_error)?;
            configure_file(&conn, options).map_err(open_error)?;
            ensure_schema(&mut conn, path)?;
            let conn_watcher = open_configured(path, options).map_err(open_error)?;
            Ok((conn, Watcher::start(conn_watcher, path)?))
        })?;
        let backend = SqliteBackend {
            path: path.to_owned(),
            memory: false,
            read_only: false,
            reserve_bytes: reserve_bytes(options),
            busy_timeout: options.busy_timeout,
            pool: Pool::file(conn, path.to_owned(), options, None)
                .map_err(|source| crate::error::open_error(path, source))?,
            watcher: Some(Mutex::new(watcher)),
            own: OwnWrites::default(),
            eviction_indexes: Default::default(),
        };
        backend.ensure_reserve();
        Ok(backend)
    }

    /// Runs `body` on a pooled connection, retrying while the database is busy.
    fn read<T>(
        &self,
        operation: &'static str,
        mut body: impl FnMut(&Connection) -> Result<T, Failure>,
    ) -> Result<T, SqliteError> {
        let conn = self
            .pool
            .get()
            .map_err(|source| Failure::Sql(source).into_error(&self.path, operation))?;
        self.retrying(operation, || body(&conn))
    }

    /// Runs `body` in a `BEGIN IMMEDIATE` transaction (the write lock is taken
    /// first, so what `body` reads cannot change before it commits), retrying
    /// while another writer holds the lock. A transaction that changed anything
    /// also increments `stats.writes` (in the statement that writes the totals,
    /// if `body` wrote them: [`WriteTx::count_once`]) and is counted in
    /// [`OwnWrites`].
    fn write_once<T>(
        &self,
        operation: &'static str,
        mut body: impl FnMut(&WriteTx<'_>) -> Result<T, Failure>,
    ) -> Result<T, SqliteError> {
        if self.read_only {
            return Err(SqliteError::ReadOnly {
                operation,
                path: self.path.clone(),
            });
        }
        let conn = self
            .pool
            .get()
            .map_err(|source| Failure::Sql(source).into_error(&self.path, operation))?;
        self.retrying(operation, || {
            let tx = WriteTx::begin(&conn)?;
            let changes = tx.total_changes();
            let value = body(&tx)?;
            if tx.total_changes() == changes {
                // Nothing written: the commit leaves the database as it was.
                tx.commit()?;
            } else {
                if !tx.counted() {
                    tx.prepare_cached("UPDATE stats SET writes = writes + 1 WHERE id = 1")?
                        .execute([])?;
                }
                self.own.commit(tx)?;
            }
            Ok(value)
        })
    }

    /// [`write_once`](Self::write_once), and on a full disk (`SQLITE_FULL`: the
    /// log could not grow) once more after the log was checkpointed and
    /// truncated, which gives its space back. Without this, a log that filled
    /// the disk would refuse every write, the removals and `clear` that would
    /// make room included, until space was added by hand.
    fn write<T>(
        &self,
        operation: &'static str,
        mut body: impl FnMut(&WriteTx<'_>) -> Result<T, Failure>,
    ) -> Result<T, SqliteError> {
        match self.write_once(operation, &mut body) {
            Err(SqliteError::Query { source, .. }) if is_disk_full(&source) => {
                tracing::warn!(path = %self.path.display(), operation,
                    "sqlite: disk full; using the reserve, checkpointing and truncating the log to make room");
                // The checkpoint may have to grow the database (pages new since
                // the last one): the reserve makes that room.
                self.release_reserve();
                self.truncate_log();
                let retried = self.write_once(operation, body);
                self.ensure_reserve();
                retried
            }
            other => other,
        }
    }

    /// Copies the whole log into the database and truncates it to nothing
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`), waiting for readers within the
    /// busy timeout. Best effort: a failure is logged and leaves the log as it
    /// was. Nothing to do in memory.
    fn truncate_log(&self) {
        if self.memory || self.read_only {
            return;
        }
        let result = self.pool.get().and_then(|conn| {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            })
        });
        match result {
            Ok(0) => {}
            Ok(_) => tracing::debug!(path = %self.path.display(),
                "sqlite: log not truncated: a reader or writer was still using it"),
            Err(error) => tracing::warn!(path = %self.path.display(), %error,
                "sqlite: could not checkpoint and truncate the log"),
        }
    }

    /// The reserve file beside the database: `reserve_bytes` of allocated
    /// zeros. Best effort: without room for it (or with something else at its
    /// name) there is none, and nothing fails.
    fn ensure_reserve(&self) {
        if self.reserve_bytes == 0 {
            return;
        }
        let reserve = with_suffix(&self.path, RESERVE_SUFFIX);
        if fs::symlink_metadata(&reserve).is_ok() {
            return;
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = open_regular(&reserve, &options).and_then(|mut file| {
            let zeros = [0u8; 64 << 10];
            let mut left = self.reserve_bytes;
            while left > 0 {
                let chunk = left.min(zeros.len() as u64) as usize;
                std::io::Write::write_all(&mut file, &zeros[..chunk])?;
                left -= chunk as u64;
            }
            Ok(())
        });
        if let Err(error) = written {
            tracing::debug!(path = %reserve.display(), %error, "sqlite: no room for the reserve file");
            if error.kind() != std::io::ErrorKind::AlreadyExists {
                let _ = fs::remove_file(&reserve);
            }
        }
    }

    /// Deletes the reserve file, giving its room to the write that needs it.
    fn release_reserve(&self) {
        if self.reserve_bytes == 0 {
            return;
        }
        let reserve = with_suffix(&self.path, RESERVE_SUFFIX);
        match fs::remove_file(&reserve) {
            Ok(()) => {
                tracing::warn!(path = %reserve.display(), "sqlite: reserve file released on a full disk")
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %reserve.display(), %error, "sqlite: could not release the reserve file")
            }
        }
    }

    /// Creates the index of `order` if the database has none yet: a database
    /// gets it at its first eviction query for that policy (see the schema's
    /// version 5). Once per handle; afterwards SQLite keeps it up to date for
    /// every writer.
    fn ensure_eviction_index(&self, order: &EvictionOrder) -> Result<(), SqliteError> {
        let made = &self.eviction_indexes[order.slot];
        if made.load(Ordering::Acquire) {
            return Ok(());
        }
        self.write("eviction_candidates", |tx| {
            Ok(tx.execute_batch(order.index)?)
        })?;
        made.store(true, Ordering::Release);
        Ok(())
    }

    fn retrying<T>(
        &self,
        operation: &'static str,
        mut attempt: impl FnMut() -> Result<T, Failure>,
    ) -> Result<T, SqliteError> {
        // SQLite's busy handler already waits for most locks; this covers the
        // cases where it returns SQLITE_BUSY at once (a stale WAL snapshot, WAL
        // recovery by another process).
        let mut deadline = None;
        loop {
            match attempt() {
                Err(Failure::Sql(error)) if is_busy(&error) => {
                    let deadline =
                        *deadline.get_or_insert_with(|| Instant::now() + self.busy_timeout);
                    if !pause_before(deadline) {
                        return Err(Failure::Sql(error).into_error(&self.path, operation));
                    }
                }
                other => return other.map_err(|failure| failure.into_error(&self.path, operation)),
            }
        }
    }

    fn totals(&self, operation: &'static str) -> Result<Totals, SqliteError> {
        self.read(operation, Totals::read)
    }

    /// Warns of an unreadable row that a write removed or replaced: there is no
    /// entry to hand back, so its blob file (if it has one) is left to gc.
    fn replaced_unreadable(&self, row: &RowRead) {
        self.warn_unreadable(
            row,
            "removed an entry that could not be read; its blob file, if any, is left to gc",
        );
    }

    /// The entry a removal returns: the row as an entry, or `None` for a row
    /// that could not be read (removed all the same).
    fn removed_entry(&self, removed: Option<RowRead>) -> Option<Entry> {
        match removed? {
            RowRead::Entry(entry) => Some(entry),
            unreadable => {
                self.replaced_unreadable(&unreadable);
                None
            }
        }
    }

    /// Warns of a row that cannot be read, which the operation passes over.
    fn pass_over(&self, row: &RowRead) {
        self.warn_unreadable(
            row,
            "passing over an entry that cannot be read (verify reports it, verify --repair removes it)",
        );
    }

    fn warn_unreadable(&self, row: &RowRead, what: &str) {
        if let RowRead::Unreadable {
            raw_key,
            key,
            reason,
            ..
        } = row
        {
            tracing::warn!(
                path = %self.path.display(),
                key = %RowRead::key_hex(raw_key, *key),
                reason = %reason,
                "sqlite: {what}"
            );
        }
    }

    /// The first `limit` rows of `sql`, a query of [`columns!`] in the order it
    /// gives. The limit is applied by stepping no further, not by a `LIMIT ?`:
    /// SQLite re-plans a statement whose `LIMIT` is a bound parameter each time
    /// it is bound, so a cached statement would be re-prepared on every use.
    fn select_entries(
        &self,
        operation: &'static str,
        sql: &str,
        params: impl rusqlite::Params + Clone,
        limit: usize,
    ) -> Result<Vec<Entry>, SqliteError> {
        self.read(operation, |conn| {
            let mut statement = conn.prepare_cached(sql)?;
            let mut rows = statement.query(params.clone())?;
            let mut entries = Vec::new();
            while entries.len() < limit {
                let Some(row) = rows.next()? else { break };
                match read_row(row)? {
                    RowRead::Entry(entry) => entries.push(entry),
                    unreadable => self.pass_over(&unreadable),
                }
            }
            Ok(entries)
        })
    }
}

impl MetadataBackend for SqliteBackend {
    fn name(&self) -> &str {
        if self.memory {
            "sqlite-memory"
        } else {
            "sqlite"
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .persistent(!self.memory)
            .multi_process(!self.memory)
            .counters(true)
    }

    /// A row that cannot be read as an entry is an error naming its key and
    /// the column ([`SqliteError::InvalidRow`]), not a miss: the row is still
    /// there, and `verify --repair` (or a put of the key) removes it.
    fn get(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        Ok(self.read("get", |conn| select_entry(conn, key))?)
    }

    fn put(&self, entry: Entry) -> cacheness_core::Result<Option<Entry>> {
        Ok(self.write("put", |tx| {
            // A new key is appended to the table in one statement, which does
            // nothing if the key is there already.
            let inserted = bind_entry(&mut *tx.prepare_cached(INSERT_NEW_SQL)?, &entry)? == 1;
            // A replaced entry is read, then updated where it is (its row keeps
            // its `id`). A row that cannot be read is replaced like any other;
            // with no entry to return, its blob file (if any) is left to gc.
            let previous = if inserted {
                None
            } else {
                let previous = tx
                    .prepare_cached(concat!(
                        "SELECT ",
                        columns!(),
                        " FROM entries WHERE key = ?1"
                    ))?
                    .query_row([entry.key.as_bytes().as_slice()], read_row)
                    .optional()?;
                bind_entry(&mut *tx.prepare_cached(UPDATE_SQL)?, &entry)?;
                previous
            };
            let mut totals = Totals::read(tx)?;
            match &previous {
                Some(old) => {
                    totals.total_size = totals.total_size.saturating_sub(old.stored_size())
                }
                None => totals.entries = totals.entries.saturating_add(1),
            }
            totals.total_size = totals.total_size.saturating_add(entry.stored_size);
            totals.write_sizes(tx)?;
            Ok(match previous {
                Some(RowRead::Entry(replaced)) => Some(replaced),
                Some(unreadable) => {
                    self.replaced_unreadable(&unreadable);
                    None
                }
                None => None,
            })
        })?)
    }

    fn remove(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        Ok(self.write("remove", |tx| {
            let removed = tx
                .prepare_cached(concat!(
                    "DELETE FROM entries WHERE key = ?1 RETURNING ",
                    columns!(),
                    ""
                ))?
                .query_row([key.as_bytes().as_slice()], read_row)
                .optional()?;
            subtract(tx, removed.iter())?;
            shrink_if_sparse(tx)?;
            Ok(self.removed_entry(removed))
        })?)
    }

    /// Opened read-only, does nothing: reads are served, not recorded.
    fn touch(&self, batch: &AccessBatch) -> cacheness_core::Result<()> {
        if batch.is_empty() || self.read_only {
            return Ok(());
        }
        Ok(self.write("touch", |tx| {
            // The common case in one statement; counts that would leave the i64
            // range, and keys that are gone, take the slow path.
            let mut update = tx.prepare_cached(
                "UPDATE entries SET accessed_at = max(accessed_at, ?2), access_count = access_count + ?3 \
                 WHERE key = ?1 AND typeof(access_count) = 'integer' \
                 AND access_count <= 9223372036854775807 - ?3",
            )?;
            // In key order, each B-tree page is visited once per batch.
            let mut touches: Vec<&Touch> = batch.touches.iter().collect();
            touches.sort_unstable_by_key(|touch| touch.key);
            for touch in touches {
                let changed = match i64::try_from(touch.count) {
                    Ok(count) => update.execute(rusqlite::params![
                        touch.key.as_bytes().as_slice(),
                        Wide(touch.accessed_at),
                        count
                    ])?,
                    Err(_) => 0,
                };
                if changed == 0 {
                    touch_exactly(tx, touch)?;
                }
            }
            if !batch.counters.is_zero() {
                let mut totals = Totals::read(tx)?;
                totals.counters.add(batch.counters);
                totals.write_counters(tx)?;
            }
            Ok(())
        })?)
    }

    fn scan(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
    ) -> cacheness_core::Result<()> {
        // Keyset paging on the key index: each page starts after the last key
        // seen (an empty blob sorts before every key).
        let sql = scan_sql(filter.prefix.as_deref());
        let mut after: Vec<u8> = filter
            .after
            .map(|key| key.as_bytes().to_vec())
            .unwrap_or_default();
        let mut remaining = filter.limit.unwrap_or(usize::MAX);
        let mut page = Vec::with_capacity(remaining.min(SCAN_PAGE));
        while remaining > 0 {
            let page_len = remaining.min(SCAN_PAGE);
            // Rows stepped, readable or not, and the key of the last one.
            let mut stepped = 0;
            let mut last_key: Option<Vec<u8>> = None;
            self.read("scan", |conn| {
                page.clear();
                stepped = 0;
                last_key = None;
                let mut statement = conn.prepare_cached(sql)?;
                let mut rows = match filter.prefix.as_deref() {
                    Some(prefix) if !prefix.is_empty() => {
                        statement.query(rusqlite::params![after, prefix])?
                    }
                    _ => statement.query([&after])?,
                };
                while stepped < page_len {
                    let Some(row) = rows.next()? else { break };
                    stepped += 1;
                    match read_row(row)? {
                        RowRead::Entry(entry) => page.push(entry),
                        unreadable => {
                            self.pass_over(&unreadable);
                            if let RowRead::Unreadable { raw_key, .. } = unreadable {
                                last_key = Some(raw_key);
                            }
                            continue;
                        }
                    }
                    last_key = None;
                }
                Ok(())
            })?;
            // A page ends where SQLite stopped, not where the readable entries did.
            let complete = stepped == page_len;
            if let Some(raw_key) = last_key {
                after = raw_key;
            } else if let Some(last) = page.last() {
                after = last.key.as_bytes().to_vec();
            }
            for entry in page.drain(..) {
                remaining -= 1;
                if visit(entry).is_break() {
                    return Ok(());
                }
            }
            if !complete {
                break;
            }
        }
        Ok(())
    }

    fn len(&self) -> cacheness_core::Result<u64> {
        Ok(self.totals("len")?.entries)
    }

    fn is_empty(&self) -> cacheness_core::Result<bool> {
        Ok(self.totals("is_empty")?.entries == 0)
    }

    fn total_size(&self) -> cacheness_core::Result<u64> {
        Ok(self.totals("total_size")?.total_size)
    }

    fn stats(&self) -> cacheness_core::Result<BackendStats> {
        let totals = self.totals("stats")?;
        Ok(BackendStats {
            entries: totals.entries,
            total_size: totals.total_size,
            counters: totals.counters,
        })
    }

    fn expired(&self, now_ms: u64, limit: usize) -> cacheness_core::Result<Vec<Entry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        Ok(self.select_entries("expired", expired_sql(), [Wide(now_ms)], limit)?)
    }

    /// Two indexed queries: the expired entries (the `expires_at` index), then,
    /// if there are fewer than `limit`, the live ones along the policy's index.
    /// An entry replaced between the two may come back in both versions; the
    /// engine removes only the current one.
    fn eviction_candidates(
        &self,
        policy: EvictionPolicy,
        now_ms: u64,
        limit: usize,
    ) -> cacheness_core::Result<Vec<Entry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let Some(order) = EvictionOrder::of(policy) else {
            return cacheness_core::eviction::candidates_by_scan(self, policy, now_ms, limit);
        };
        self.ensure_eviction_index(order)?;
        let operation = "eviction_candidates";
        let mut candidates =
            self.select_entries(operation, expired_sql(), [Wide(now_ms)], limit)?;
        if candidates.len() < limit {
            let live = limit - candidates.len();
            candidates.extend(self.select_entries(operation, order.live, [Wide(now_ms)], live)?);
        }
        Ok(candidates)
    }

    fn remove_if_unchanged(&self, expected: &Entry) -> cacheness_core::Result<Option<Entry>> {
        // The version check and the delete are one statement.
        Ok(self.write("remove_if_unchanged", |tx| {
            let removed = tx
                .prepare_cached(concat!(
                    "DELETE FROM entries WHERE key = ?1 AND created_at = ?2 AND content_hash = ?3 \
                     AND blob_name IS ?4 RETURNING ",
                    columns!(),
                    ""
                ))?
                .query_row(
                    rusqlite::params![
                        expected.key.as_bytes().as_slice(),
                        Wide(expected.created_at),
                        expected.content_hash.0.as_slice(),
                        expected.blob_name(),
                    ],
                    read_row,
                )
                .optional()?;
            subtract(tx, removed.iter())?;
            shrink_if_sparse(tx)?;
            Ok(self.removed_entry(removed))
        })?)
    }

    /// Also gives the freed pages back to the filesystem (the file shrinks to
    /// its schema) and truncates the log.
    fn clear(&self) -> cacheness_core::Result<Vec<Entry>> {
        let removed = self.write("clear", |tx| {
            // Read, then one `DELETE` of the whole table: SQLite empties a table
            // deleted without `WHERE` (or `RETURNING`) by freeing its pages,
            // instead of rewriting each one into the log row by row, which on a
            // full disk may be the write that no longer fits.
            let mut removed = Vec::new();
            {
                let mut statement =
                    tx.prepare_cached(concat!("SELECT ", columns!(), " FROM entries"))?;
                let mut rows = statement.query([])?;
                while let Some(row) = rows.next()? {
                    match read_row(row)? {
                        RowRead::Entry(entry) => removed.push(entry),
                        unreadable => self.replaced_unreadable(&unreadable),
                    }
                }
            }
            tx.prepare_cached("DELETE FROM entries")?.execute([])?;
            let mut totals = Totals::read(tx)?;
            totals.entries = 0;
            totals.total_size = 0;
            totals.write_sizes(tx)?;
            incremental_vacuum(tx)?;
            Ok(removed)
        })?;
        // In WAL mode the file shrinks when the log is copied back.
        self.truncate_log();
        Ok(removed)
    }

    /// Every row of the table that cannot be read as an entry, in key order:
    /// one pass over the whole table, in pages like [`scan`](Self::scan). A row
    /// whose key column is not a 16-byte key cannot be named by a key: it is
    /// reported in a warning (with its row id) and removed only by
    /// [`clear`](Self::clear).
    fn unreadable(&self, visit: &mut dyn FnMut(CacheKey, String)) -> cacheness_core::Result<()> {
        let mut after: Vec<u8> = Vec::new();
        let mut page: Vec<(CacheKey, String)> = Vec::new();
        loop {
            let mut stepped = 0;
            let mut last_key = Vec::new();
            self.read("unreadable", |conn| {
                page.clear();
                stepped = 0;
                let mut statement = conn.prepare_cached(scan_sql(None))?;
                let mut rows = statement.query([&after])?;
                while stepped < SCAN_PAGE {
                    let Some(row) = rows.next()? else { break };
                    stepped += 1;
                    last_key = match row.get_ref(0)? {
                        rusqlite::types::ValueRef::Blob(bytes) => bytes.to_vec(),
                        _ => Vec::new(),
                    };
                    if let RowRead::Unreadable {
                        key: Some(key),
                        reason,
                        ..
                    } = read_row(row)?
                    {
                        page.push((key, reason));
                    }
                }
                Ok(())
            })?;
            for (key, reason) in page.drain(..) {
                visit(key, reason);
            }
            if stepped < SCAN_PAGE || last_key.is_empty() {
                break;
            }
            after = last_key;
        }
        // Keys that are not 16-byte blobs, or no blob at all: never listed by key.
        let misshapen: Vec<i64> = self.read("unreadable", |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id FROM entries WHERE typeof(key) <> 'blob' OR length(key) <> 16",
            )?;
            let ids = statement
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            Ok(ids)
        })?;
        for id in misshapen {
            tracing::warn!(path = %self.path.display(), row_id = id,
                "sqlite: a row's key is not a cache key; only clear removes it");
        }
        Ok(())
    }

    /// Removes the row under `key` only if it still cannot be read (an entry
    /// written over it meanwhile stays), without decoding more than needed.
    fn remove_unreadable(&self, key: &CacheKey) -> cacheness_core::Result<bool> {
        Ok(self.write("remove_unreadable", |tx| {
            let row = tx
                .prepare_cached(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM entries WHERE key = ?1"
                ))?
                .query_row([key.as_bytes().as_slice()], read_row)
                .optional()?;
            let Some(row @ RowRead::Unreadable { .. }) = row else {
                return Ok(false);
            };
            tx.prepare_cached("DELETE FROM entries WHERE key = ?1")?
                .execute([key.as_bytes().as_slice()])?;
            subtract(tx, std::iter::once(&row))?;
            shrink_if_sparse(tx)?;
            self.replaced_unreadable(&row);
            Ok(true)
        })?)
    }

    fn flush(&self) -> cacheness_core::Result<()> {
        // Nothing is buffered here: every write is committed before it returns,
        // as durable as `synchronous` makes commits.
        Ok(())
    }

    /// Changes only when another handle (another process, or another
    /// `SqliteBackend` on the same file) may have committed a write; this handle's
    /// own writes leave it alone. Usually one 96-byte read of the WAL-index (see
    /// `wal_index.rs`); after any commit, a `PRAGMA data_version` on a connection
    /// of its own, and after a commit that connection sees, a read of the one-row
    /// `stats` table.
    fn data_version(&self) -> cacheness_core::Result<Option<u64>> {
        let Some(watcher) = &self.watcher else {
            // Only this handle can reach an in-memory database.
            return Ok(Some(0));
        };
        let mut watcher = watcher.lock().unwrap_or_else(PoisonError::into_inner);
        let watcher = &mut *watcher;
        // First the header, then the pragma: a commit between the two leaves the
        // old header recorded, so the next call looks again.
        let header = watcher.watched.header();
        if header.is_some() && header == watcher.header {
            return Ok(Some(watcher.version));
        }
        // Then the pragma, then the count: a commit between the two is counted
        // now and moves the pragma again, so the next call reads the count anew.
        // The other order would record the new pragma with the old count.
        let pragma = self.retrying("data_version", || Ok(read_pragma(watcher.watched.conn())?))?;
        if watcher.pragma == pragma {
            // Recorded only once the reading succeeded: a failed one must not
            // leave a header that would skip the next.
            watcher.header = header;
            return Ok(Some(watcher.version));
        }
        // Like a seqlock: the reading is exact if none of our commits was under
        // way around it and none completed during it, so `own` is exactly our
        // part of `writes`.
        let committing = self.own.committing.load(Ordering::SeqCst);
        let own = self.own.committed.load(Ordering::SeqCst);
        let writes = self.retrying("data_version", || read_writes(watcher.watched.conn()))?;
        let exact = committing == 0
            && self.own.committing.load(Ordering::SeqCst) == 0
            && self.own.committed.load(Ordering::SeqCst) == own;
        if exact {
            let foreign = writes.wrapping_sub(own);
            if foreign != watcher.foreign {
                watcher.version += 1;
                watcher.foreign = foreign;
            }
        } else {
            // One of our commits may or may not be in `writes`: report a change
            // rather than risk hiding one.
            watcher.version += 1;
        }
        watcher.pragma = pragma;
        watcher.header = header;
        Ok(Some(watcher.version))
    }
}

/// `PRAGMA data_version` of `conn`.
fn read_pragma(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA data_version")?
        .query_row([], |row| row.get(0))
}

/// `stats.writes`: the write transactions committed so far, by every handle.
fn read_writes(conn: &Connection) -> Result<u64, Failure> {
    conn.prepare_cached("SELECT writes FROM stats WHERE id = 1")?
        .query_row([], |row| Ok(wide(row.get_ref(0)?)))?
        .map_err(|reason| Failure::InvalidRow {
            key: "stats".into(),
            column: "writes",
            reason,
        })
}

/// Inserts an entry whose key is not in the table, parameters in [`columns!`]
/// order; does nothing if the key is there (the conflict's target is the
/// unique index on `key`: any other constraint still fails).
const INSERT_NEW_SQL: &str = concat!(
    "INSERT INTO entries (",
    columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
     ON CONFLICT (key) DO NOTHING"
);

/// Overwrites the entry under `?1`, the same parameters as [`INSERT_NEW_SQL`].
const UPDATE_SQL: &str = "UPDATE entries SET prefix = ?2, description = ?3, type_tag = ?4, \
     codec = ?5, params = ?6, created_at = ?7, accessed_at = ?8, expires_at = ?9, \
     access_count = ?10, stored_size = ?11, raw_size = ?12, compression = ?13, \
     content_hash = ?14, inline_value = ?15, blob_name = ?16, signature = ?17, \
     user_metadata = ?18 WHERE key = ?1";

/// A scan in key order from after `?1`, with prefix `?2` if the filter has a
/// non-empty one. No `LIMIT`: the caller steps as far as its page (see
/// [`SqliteBackend::select_entries`] for why).
fn scan_sql(prefix: Option<&str>) -> &'static str {
    match prefix {
        None => concat!(
            "SELECT ",
            columns!(),
            " FROM entries WHERE key > ?1 ORDER BY key"
        ),
        Some("") => concat!(
            "SELECT ",
            columns!(),
            " FROM entries WHERE prefix = '' AND key > ?1 ORDER BY key"
        ),
        // `prefix <> ''` repeats the partial index's condition so the planner
        // uses it. The `CAST` (a no-op on the text bound there) keeps the plan
        // from depending on the bound value: compared with a bare `?2`, SQLite
        // re-plans the statement each time `?2` is bound.
        Some(_) => concat!(
            "SELECT ",
            columns!(),
            " FROM entries WHERE prefix = CAST(?2 AS TEXT) AND prefix <> '' AND key > ?1 \
             ORDER BY key"
        ),
    }
}

/// Entries expired at `?1`, soonest first, ties by key (the order eviction
/// takes them in): a range of the partial `expires_at` index, only entries
/// that expire at the same instant sorted.
fn expired_sql() -> &'static str {
    concat!(
        "SELECT ",
        columns!(),
        " FROM entries WHERE expires_at IS NOT NULL AND expires_at <= ?1 \
         ORDER BY expires_at, key"
    )
}

/// How many eviction orders the backend answers with an index.
const EVICTION_ORDERS: usize = 3;

/// How the backend answers [`eviction_candidates`](MetadataBackend::eviction_candidates)
/// for one [`EvictionPolicy`]: after the expired entries ([`expired_sql`]), the
/// live ones along the policy's index, which ends with the key so that ties go
/// by key without a sort.
#[derive(Debug)]
struct EvictionOrder {
    /// Which of the handle's `eviction_indexes` flags says the index exists.
    slot: usize,
    /// Creates the index ([`LRU_INDEX`], ...).
    index: &'static str,
    /// The entries live at `?1`, in the policy's order.
    live: &'static str,
}

/// The live entries at `?1`, ordered by `$order` (an index's columns).
macro_rules! live_sql {
    ($order:literal) => {
        concat!(
            "SELECT ",
            columns!(),
            " FROM entries WHERE expires_at IS NULL OR expires_at > ?1 ORDER BY ",
            $order
        )
    };
}

impl EvictionOrder {
    const LRU: EvictionOrder = EvictionOrder {
        slot: 0,
        index: LRU_INDEX,
        live: live_sql!("accessed_at, key"),
    };
    const LRS: EvictionOrder = EvictionOrder {
        slot: 1,
        index: LRS_INDEX,
        live: live_sql!("created_at, key"),
    };
    const LFU: EvictionOrder = EvictionOrder {
        slot: 2,
        index: LFU_INDEX,
        live: live_sql!("access_count, accessed_at, key"),
    };

    /// The order of `policy`; `None` for a policy this build has no index for
    /// (it is answered by a scan).
    fn of(policy: EvictionPolicy) -> Option<&'static EvictionOrder> {
        match policy {
            EvictionPolicy::Lru => Some(&Self::LRU),
            EvictionPolicy::Lrs => Some(&Self::LRS),
            EvictionPolicy::Lfu => Some(&Self::LFU),
            _ => None,
        }
    }
}

/// The row under the key `?1`, as [`columns!`]. The first column is the key
/// as bound, not the `key` column: the row found has that key, and a bound
/// value comes back without the copy that reading a blob out of the row costs.
const GET_SQL: &str = concat!(
    "SELECT ?1, ",
    other_columns!(),
    " FROM entries WHERE key = ?1"
);

/// The entry under `key`, read on `conn`.
fn select_entry(conn: &Connection, key: &CacheKey) -> Result<Option<Entry>, Failure> {
    conn.prepare_cached(GET_SQL)?
        .query_row([key.as_bytes().as_slice()], |row| Ok(entry_from_row(row)))
        .optional()?
        .transpose()
}

/// Applies a touch exactly, in `u64` arithmetic: the slow path for counts beyond
/// the i64 range; a touch of a missing key does nothing.
fn touch_exactly(tx: &WriteTx<'_>, touch: &Touch) -> Result<(), Failure> {
    let key = touch.key.as_bytes().as_slice();
    let current = tx
        .prepare_cached("SELECT accessed_at, access_count FROM entries WHERE key = ?1")?
        .query_row([key], |row| {
            Ok((wide(row.get_ref(0)?), wide(row.get_ref(1)?)))
        })
        .optional()?;
    let Some((accessed_at, access_count)) = current else {
        return Ok(());
    };
    let (accessed_at, access_count) = match (accessed_at, access_count) {
        (Ok(accessed_at), Ok(access_count)) => (accessed_at, access_count),
        (Err(reason), _) | (_, Err(reason)) => {
            // A damaged row must not fail the batch of every other key's reads.
            tracing::warn!(key = %touch.key.to_hex(), reason = %reason,
                "sqlite: not recording a read of an entry that cannot be read");
            return Ok(());
        }
    };
    tx.prepare_cached("UPDATE entries SET accessed_at = ?2, access_count = ?3 WHERE key = ?1")?
        .execute(rusqlite::params![
            key,
            Wide(accessed_at.max(touch.accessed_at)),
            Wide(access_count.saturating_add(touch.count))
        ])?;
    Ok(())
}

/// The name (appended to the database's) of the reserve file: allocated
/// zeros that a write failing on a full disk deletes, so that the checkpoint
/// that truncates the log has room to grow the database by the pages new since
/// the last one. Without it, a disk that filled while the log held new pages
/// (the checkpoint thread behind the writers) refused every write, removals
/// and `clear` included, until room was made by hand.
pub(crate) const RESERVE_SUFFIX: &str = "-reserve";

/// The reserve's size: an eighth of the log's limit (the new pages a log holds
/// are a fraction of its frames), from 64 KiB to 1 MiB; 1 MiB without a limit.
fn reserve_bytes(options: &SqliteOptions) -> u64 {
    match options.wal_limit_bytes {
        0 => 1 << 20,
        limit => (limit / 8).clamp(64 << 10, 1 << 20),
    }
}

/// Free pages past which a removal gives them back to the filesystem, if they
/// are also a quarter of the file: a cache that shrank a lot shrinks on disk,
/// one that churns (removals, then puts that reuse the pages) moves no pages.
const SPARSE_PAGES: i64 = 64;

/// Gives the database's free pages back to the filesystem, inside the removal's
/// transaction, once they are many ([`SPARSE_PAGES`]). Costs two reads of the
/// header otherwise. Does nothing to a database not in incremental mode.
fn shrink_if_sparse(tx: &WriteTx<'_>) -> Result<(), Failure> {
    let free: i64 = tx
        .prepare_cached("PRAGMA freelist_count")?
        .query_row([], |row| row.get(0))?;
    if free < SPARSE_PAGES {
        return Ok(());
    }
    let pages: i64 = tx
        .prepare_cached("PRAGMA page_count")?
        .query_row([], |row| row.get(0))?;
    if free.saturating_mul(4) >= pages {
        incremental_vacuum(tx)?;
    }
    Ok(())
}

/// Gives every free page back to the filesystem (when the log is next copied
/// back). The pragma answers with a row per page it moves, and frees only as
/// many pages as it is stepped, so it is stepped to the end.
fn incremental_vacuum(tx: &WriteTx<'_>) -> Result<(), Failure> {
    let mut statement = tx.prepare_cached("PRAGMA incremental_vacuum")?;
    let mut rows = statement.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// Takes removed rows out of the running totals.
fn subtract<'a>(
    tx: &WriteTx<'_>,
    removed: impl Iterator<Item = &'a RowRead>,
) -> Result<(), Failure> {
    let mut totals: Option<Totals> = None;
    for row in removed {
        let current = match &mut totals {
            Some(current) => current,
            None => totals.insert(Totals::read(tx)?),
        };
        current.entries = current.entries.saturating_sub(1);
        current.total_size = current.total_size.saturating_sub(row.stored_size());
    }
    if let Some(totals) = totals {
        totals.write_sizes(tx)?;
    }
    Ok(())
}

/// The `stats` row.
#[derive(Debug, Clone, Copy)]
struct Totals {
    entries: u64,
    total_size: u64,
    counters: Counters,
}

impl Totals {
    fn read(conn: &Connection) -> Result<Totals, Failure> {
        let mut statement = conn.prepare_cached(
            "SELECT entries, total_size, hits, misses, evictions FROM stats WHERE id = 1",
        )?;
        let mut rows = statement.query([])?;
        let Some(row) = rows.next()? else {
            return Err(Failure::InvalidRow {
                key: "stats".into(),
                column: "entries",
                reason: "the stats row is missing".into(),
            });
        };
        let column = |index: usize, name: &'static str| {
            wide(row.get_ref(index)?).map_err(|reason| Failure::InvalidRow {
                key: "stats".into(),
                column: name,
                reason,
            })
        };
        Ok(Totals {
            entries: column(0, "entries")?,
            total_size: column(1, "total_size")?,
            counters: Counters {
                hits: column(2, "hits")?,
                misses: column(3, "misses")?,
                evictions: column(4, "evictions")?,
            },
        })
    }

    /// Writes the entry count and total size, and counts the transaction in
    /// `stats.writes` in the same statement.
    fn write_sizes(&self, tx: &WriteTx<'_>) -> Result<(), Failure> {
        tx.prepare_cached(
            "UPDATE stats SET entries = ?1, total_size = ?2, writes = writes + ?3 WHERE id = 1",
        )?
        .execute(rusqlite::params![
            Wide(self.entries),
            Wide(self.total_size),
            tx.count_once()
        ])?;
        Ok(())
    }

    /// Writes the counters, and counts the transaction in `stats.writes` in the
    /// same statement.
    fn write_counters(&self, tx: &WriteTx<'_>) -> Result<(), Failure> {
        tx.prepare_cached(
            "UPDATE stats SET hits = ?1, misses = ?2, evictions = ?3, writes = writes + ?4 \
             WHERE id = 1",
        )?
        .execute(rusqlite::params![
            Wide(self.counters.hits),
            Wide(self.counters.misses),
            Wide(self.counters.evictions),
            tx.count_once()
        ])?;
        Ok(())
    }
}

fn check_options(options: &SqliteOptions) -> Result<(), SqliteError> {
    options
        .validate()
        .map_err(|(field, reason)| SqliteError::InvalidOption { field, reason })
}

/// Creates the cache directory (mode 0700 on Unix) if it is missing.
fn create_dir(dir: &Path) -> Result<(), SqliteError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|source| SqliteError::CreateDir {
            path: dir.to_owned(),
            source,
        })
}

/// Fails, naming the cause (a read-only file system, no permission), if the
/// cache directory or an existing database in it cannot be written: SQLite
/// itself would report only "unable to open database file", or open the file
/// read-only and fail at the first write.
fn check_writable(dir: &Path, path: &Path) -> Result<(), SqliteError> {
    #[cfg(unix)]
    for target in [dir, path] {
        match rustix::fs::access(target, rustix::fs::Access::WRITE_OK) {
            Ok(()) => {}
            Err(rustix::io::Errno::NOENT) if target == path => {}
            Err(errno) => {
                return Err(SqliteError::NotWritable {
                    path: target.to_owned(),
                    source: std::io::Error::from(errno),
                });
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, path);
    Ok(())
}

/// Creates the database file (mode 0600 on Unix) if it is missing, before SQLite
/// does: SQLite would create it world-readable under the usual umask, and gives
/// its `-wal` and `-shm` files the database file's mode.
fn create_database_file(path: &Path) -> Result<(), SqliteError> {
    refuse_irregular_files(path)?;
    if fs::symlink_metadata(path).is_ok() {
        // Never open a database file ourselves once it exists: closing any
        // descriptor of a file drops every POSIX lock this process holds on it,
        // including the locks SQLite's connections hold (another handle's, in
        // this process), which is how SQLite databases get corrupted.
        return Ok(());
    }
    // Created under a name of our own, then linked into place: the database's
    // own name is never opened here, even when another thread of this process
    // creates and opens it at the same moment.
    static CREATED: AtomicU64 = AtomicU64::new(0);
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(format!(
        ".{}-{}.new",
        std::process::id(),
        CREATED.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = PathBuf::from(temp_name);
    let create_error = |source| SqliteError::CreateFile {
        path: path.to_owned(),
        source,
    };
    create_private_file(&temp).map_err(create_error)?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    let created = match linked {
        // A filesystem without hard links: create it in place, exclusively.
        Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => {
            create_private_file(path)
        }
        other => other,
    };
    match created {
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map_err(create_error),
    }
}

/// Creates a new empty file only its owner can read (0600 on Unix), refusing
/// whatever is already at `path` (a planted link is not followed).
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    open_regular(path, &options).map(drop)
}

/// Moves a damaged database and its log aside; its shared-memory index is
/// derived data and is deleted.
fn move_aside(path: &Path) -> Result<(), SqliteError> {
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let recreate_error = |source| SqliteError::Recreate {
        path: path.to_owned(),
        source,
    };
    for (from, to) in [("", ".corrupt"), ("-wal", ".corrupt-wal")] {
        match fs::rename(with_suffix(from), with_suffix(to)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(recreate_error(error)),
        }
    }
    match fs::remove_file(with_suffix("-shm")) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(recreate_error(error)),
    }
}

/// Waits a little before another attempt; `false` once `deadline` has passed.
fn pause_before(deadline: Instant) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    // Short and jitter-free is fine: SQLite's own busy handler did the long waits.
    std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
    true
}

/// Runs `attempt` until it succeeds, fails with an error `retry` rejects, or
/// `deadline` passes.
fn retry_until<T>(
    deadline: Instant,
    retry: impl Fn(&SqliteError) -> bool,
    mut attempt: impl FnMut() -> Result<T, SqliteError>,
) -> Result<T, SqliteError> {
    loop {
        match attempt() {
            Err(error) if retry(&error) && pause_before(deadline) => {
                tracing::debug!(%error, "sqlite busy while opening; retrying");
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use rusqlite::trace::{TraceEvent, TraceEventCodes};
    use rusqlite::{Connection, StatementStatus};

    use super::*;

    const ROWS: i64 = 20_000;

    /// A database of `ROWS` entries, written with plain SQL (fast in debug builds).
    fn large_database(dir: &Path) -> PathBuf {
        drop(SqliteBackend::open(dir).unwrap());
        let path = dir.join(DB_FILE_NAME);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
             INSERT INTO entries ({})
             SELECT randomblob(16), '', '', 't', 'json', NULL, i, i, NULL, 0, 100, 100,
                    'none', zeroblob(32), zeroblob(100), NULL, NULL, NULL FROM n;
             UPDATE stats SET entries = {ROWS}, total_size = {ROWS} * 100;",
            columns!()
        ))
        .unwrap();
        path
    }

    #[test]
    fn opening_a_large_database_reads_no_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = large_database(dir.path());

        // Open the way the backend does, recording every statement's work.
        let steps = Arc::new(Mutex::new(Vec::new()));
        let mut conn = Connection::open(&path).unwrap();
        let recorder = Arc::clone(&steps);
        conn.trace_v2(
            TraceEventCodes::SQLITE_TRACE_PROFILE,
            Some(move |event: TraceEvent<'_>| {
                if let TraceEvent::Profile(statement, _) = event {
                    recorder.lock().unwrap().push((
                        statement.sql().into_owned(),
                        statement.get_status(StatementStatus::FullscanStep),
                        statement.get_status(StatementStatus::VmStep),
                    ));
                }
            }),
        )
        .unwrap();
        let options = SqliteOptions::default();
        configure(&conn, &options).unwrap();
        configure_file(&conn, &options).unwrap();
        ensure_schema(&mut conn, &path).unwrap();

        let steps = steps.lock().unwrap();
        assert!(!steps.is_empty(), "the trace saw the statements");
        for (sql, full_scan_steps, vm_steps) in steps.iter() {
            assert_eq!(*full_scan_steps, 0, "`{sql}` scans a table");
            assert!(*vm_steps < 1_000, "`{sql}` ran {vm_steps} steps");
        }
        let backend = SqliteBackend::open(dir.path()).unwrap();
        assert_eq!(backend.len().unwrap(), ROWS as u64);
    }

    fn query_plan(conn: &Connection, sql: &str) -> String {
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let unbound = std::iter::repeat_n(rusqlite::types::Null, statement.parameter_count());
        let details: Vec<String> = statement
            .query_map(rusqlite::params_from_iter(unbound), |row| {
                row.get::<_, String>(3)
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        details.join("; ")
    }

    /// The plans of the backend's queries on `conn`.
    fn check_plans(conn: &Connection) {
        let get = query_plan(conn, GET_SQL);
        assert!(get.contains("USING INDEX entries_by_key (key=?)"), "{get}");
        let expired = query_plan(conn, expired_sql());
        assert!(expired.contains("entries_by_expires_at"), "{expired}");
        for (order, index) in EVICTION_INDEXES {
            let live = query_plan(conn, order.live);
            assert!(live.contains(index), "{live}");
            assert!(!live.contains("TEMP B-TREE"), "no sort: {live}");
        }
        let prefixed = query_plan(conn, scan_sql(Some("models")));
        assert!(prefixed.contains("entries_by_prefix"), "{prefixed}");
        assert!(!prefixed.contains("TEMP B-TREE"), "no sort: {prefixed}");
        let all = query_plan(conn, scan_sql(None));
        assert!(all.contains("USING INDEX entries_by_key (key>?)"), "{all}");
        assert!(!all.contains("TEMP B-TREE"), "no sort: {all}");
        for touch in [
            "UPDATE stats SET entries = ?1, total_size = ?2, writes = writes + ?3 WHERE id = 1",
            "DELETE FROM entries WHERE key = ?1",
            UPDATE_SQL,
        ] {
            let plan = query_plan(conn, touch);
            assert!(!plan.contains("SCAN"), "{touch}: {plan}");
        }
    }

    /// Each eviction order and the name of the index it reads.
    const EVICTION_INDEXES: [(&EvictionOrder, &str); EVICTION_ORDERS] = [
        (&EvictionOrder::LRU, "entries_by_accessed_at"),
        (&EvictionOrder::LRS, "entries_by_created_at"),
        (&EvictionOrder::LFU, "entries_by_access_count"),
    ];

    /// Asks for eviction candidates under every policy, which makes their
    /// indexes.
    fn evict_by_every_policy(backend: &SqliteBackend, limit: usize) {
        for policy in EvictionPolicy::ALL {
            let candidates = backend.eviction_candidates(policy, 0, limit).unwrap();
            assert_eq!(candidates.len(), limit.min(backend.len().unwrap() as usize));
        }
    }

    #[test]
    fn queries_use_the_indexes() {
        let backend = SqliteBackend::in_memory().unwrap();
        evict_by_every_policy(&backend, 1);
        check_plans(&backend.pool.get().unwrap());
        // With rows, the planner weighs a scan and sort against the index.
        let dir = tempfile::tempdir().unwrap();
        let path = large_database(dir.path());
        let backend = SqliteBackend::open(dir.path()).unwrap();
        evict_by_every_policy(&backend, 3);
        check_plans(&Connection::open(path).unwrap());
    }

    fn has_index(conn: &Connection, name: &str) -> bool {
        conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = ?1",
            [name],
            |row| row.get::<_, i64>(0),
        )
        .unwrap()
            == 1
    }

    fn has_lru_index(conn: &Connection) -> bool {
        has_index(conn, "entries_by_accessed_at")
    }

    #[test]
    fn the_eviction_index_is_made_by_the_first_eviction_query() {
        let dir = tempfile::tempdir().unwrap();
        let path = large_database(dir.path());
        let first = SqliteBackend::open(dir.path()).unwrap();
        let second = SqliteBackend::open(dir.path()).unwrap();
        let watcher = Connection::open(&path).unwrap();
        // Puts, reads, listings and expiry sweeps never need it.
        first.expired(u64::MAX, 10).unwrap();
        first
            .scan(&ScanFilter::all(), &mut |_| ControlFlow::Break(()))
            .unwrap();
        assert!(!has_lru_index(&watcher));

        // Rows were written with accessed_at = 1..=ROWS: the oldest come first.
        let lru = EvictionPolicy::Lru;
        let oldest = first.eviction_candidates(lru, 0, 5).unwrap();
        assert!(has_lru_index(&watcher));
        let accessed: Vec<u64> = oldest.iter().map(|entry| entry.accessed_at).collect();
        assert_eq!(accessed, [1, 2, 3, 4, 5]);
        // Another handle, opened before, finds it and uses it.
        assert_eq!(second.eviction_candidates(lru, 0, 5).unwrap(), oldest);
        let plan = query_plan(&watcher, EvictionOrder::LRU.live);
        assert!(plan.contains("entries_by_accessed_at"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
        // Kept up to date by every writer from then on: a touch moves an entry
        // to the back of the order.
        let batch = AccessBatch {
            touches: vec![Touch {
                key: oldest[0].key,
                accessed_at: ROWS as u64 + 1,
                count: 1,
            }],
            ..AccessBatch::default()
        };
        second.touch(&batch).unwrap();
        let now: Vec<u64> = first
            .eviction_candidates(lru, 0, 5)
            .unwrap()
            .iter()
            .map(|entry| entry.accessed_at)
            .collect();
        assert_eq!(now, [2, 3, 4, 5, 6]);
        let check: String = watcher
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn each_policy_makes_its_own_index_at_its_first_query() {
        let dir = tempfile::tempdir().unwrap();
        let path = large_database(dir.path());
        let backend = SqliteBackend::open(dir.path()).unwrap();
        let watcher = Connection::open(&path).unwrap();
        for (policy, (order, index)) in EvictionPolicy::ALL.into_iter().zip(EVICTION_INDEXES) {
            assert_eq!(EvictionOrder::of(policy).unwrap().slot, order.slot);
            assert!(!has_index(&watcher, index), "{index} before {policy}");
            let candidates = backend.eviction_candidates(policy, 0, 5).unwrap();
            assert!(has_index(&watcher, index), "{index} after {policy}");
            // Rows were written with created_at = accessed_at = 1..=ROWS and
            // never read: every policy takes the oldest first.
            let accessed: Vec<u64> = candidates.iter().map(|entry| entry.accessed_at).collect();
            assert_eq!(accessed, [1, 2, 3, 4, 5], "{policy}");
            let plan = query_plan(&watcher, order.live);
            assert!(plan.contains(index), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
        }
    }

    /// SQLite re-plans a statement whose plan used a bound value each time it is
    /// bound again, which for a cached statement means on every use.
    #[test]
    fn cached_statements_are_never_prepared_again() {
        use std::collections::BTreeMap;
        use std::time::Duration;

        use cacheness_core::{Cache, Clock, ListOptions, ManualClock, PutOptions, key};

        let dir = tempfile::tempdir().unwrap();
        // The first eviction query of each policy creates its index: a schema
        // change, after which SQLite re-prepares each statement prepared before
        // it once. Done here, by another handle, before the one traced prepares
        // any statement (its write transactions' `BEGIN` included).
        {
            let first = SqliteBackend::open(dir.path()).unwrap();
            for (order, _) in EVICTION_INDEXES {
                first.ensure_eviction_index(order).unwrap();
            }
        }
        let backend = Arc::new(SqliteBackend::open(dir.path()).unwrap());
        // Each statement's SQL: (runs, re-preparations so far).
        let seen = Arc::new(Mutex::new(BTreeMap::<String, (u32, i32)>::new()));
        {
            let recorder = Arc::clone(&seen);
            let mut conn = backend.pool.get().unwrap();
            conn.trace_v2(
                TraceEventCodes::SQLITE_TRACE_PROFILE,
                Some(move |event: TraceEvent<'_>| {
                    if let TraceEvent::Profile(statement, _) = event {
                        let mut seen = recorder.lock().unwrap();
                        let record = seen.entry(statement.sql().into_owned()).or_default();
                        record.0 += 1;
                        record.1 = statement.get_status(StatementStatus::RePrepare);
                    }
                }),
            )
            .unwrap();
        }
        let clock = ManualClock::new(1_000_000);
        let cache = Cache::builder()
            .dir(dir.path())
            .clock(clock.clone())
            .max_size(Some(3_000))
            .open(Arc::clone(&backend))
            .unwrap();
        for round in 0..4u32 {
            for i in 0..60u32 {
                let options = PutOptions::new()
                    .prefix(["models", "runs"][i as usize % 2])
                    .ttl(Duration::from_secs(u64::from(1 + i % 3)));
                cache
                    .put_with(&key!(i = i), &vec![round; 60], &options)
                    .unwrap();
                assert!(cache.get::<Vec<u32>>(&key!(i = i / 2)).is_ok());
            }
            cache.flush().unwrap();
            for prefix in [None, Some("models".to_owned()), Some("runs".to_owned())] {
                let first = cache
                    .list(&{
                        let mut options = ListOptions::new().limit(3 + round as usize);
                        options.prefix = prefix.clone();
                        options
                    })
                    .unwrap();
                cache
                    .list(&{
                        let mut options = ListOptions::new();
                        options.prefix = prefix;
                        options.after = first.last().map(|entry| entry.key);
                        options
                    })
                    .unwrap();
            }
            cache.remove(&key!(i = round)).unwrap();
            clock.advance(Duration::from_secs(2));
            cache.cleanup_expired().unwrap();
            // Every policy's queries, bound to another time each round.
            for policy in EvictionPolicy::ALL {
                backend
                    .eviction_candidates(policy, clock.now_ms(), 256)
                    .unwrap();
            }
        }
        drop(cache);
        let seen = seen.lock().unwrap();
        assert!(seen.len() > 10, "the trace saw the statements: {seen:?}");
        assert!(
            seen.keys().any(|sql| sql.contains("ORDER BY accessed_at")),
            "evicted: {seen:?}"
        );
        assert!(
            seen.keys().any(|sql| sql.contains("ORDER BY expires_at")),
            "expired: {seen:?}"
        );
        for (sql, (runs, reprepares)) in seen.iter() {
            assert_eq!(*reprepares, 0, "`{sql}`, run {runs} times");
        }
    }
}
