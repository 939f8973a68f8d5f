//! Connection setup and the versioned schema.
//!
//! The schema version lives in `PRAGMA user_version`. History:
//! - 1: `entries`, one column per field of the unified entry schema, keyed by the
//!   16-byte cache key (`WITHOUT ROWID`: a get is one B-tree descent), with
//!   indexes on `accessed_at` (eviction order), on `expires_at` where set (expiry
//!   sweeps) and on `prefix` where not empty (filtered listings);
//! - 2: adds `stats`, one row of running totals (entry count, total stored size,
//!   hit/miss/eviction counters) kept in the same transactions as the writes, so
//!   `len`, `total_size` and `stats` read one row instead of every entry;
//! - 3: adds `stats.writes`, a count of the write transactions that changed
//!   anything, incremented inside each of them: a handle that also counts its own
//!   commits can tell other handles' writes from its own (see
//!   `SqliteBackend::data_version`);
//! - 4: `entries` becomes a rowid table (an integer `id` the rows are stored by,
//!   in insertion order) with a unique index on `key`, and the `accessed_at` and
//!   `prefix` indexes name `key` as their last column. Keys are hashes, so in
//!   version 3 every new entry went into a random leaf of the table, splitting a
//!   full ~350-byte-row leaf every few puts and dirtying a random page per put;
//!   now new rows are appended to the last leaf and only the small key index
//!   (~30 bytes a key) takes random inserts. See `docs/cacheness-sqlite.md` for
//!   the measurements. The step copies the rows into the new table, in the same
//!   transaction as the rest of the migration;
//! - 5: the `accessed_at` index is dropped, and made again by the first eviction
//!   query ([`LRU_INDEX`]). Only a cache with a size limit asks for eviction
//!   candidates, and every put and every recorded access of a cache without one
//!   paid for the index: one more page written per put, ~15 % of put
//!   throughput at 1 000 entries. The indexes of the other eviction policies
//!   ([`LRS_INDEX`], [`LFU_INDEX`]) are made the same way, by the first query
//!   for their policy, with no version of their own;
//! - 6: the file is in `auto_vacuum = INCREMENTAL` mode, so the pages that
//!   `clear` and large removals free can be given back to the filesystem
//!   (`PRAGMA incremental_vacuum`); before, a cleared cache kept its largest
//!   size on disk. A new file is created in that mode (it must be set before
//!   the first table); an older one is rewritten once by `VACUUM`, which
//!   cannot run inside the migration's transaction, so it runs after it, and
//!   the version moves to 6 in a transaction of its own once it has. Should it
//!   fail (no room for the copy, a lock held past the busy timeout), the
//!   database stays usable at version 5 and the next open tries again.
//!
//! A fresh database goes through the same steps as an old one, inside one
//! `BEGIN IMMEDIATE` transaction that re-reads the version once it holds the write
//! lock: of many processes opening a fresh directory at once, exactly one creates
//! the tables and the others find them.

use std::path::{Path, PathBuf};

use cacheness_core::files::refuse_irregular;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::{SqliteError, is_corrupt};
use crate::options::SqliteOptions;
use crate::row::{Failure, Wide, columns, wide};

/// The newest schema version this build knows.
pub(crate) const SCHEMA_VERSION: i64 = 6;

/// `PRAGMA auto_vacuum` of a database that can give back free pages.
const INCREMENTAL: i64 = 2;

/// Version 1: the entries table and its indexes.
const SCHEMA_V1: &str = "
CREATE TABLE entries (
    key            BLOB    NOT NULL PRIMARY KEY,
    prefix         TEXT    NOT NULL,
    description    TEXT    NOT NULL,
    type_tag       TEXT    NOT NULL,
    codec          TEXT    NOT NULL,
    params         TEXT,
    created_at     INTEGER NOT NULL,
    accessed_at    INTEGER NOT NULL,
    expires_at     INTEGER,
    access_count   INTEGER NOT NULL,
    stored_size    INTEGER NOT NULL,
    raw_size       INTEGER NOT NULL,
    compression    TEXT    NOT NULL,
    content_hash   BLOB    NOT NULL,
    inline_value   BLOB,
    blob_name      TEXT,
    signature      TEXT,
    user_metadata  TEXT,
    CHECK ((inline_value IS NULL) <> (blob_name IS NULL))
) WITHOUT ROWID;
CREATE INDEX entries_by_accessed_at ON entries (accessed_at);
CREATE INDEX entries_by_expires_at ON entries (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX entries_by_prefix ON entries (prefix) WHERE prefix <> '';
";

/// Version 2: the running totals.
const SCHEMA_V2: &str = "
CREATE TABLE stats (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    entries     INTEGER NOT NULL,
    total_size  INTEGER NOT NULL,
    hits        INTEGER NOT NULL,
    misses      INTEGER NOT NULL,
    evictions   INTEGER NOT NULL
);
";

/// Version 3: the count of committed write transactions.
const SCHEMA_V3: &str = "ALTER TABLE stats ADD COLUMN writes INTEGER NOT NULL DEFAULT 0;";

/// Version 4: the entries in a rowid table, found by a unique index on the key.
/// The version-3 table is copied over and dropped (with its indexes); the
/// indexes that order by something else end with the key, so listings and
/// eviction order break ties by key without a sort.
const SCHEMA_V4: &str = concat!(
    "CREATE TABLE entries_v4 (
    id             INTEGER PRIMARY KEY,
    key            BLOB    NOT NULL,
    prefix         TEXT    NOT NULL,
    description    TEXT    NOT NULL,
    type_tag       TEXT    NOT NULL,
    codec          TEXT    NOT NULL,
    params         TEXT,
    created_at     INTEGER NOT NULL,
    accessed_at    INTEGER NOT NULL,
    expires_at     INTEGER,
    access_count   INTEGER NOT NULL,
    stored_size    INTEGER NOT NULL,
    raw_size       INTEGER NOT NULL,
    compression    TEXT    NOT NULL,
    content_hash   BLOB    NOT NULL,
    inline_value   BLOB,
    blob_name      TEXT,
    signature      TEXT,
    user_metadata  TEXT,
    CHECK ((inline_value IS NULL) <> (blob_name IS NULL))
);
INSERT INTO entries_v4 (",
    columns!(),
    ") SELECT ",
    columns!(),
    " FROM entries ORDER BY key;
DROP TABLE entries;
ALTER TABLE entries_v4 RENAME TO entries;
CREATE UNIQUE INDEX entries_by_key ON entries (key);
CREATE INDEX entries_by_accessed_at ON entries (accessed_at, key);
CREATE INDEX entries_by_expires_at ON entries (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX entries_by_prefix ON entries (prefix, key) WHERE prefix <> '';
"
);

/// Version 5: no `accessed_at` index until eviction asks for it.
const SCHEMA_V5: &str = "DROP INDEX IF EXISTS entries_by_accessed_at;";

/// The index of the least-recently-used eviction order (least recently accessed
/// first, ties by key), made by the first eviction query for that policy a
/// database gets (see version 5). Creating an index that exists does nothing.
///
/// The other policies' indexes are made the same way, by the first query for
/// their policy. They need no schema version: an index changes no column, a
/// build that does not know one leaves it alone (SQLite keeps it up to date
/// for every writer), and only a cache that evicts by a policy pays for its
/// index on every write.
pub(crate) const LRU_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS entries_by_accessed_at ON entries (accessed_at, key);";
/// The index of the least-recently-stored eviction order (see [`LRU_INDEX`]).
pub(crate) const LRS_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS entries_by_created_at ON entries (created_at, key);";
/// The index of the least-frequently-used eviction order, ties by least
/// recently used (see [`LRU_INDEX`]).
pub(crate) const LFU_INDEX: &str = "CREATE INDEX IF NOT EXISTS entries_by_access_count \
     ON entries (access_count, accessed_at, key);";

/// The per-connection pragmas: everything but the page size and journal mode,
/// which belong to the database file.
pub(crate) fn configure(conn: &Connection, options: &SqliteOptions) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(32);
    // `busy_timeout` and `mmap_size` answer with a row, which `execute_batch`
    // steps once and leaves.
    conn.execute_batch(&options.pragmas())
}

/// The files SQLite opens by name beside the database: its log, its
/// shared-memory index, and the rollback journal it would use outside WAL mode.
pub(crate) const COMPANION_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Refuses a database whose file, log or shared-memory index is not a regular
/// file: SQLite opens them by name, follows a symbolic link (and would write
/// through it, outside the cache dir) and blocks forever opening a FIFO.
pub(crate) fn refuse_irregular_files(path: &Path) -> Result<(), SqliteError> {
    for suffix in std::iter::once("").chain(COMPANION_SUFFIXES) {
        let candidate = with_suffix(path, suffix);
        refuse_irregular(&candidate).map_err(|source| SqliteError::NotRegular {
            path: candidate,
            source,
        })?;
    }
    Ok(())
}

/// [`refuse_irregular_files`] as the `SQLITE_CANTOPEN` an open that met such a
/// file would give, with the reason (naming the file) as its message.
fn files_checked(path: &Path) -> rusqlite::Result<()> {
    refuse_irregular_files(path).map_err(|error| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(error.to_string()),
        )
    })
}

/// A read-only connection to the database file at `path` through `uri` (see
/// [`read_only_uri`]), with the per-connection pragmas set and the files checked
/// as for [`open_configured`].
pub(crate) fn open_read_only_configured(
    path: &Path,
    uri: &str,
    options: &SqliteOptions,
) -> rusqlite::Result<Connection> {
    files_checked(path)?;
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn, options)?;
    Ok(conn)
}

/// The `file:` URI that opens `path` read-only: `mode=ro`, and `immutable=1`
/// when `immutable` (SQLite then takes no locks and reads the file as it is,
/// which needs neither the log nor the shared-memory index, for read-only
/// media). Every byte of the absolute path other than letters, digits and
/// `/._-~` is percent-encoded, as SQLite decodes it.
pub(crate) fn read_only_uri(path: &Path, immutable: bool) -> std::io::Result<String> {
    let absolute = std::path::absolute(path)?;
    let mut uri = String::from("file://");
    for byte in absolute.as_os_str().as_encoded_bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'-' | b'~' => {
                uri.push(char::from(*byte));
            }
            other => uri.push_str(&format!("%{other:02X}")),
        }
    }
    uri.push_str(if immutable {
        "?mode=ro&immutable=1"
    } else {
        "?mode=ro"
    });
    Ok(uri)
}

/// A connection to the database file at `path`, with the per-connection
/// pragmas set: how every connection of a file backend starts. The files are
/// checked as by [`refuse_irregular_files`] first (a connection opened later
/// than the backend must not meet a FIFO planted meanwhile either). (Not
/// SQLite's `SQLITE_OPEN_NOFOLLOW`: it refuses a link anywhere in the path, such
/// as a home directory that is a link.)
pub(crate) fn open_configured(
    path: &Path,
    options: &SqliteOptions,
) -> rusqlite::Result<Connection> {
    files_checked(path)?;
    let conn = Connection::open(path)?;
    configure(&conn, options)?;
    Ok(conn)
}

/// Sets the file-level pragmas: the page size (effective on a new file only) and
/// WAL mode (recorded in the file, so later connections inherit it).
///
/// Only on a file without pages: setting `auto_vacuum` on a database that has
/// it already is a write transaction (SQLite records the mode in the header
/// again), which every open would pay, and which other handles would see as a
/// commit.
pub(crate) fn configure_file(conn: &Connection, options: &SqliteOptions) -> rusqlite::Result<()> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |row| row.get(0))?;
    if pages == 0 {
        conn.execute_batch(&options.file_pragmas())?;
    } else {
        conn.execute_batch("PRAGMA journal_mode = WAL")?;
    }
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            mode,
            "sqlite could not switch to WAL mode; readers and writers will block each other"
        );
    }
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`], creating or migrating it in one
/// transaction, and checks the database is readable.
pub(crate) fn ensure_schema(conn: &mut Connection, path: &Path) -> Result<(), SqliteError> {
    let open_error = |source| crate::error::open_error(path, source);
    let version = user_version(conn).map_err(open_error)?;
    check_not_newer(version, path)?;
    if version < SCHEMA_VERSION {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(open_error)?;
        // Another process may have created or migrated it while we waited.
        let version = user_version(&tx).map_err(open_error)?;
        check_not_newer(version, path)?;
        if version == 0 {
            refuse_foreign_tables(&tx).map_err(|e| e.into_error(path, "open"))?;
        }
        if version < SCHEMA_VERSION {
            let reached = migrate(&tx, version).map_err(|failure| match failure {
                Failure::Sql(source) if is_corrupt(&source) => SqliteError::Corrupt {
                    path: path.to_owned(),
                    source,
                },
                Failure::Sql(source) => SqliteError::Migrate {
                    path: path.to_owned(),
                    from: version,
                    source,
                },
                other => other.into_error(path, "migrate"),
            })?;
            tracing::info!(path = %path.display(), from = version, to = reached, "sqlite schema set up");
        }
        tx.commit().map_err(open_error)?;
        if user_version(conn).map_err(open_error)? == SCHEMA_VERSION - 1 {
            become_incremental(conn, path).map_err(open_error)?;
        }
    }
    read_stats_row(conn).map_err(open_error)
}

/// The oldest schema a read-only handle reads as it is: versions 4 to 6 differ
/// in indexes and file settings, not in the tables' columns.
const OLDEST_READABLE: i64 = 4;

/// Checks that a database opened read-only has a schema this build reads
/// without migrating it, and is readable.
pub(crate) fn check_read_only(conn: &Connection, path: &Path) -> Result<(), SqliteError> {
    let open_error = |source| crate::error::open_error(path, source);
    let version = user_version(conn).map_err(open_error)?;
    check_not_newer(version, path)?;
    if version < OLDEST_READABLE {
        return Err(SqliteError::CannotOpenReadOnly {
            path: path.to_owned(),
            reason: if version == 0 {
                "it holds no cache".into()
            } else {
                format!(
                    "its schema version {version} needs a migration, which a read-only open does not do"
                )
            },
        });
    }
    read_stats_row(conn).map_err(open_error)
}

/// Reads the schema and the stats row: a damaged file fails here, at open,
/// rather than at the first operation. One row, never the entries.
fn read_stats_row(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("SELECT entries FROM stats WHERE id = 1", [], |row| {
        wide(row.get_ref(0)?).map_err(|reason| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Integer,
                reason.into(),
            )
        })
    })?;
    Ok(())
}

fn check_not_newer(version: i64, path: &Path) -> Result<(), SqliteError> {
    if version > SCHEMA_VERSION {
        return Err(SqliteError::NewerSchema {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// A database at version 0 is ours to create only if it has no tables.
fn refuse_foreign_tables(conn: &Connection) -> Result<(), Failure> {
    let mut statement = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )?;
    let tables: Vec<String> = statement
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if tables.is_empty() {
        return Ok(());
    }
    Err(Failure::Foreign {
        tables: tables.join(", "),
    })
}

/// Version 6 for a database of version 5: `VACUUM` in incremental mode, then
/// the version. A failed `VACUUM` is a warning, not an error (see the module's
/// history).
fn become_incremental(conn: &mut Connection, path: &Path) -> rusqlite::Result<()> {
    if auto_vacuum(conn)? != INCREMENTAL {
        // The copy VACUUM makes goes to a temporary file, not memory: a large
        // cache's index would otherwise be held in memory whole.
        let temp_store: i64 = conn.query_row("PRAGMA temp_store", [], |row| row.get(0))?;
        let vacuumed = conn
            .execute_batch("PRAGMA auto_vacuum = INCREMENTAL; PRAGMA temp_store = FILE; VACUUM;");
        // Back to the connection's own setting: it joins the pool.
        conn.execute_batch(&format!("PRAGMA temp_store = {temp_store}"))?;
        if let Err(error) = vacuumed {
            tracing::warn!(path = %path.display(), %error,
                "sqlite: could not rewrite the database to give back free pages; it keeps its size on disk until this succeeds at a later open");
            return Ok(());
        }
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if user_version(&tx)? == SCHEMA_VERSION - 1 && auto_vacuum(&tx)? == INCREMENTAL {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tracing::info!(path = %path.display(), to = SCHEMA_VERSION, "sqlite database gives back free pages");
    }
    tx.commit()
}

fn auto_vacuum(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA auto_vacuum", [], |row| row.get(0))
}

/// Runs every step from `from` to [`SCHEMA_VERSION`] on an open transaction,
/// but for a `VACUUM` that version 6 may need (see [`become_incremental`]);
/// the version reached.
fn migrate(conn: &Connection, from: i64) -> Result<i64, Failure> {
    if from < 1 {
        conn.execute_batch(SCHEMA_V1)?;
    }
    if from < 2 {
        conn.execute_batch(SCHEMA_V2)?;
        // The one full pass over the entries a database ever gets, to seed the
        // running totals.
        let mut entries = 0u64;
        let mut total_size = 0u64;
        let mut statement = conn.prepare("SELECT key, stored_size FROM entries")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let key = row.get_ref(0)?;
            let size = wide(row.get_ref(1)?).map_err(|reason| Failure::InvalidRow {
                key: match key {
                    rusqlite::types::ValueRef::Blob(bytes) => {
                        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
                    }
                    _ => "?".into(),
                },
                column: "stored_size",
                reason,
            })?;
            entries += 1;
            total_size = total_size.saturating_add(size);
        }
        conn.execute(
            "INSERT INTO stats (id, entries, total_size, hits, misses, evictions) VALUES (1, ?1, ?2, 0, 0, 0)",
            rusqlite::params![Wide(entries), Wide(total_size)],
        )?;
    }
    if from < 3 {
        conn.execute_batch(SCHEMA_V3)?;
    }
    if from < 4 {
        conn.execute_batch(SCHEMA_V4)?;
    }
    if from < 5 {
        conn.execute_batch(SCHEMA_V5)?;
    }
    // A new file is incremental from the start (`file_pragmas`).
    let reached = if auto_vacuum(conn)? == INCREMENTAL {
        SCHEMA_VERSION
    } else {
        SCHEMA_VERSION - 1
    };
    conn.pragma_update(None, "user_version", reached)?;
    Ok(reached)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_gets_its_file_pragmas_and_a_reopened_one_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let options = SqliteOptions {
            page_size: 8192,
            ..SqliteOptions::default()
        };
        let mut conn = Connection::open(&path).unwrap();
        configure_file(&conn, &options).unwrap();
        ensure_schema(&mut conn, &path).unwrap();
        let read = |conn: &Connection, pragma: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {pragma}"), [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(read(&conn, "page_size"), 8192);
        assert_eq!(read(&conn, "auto_vacuum"), INCREMENTAL);
        let version = read(&conn, "data_version");
        let mut again = Connection::open(&path).unwrap();
        configure_file(&again, &options).unwrap();
        ensure_schema(&mut again, &path).unwrap();
        assert_eq!(read(&conn, "data_version"), version, "the reopening wrote");
    }

    #[test]
    fn the_migration_to_incremental_keeps_the_connections_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        configure_file(&conn, &SqliteOptions::default()).unwrap();
        ensure_schema(&mut conn, &path).unwrap();
        conn.execute_batch("PRAGMA auto_vacuum = NONE; VACUUM; PRAGMA user_version = 5;")
            .unwrap();
        drop(conn);
        let mut conn = Connection::open(&path).unwrap();
        configure(&conn, &SqliteOptions::default()).unwrap();
        ensure_schema(&mut conn, &path).unwrap();
        let read = |pragma: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {pragma}"), [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(read("user_version"), SCHEMA_VERSION);
        assert_eq!(read("auto_vacuum"), INCREMENTAL);
        assert_eq!(read("temp_store"), 2, "memory, as configured");
    }

    #[test]
    fn a_fresh_database_gets_the_current_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        ensure_schema(&mut conn, Path::new(":memory:")).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        // Idempotent.
        ensure_schema(&mut conn, Path::new(":memory:")).unwrap();
    }
}
