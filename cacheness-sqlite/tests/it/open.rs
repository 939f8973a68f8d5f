//! Opening: schema versions, damaged and foreign files, recreation, options,
//! and visibility of other handles' writes.

use std::path::Path;

use cacheness_core::conformance::{key_of, sample_entry};
use std::sync::atomic::{AtomicBool, Ordering};

use cacheness_core::EvictionPolicy;
use cacheness_core::{AccessBatch, Counters, MetadataBackend, ScanFilter, Touch};
use cacheness_sqlite::{DB_FILE_NAME, SCHEMA_VERSION, SqliteBackend, SqliteError, SqliteOptions};
use rusqlite::Connection;

/// The version-1 layout, as an older build wrote it: entries, no stats row.
fn write_v1_database(path: &Path, entries: u64) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE entries (
            key BLOB NOT NULL PRIMARY KEY, prefix TEXT NOT NULL, description TEXT NOT NULL,
            type_tag TEXT NOT NULL, codec TEXT NOT NULL, params TEXT,
            created_at INTEGER NOT NULL, accessed_at INTEGER NOT NULL, expires_at INTEGER,
            access_count INTEGER NOT NULL, stored_size INTEGER NOT NULL, raw_size INTEGER NOT NULL,
            compression TEXT NOT NULL, content_hash BLOB NOT NULL, inline_value BLOB,
            blob_name TEXT, signature TEXT, user_metadata TEXT,
            CHECK ((inline_value IS NULL) <> (blob_name IS NULL))
        ) WITHOUT ROWID;
        CREATE INDEX entries_by_accessed_at ON entries (accessed_at);
        CREATE INDEX entries_by_expires_at ON entries (expires_at) WHERE expires_at IS NOT NULL;
        CREATE INDEX entries_by_prefix ON entries (prefix) WHERE prefix <> '';
        PRAGMA user_version = 1;",
    )
    .unwrap();
    for index in 0..entries {
        let key = key_of(index);
        conn.execute(
            "INSERT INTO entries VALUES (?1, '', '', 't', 'json', NULL, 1000, 1000, NULL, 0, ?2, ?2,
             'none', ?3, ?4, NULL, NULL, NULL)",
            rusqlite::params![
                key.as_bytes().as_slice(),
                10 + index as i64,
                [0u8; 32].as_slice(),
                vec![b'x'; 10 + index as usize],
            ],
        )
        .unwrap();
    }
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn an_older_schema_is_migrated_with_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    write_v1_database(&dir.path().join(DB_FILE_NAME), 5);

    let backend = SqliteBackend::open(dir.path()).unwrap();
    assert_eq!(user_version(&dir.path().join(DB_FILE_NAME)), SCHEMA_VERSION);
    assert_eq!(
        backend.len().unwrap(),
        5,
        "running count seeded from the rows"
    );
    assert_eq!(backend.total_size().unwrap(), 10 + 11 + 12 + 13 + 14);
    let entry = backend.get(&key_of(3)).unwrap().unwrap();
    assert_eq!(entry.stored_size, 13);
    backend.put(sample_entry(key_of(99), 5)).unwrap();
    assert_eq!(backend.len().unwrap(), 6);
    drop(backend);
    // Reopening a migrated database changes nothing.
    assert_eq!(SqliteBackend::open(dir.path()).unwrap().len().unwrap(), 6);
}

/// The version-2 layout: version 1 and the running totals, without `writes`.
fn write_v2_database(path: &Path, entries: u64) {
    write_v1_database(path, entries);
    let size: u64 = (0..entries).map(|index| 10 + index).sum();
    Connection::open(path)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE stats (
                id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1), entries INTEGER NOT NULL,
                total_size INTEGER NOT NULL, hits INTEGER NOT NULL, misses INTEGER NOT NULL,
                evictions INTEGER NOT NULL
            );
            INSERT INTO stats VALUES (1, {entries}, {size}, 7, 3, 1);
            PRAGMA user_version = 2;"
        ))
        .unwrap();
}

#[test]
fn a_version_2_database_gets_the_write_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    write_v2_database(&path, 5);

    let backend = SqliteBackend::open(dir.path()).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    let stats = backend.stats().unwrap();
    assert_eq!(
        (stats.entries, stats.total_size),
        (5, 10 + 11 + 12 + 13 + 14)
    );
    assert_eq!(
        (
            stats.counters.hits,
            stats.counters.misses,
            stats.counters.evictions
        ),
        (7, 3, 1),
        "the totals are kept"
    );
    let writes = || -> i64 {
        Connection::open(&path)
            .unwrap()
            .query_row("SELECT writes FROM stats", [], |row| row.get(0))
            .unwrap()
    };
    assert_eq!(writes(), 0);

    let version = backend.data_version().unwrap();
    backend.put(sample_entry(key_of(99), 5)).unwrap();
    assert_eq!(writes(), 1, "each write transaction counts");
    assert_eq!(backend.data_version().unwrap(), version, "own write");
    let other = SqliteBackend::open(dir.path()).unwrap();
    other.remove(&key_of(0)).unwrap();
    assert_eq!(writes(), 2);
    assert_ne!(backend.data_version().unwrap(), version, "another handle's");
    assert_eq!(backend.len().unwrap(), 5);
}

/// The version-3 layout: version 2 and the count of write transactions.
fn write_v3_database(path: &Path, entries: u64) {
    write_v2_database(path, entries);
    Connection::open(path)
        .unwrap()
        .execute_batch(
            "ALTER TABLE stats ADD COLUMN writes INTEGER NOT NULL DEFAULT 0;
             UPDATE stats SET writes = 4;
             PRAGMA user_version = 3;",
        )
        .unwrap();
}

#[test]
fn a_version_3_database_moves_its_entries_to_the_rowid_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    write_v3_database(&path, 5);

    let backend = SqliteBackend::open(dir.path()).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    let stats = backend.stats().unwrap();
    assert_eq!(
        (stats.entries, stats.total_size, stats.counters.hits),
        (5, 10 + 11 + 12 + 13 + 14, 7),
        "the totals are kept"
    );
    for index in 0..5 {
        let entry = backend.get(&key_of(index)).unwrap().unwrap();
        assert_eq!(entry.stored_size, 10 + index, "entry {index}");
    }
    // Listed in key order, as before.
    let mut keys = Vec::new();
    backend
        .scan(&ScanFilter::all(), &mut |entry| {
            keys.push(entry.key);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    let mut expected: Vec<_> = (0..5).map(key_of).collect();
    expected.sort();
    assert_eq!(keys, expected);
    // A put replaces a migrated row and returns it; a conditional remove sees it.
    let replaced = backend.put(sample_entry(key_of(2), 5)).unwrap().unwrap();
    assert_eq!(replaced.stored_size, 12);
    let current = backend.get(&key_of(2)).unwrap().unwrap();
    assert!(backend.remove_if_unchanged(&replaced).unwrap().is_none());
    assert!(backend.remove_if_unchanged(&current).unwrap().is_some());
    assert_eq!(backend.len().unwrap(), 4);
    // No eviction index until an eviction query asks for one.
    let conn = Connection::open(&path).unwrap();
    assert_eq!(
        entries_layout(&conn),
        [
            "entries",
            "entries_by_expires_at",
            "entries_by_key",
            "entries_by_prefix"
        ]
    );
    assert_eq!(
        backend
            .eviction_candidates(EvictionPolicy::Lru, 0, 10)
            .unwrap()
            .len(),
        4
    );
    drop(backend);
    assert_eq!(
        entries_layout(&conn),
        [
            "entries",
            "entries_by_accessed_at",
            "entries_by_expires_at",
            "entries_by_key",
            "entries_by_prefix"
        ]
    );
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM entries", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 4);
}

/// The names of the `entries` table and its indexes.
fn entries_layout(conn: &Connection) -> Vec<String> {
    conn.prepare("SELECT name FROM sqlite_schema WHERE tbl_name = 'entries' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_version_4_database_drops_its_eviction_index_until_eviction_asks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    let backend = SqliteBackend::open(dir.path()).unwrap();
    for index in 0..6 {
        backend.put(sample_entry(key_of(index), 10)).unwrap();
    }
    drop(backend);
    // Version 4 had the index from the start.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE INDEX entries_by_accessed_at ON entries (accessed_at, key); PRAGMA user_version = 4;",
    )
    .unwrap();

    let backend = SqliteBackend::open(dir.path()).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    assert!(!entries_layout(&conn).contains(&"entries_by_accessed_at".to_owned()));
    assert_eq!(backend.len().unwrap(), 6);
    assert_eq!(
        backend
            .eviction_candidates(EvictionPolicy::Lru, 0, 2)
            .unwrap()
            .len(),
        2
    );
    assert!(entries_layout(&conn).contains(&"entries_by_accessed_at".to_owned()));
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

fn auto_vacuum(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA auto_vacuum", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn a_version_5_database_is_rewritten_to_give_back_free_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    let backend = SqliteBackend::open(dir.path()).unwrap();
    for index in 0..6 {
        backend.put(sample_entry(key_of(index), 10)).unwrap();
    }
    drop(backend);
    assert_eq!(auto_vacuum(&path), 2, "a new file is incremental");
    // Version 5 files were not.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA auto_vacuum = NONE; VACUUM; PRAGMA user_version = 5;")
        .unwrap();
    drop(conn);
    assert_eq!(auto_vacuum(&path), 0);

    let backend = SqliteBackend::open(dir.path()).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 6);
    assert_eq!(auto_vacuum(&path), 2);
    assert_eq!(backend.len().unwrap(), 6);
    for index in 0..6 {
        assert_eq!(
            backend.get(&key_of(index)).unwrap(),
            Some(sample_entry(key_of(index), 10))
        );
    }
    let check: String = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteBackend::open(dir.path()).unwrap());
    let path = dir.path().join(DB_FILE_NAME);
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();

    let error = SqliteBackend::open(dir.path()).unwrap_err();
    assert!(
        matches!(error, SqliteError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("newer"), "{message}");
    assert_eq!(user_version(&path), SCHEMA_VERSION + 1);
}

/// Opening `dir` fails as corrupt, naming the file, which still holds `bytes`.
fn assert_refused_as_corrupt(dir: &Path, bytes: &[u8]) -> SqliteError {
    let path = dir.join(DB_FILE_NAME);
    let error = SqliteBackend::open(dir).unwrap_err();
    assert!(matches!(error, SqliteError::Corrupt { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is untouched"
    );
    error
}

#[test]
fn a_file_that_is_not_a_database_fails_naming_it_and_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    let garbage = b"this is not a sqlite database, just some text that was left here\n".repeat(100);
    std::fs::write(&path, &garbage).unwrap();

    let error = assert_refused_as_corrupt(dir.path(), &garbage);
    let core: cacheness_core::Error = error.into();
    assert!(core.to_string().contains("sqlite"), "{core}");
}

#[test]
fn a_database_with_a_damaged_schema_fails_naming_it_and_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    {
        let backend = SqliteBackend::open(dir.path()).unwrap();
        backend.put(sample_entry(key_of(1), 1)).unwrap();
    }
    let path = dir.path().join(DB_FILE_NAME);
    // Keep the 100-byte header (so SQLite recognises the file) and garble the
    // rest of page 1, which holds the schema.
    let mut bytes = std::fs::read(&path).unwrap();
    for byte in &mut bytes[100..4096] {
        *byte = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();

    assert_refused_as_corrupt(dir.path(), &bytes);
}

#[test]
fn recreate_moves_a_damaged_database_aside_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    std::fs::write(&path, b"garbage".repeat(1000)).unwrap();
    assert!(SqliteBackend::open(dir.path()).is_err());

    let backend = SqliteBackend::recreate(dir.path()).unwrap();
    assert!(backend.is_empty().unwrap());
    backend.put(sample_entry(key_of(1), 1)).unwrap();
    let aside = dir.path().join(format!("{DB_FILE_NAME}.corrupt"));
    assert_eq!(std::fs::read(&aside).unwrap(), b"garbage".repeat(1000));

    // The option does the same at open time.
    drop(backend);
    std::fs::write(&path, b"garbage again".repeat(1000)).unwrap();
    let options = SqliteOptions {
        recreate_if_corrupt: true,
        ..SqliteOptions::default()
    };
    let backend = SqliteBackend::open_with(dir.path(), &options).unwrap();
    assert!(backend.is_empty().unwrap());
    assert_eq!(
        std::fs::read(&aside).unwrap(),
        b"garbage again".repeat(1000)
    );
}

#[test]
fn a_database_of_another_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        .unwrap();
    let error = SqliteBackend::open(dir.path()).unwrap_err();
    assert!(matches!(error, SqliteError::Foreign { .. }), "{error:?}");
    assert!(error.to_string().contains("invoices"), "{error}");
}

#[test]
fn invalid_options_name_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        page_size: 1000,
        ..SqliteOptions::default()
    };
    let error = SqliteBackend::open_with(dir.path(), &options).unwrap_err();
    assert!(
        matches!(
            error,
            SqliteError::InvalidOption {
                field: "page_size",
                ..
            }
        ),
        "{error:?}"
    );
    let core: cacheness_core::Error = error.into();
    assert!(matches!(
        core,
        cacheness_core::Error::Config {
            field: "page_size",
            ..
        }
    ));
    assert!(SqliteBackend::in_memory_with(&options).is_err());
}

#[test]
fn options_reach_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        page_size: 8192,
        ..SqliteOptions::default()
    };
    drop(SqliteBackend::open_with(dir.path(), &options).unwrap());
    let conn = Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .unwrap();
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!((page_size, journal.as_str()), (8192, "wal"));
}

#[test]
fn data_version_sees_writes_of_other_handles() {
    let dir = tempfile::tempdir().unwrap();
    let mine = SqliteBackend::open(dir.path()).unwrap();
    let other = SqliteBackend::open(dir.path()).unwrap();
    let before = mine.data_version().unwrap().unwrap();
    assert_eq!(
        mine.data_version().unwrap(),
        Some(before),
        "stable without writes"
    );
    other.put(sample_entry(key_of(1), 1)).unwrap();
    let after = mine.data_version().unwrap().unwrap();
    assert_ne!(before, after, "another handle's commit shows");
    assert!(mine.get(&key_of(1)).unwrap().is_some());
    assert_eq!(mine.data_version().unwrap(), Some(after), "and shows once");
    other.touch(&touch_of(&[1])).unwrap();
    let touched = mine.data_version().unwrap().unwrap();
    assert_ne!(touched, after, "another handle's touch shows");
    other.remove(&key_of(1)).unwrap();
    assert_ne!(
        mine.data_version().unwrap(),
        Some(touched),
        "and its remove"
    );

    let memory = SqliteBackend::in_memory().unwrap();
    assert_eq!(memory.data_version().unwrap(), Some(0));
    memory.put(sample_entry(key_of(1), 1)).unwrap();
    assert_eq!(memory.data_version().unwrap(), Some(0));
}

/// A batch touching `key_of(index)` for each index, with some counters.
fn touch_of(indexes: &[u64]) -> AccessBatch {
    AccessBatch {
        touches: indexes
            .iter()
            .map(|&index| Touch {
                key: key_of(index),
                accessed_at: 5_000 + index,
                count: 2,
            })
            .collect(),
        counters: Counters {
            hits: 2,
            misses: 1,
            evictions: 0,
        },
    }
}

#[test]
fn data_version_ignores_the_handles_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mine = SqliteBackend::open(dir.path()).unwrap();
    let version = mine.data_version().unwrap();
    let unchanged = |what: &str| assert_eq!(mine.data_version().unwrap(), version, "{what}");
    for index in 0..10 {
        mine.put(sample_entry(key_of(index), index)).unwrap();
        unchanged("put");
    }
    mine.put(sample_entry(key_of(3), 99)).unwrap();
    unchanged("replacing put");
    mine.touch(&touch_of(&[1, 2, 3, 77])).unwrap();
    unchanged("touch");
    mine.remove(&key_of(1)).unwrap();
    mine.remove(&key_of(1)).unwrap();
    unchanged("remove, and remove of a missing key");
    let current = mine.get(&key_of(2)).unwrap().unwrap();
    assert!(mine.remove_if_unchanged(&current).unwrap().is_some());
    unchanged("remove_if_unchanged");
    mine.clear().unwrap();
    unchanged("clear");
    // Several writes between two calls, from several threads (several pooled
    // connections).
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let mine = &mine;
            scope.spawn(move || {
                for index in 0..20 {
                    mine.put(sample_entry(key_of(100 * thread + index), index))
                        .unwrap();
                    mine.touch(&touch_of(&[100 * thread])).unwrap();
                }
            });
        }
    });
    unchanged("puts and touches of four threads");
    assert_eq!(mine.len().unwrap(), 80);
}

/// Another handle's write is never hidden by this handle's writes committing at
/// the same time: `data_version` tells them apart only when it can be sure.
#[test]
fn data_version_sees_other_writes_among_concurrent_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mine = SqliteBackend::open(dir.path()).unwrap();
    let other = SqliteBackend::open(dir.path()).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for thread in 0..2 {
            let (mine, done) = (&mine, &done);
            scope.spawn(move || {
                let mut index = 0;
                while !done.load(Ordering::Relaxed) {
                    mine.put(sample_entry(
                        key_of(1_000 + thread * 100 + index % 100),
                        index,
                    ))
                    .unwrap();
                    index += 1;
                }
            });
        }
        for round in 0..300 {
            let before = mine.data_version().unwrap();
            other.put(sample_entry(key_of(round), round)).unwrap();
            assert_ne!(mine.data_version().unwrap(), before, "round {round}");
        }
        done.store(true, Ordering::Relaxed);
    });
}

#[test]
fn names_and_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let file = SqliteBackend::open(dir.path()).unwrap();
    let memory = SqliteBackend::in_memory().unwrap();
    assert_eq!((file.name(), memory.name()), ("sqlite", "sqlite-memory"));
    let (file_caps, memory_caps) = (file.capabilities(), memory.capabilities());
    assert!(file_caps.persistent && file_caps.multi_process && file_caps.inline_values);
    assert!(file_caps.counters && memory_caps.counters && memory_caps.inline_values);
    assert!(!memory_caps.persistent && !memory_caps.multi_process);
    assert_eq!(file.path(), dir.path().join(DB_FILE_NAME));
}

#[test]
fn a_scan_visitor_may_use_the_in_memory_backend() {
    // The in-memory database has one connection; scans release it between pages.
    let backend = SqliteBackend::in_memory().unwrap();
    for index in 0..1200 {
        backend.put(sample_entry(key_of(index), 1)).unwrap();
    }
    let mut seen = 0;
    backend
        .scan(&ScanFilter::all(), &mut |entry| {
            assert!(backend.get(&entry.key).unwrap().is_some());
            seen += 1;
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(seen, 1200);
}

/// The POSIX record locks this process holds on `path`, as `/proc/locks` lists
/// them.
///
/// `/proc/locks` is not a snapshot: read in several chunks while other test
/// threads take and release locks, it can repeat a line or skip one (seen: the
/// same lock listed twice under two ordinals). So locks are counted once each,
/// and the file is read until two readings in a row agree.
#[cfg(target_os = "linux")]
fn locks_held_on(path: &Path) -> usize {
    use std::collections::BTreeSet;
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).unwrap();
    let inode = format!(":{}", metadata.ino());
    let pid = std::process::id().to_string();
    let reading = || -> BTreeSet<Vec<String>> {
        std::fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .map(|line| line.split_whitespace().skip(1).map(str::to_owned).collect())
            .filter(|fields: &Vec<String>| {
                fields.first().map(String::as_str) == Some("POSIX")
                    && fields.get(3) == Some(&pid)
                    && fields.get(4).is_some_and(|device| device.ends_with(&inode))
            })
            .collect()
    };
    let mut last = reading();
    loop {
        let next = reading();
        if next == last {
            return next.len();
        }
        last = next;
    }
}

/// Closing any descriptor of a file drops every POSIX lock the process holds on
/// it, SQLite's included: opening a second handle must never open (and close)
/// the database file itself while the first holds its locks.
#[cfg(target_os = "linux")]
#[test]
fn a_second_handle_leaves_the_first_handles_locks_alone() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteBackend::open(dir.path()).unwrap();
    first.len().unwrap();
    let db = dir.path().join(cacheness_sqlite::DB_FILE_NAME);
    let held = locks_held_on(&db);
    assert!(
        held > 0,
        "a WAL connection holds a shared lock on the database"
    );
    let second = SqliteBackend::open(dir.path()).unwrap();
    second.len().unwrap();
    assert_eq!(
        locks_held_on(&db),
        held,
        "the first handle's locks are intact"
    );
}

#[test]
fn totals_stay_exact_past_the_i64_range_and_saturate_at_u64() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path()).unwrap();
    let sized = |index: u64, stored_size: u64| {
        let mut entry = sample_entry(key_of(index), 1);
        entry.stored_size = stored_size;
        entry
    };
    let near = i64::MAX as u64 - 5;
    let totals = |backend: &SqliteBackend| {
        let stats = backend.stats().unwrap();
        (stats.entries, stats.total_size)
    };

    backend.put(sized(0, near)).unwrap();
    assert_eq!(totals(&backend), (1, near));
    // Past i64::MAX: the total is stored wide from here on.
    backend.put(sized(1, 10)).unwrap();
    assert_eq!(totals(&backend), (2, near + 10));
    backend.put(sized(2, 1)).unwrap();
    assert_eq!(totals(&backend), (3, near + 11));
    // Replacing brings it back into range.
    backend.put(sized(1, 3)).unwrap();
    assert_eq!(totals(&backend), (3, near + 4));
    assert_eq!(backend.total_size().unwrap(), near + 4);
    // A size that does not fit i64 at all saturates the total.
    backend.put(sized(3, u64::MAX)).unwrap();
    assert_eq!(totals(&backend), (4, u64::MAX));
    drop(backend);
    let reopened = SqliteBackend::open(dir.path()).unwrap();
    assert_eq!(totals(&reopened), (4, u64::MAX));
}
