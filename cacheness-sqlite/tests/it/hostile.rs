//! Files planted at the names SQLite opens in the cache dir: a FIFO or a
//! symbolic link at `cache_metadata.db`, `-wal` or `-shm` is refused with an
//! error naming it, before SQLite opens anything: no hang (a watchdog fails the
//! test instead of letting it hang), and no write through the link.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use cacheness_core::MetadataBackend;
use cacheness_core::conformance::{key_of, sample_entry};
use cacheness_sqlite::{DB_FILE_NAME, SqliteBackend, SqliteError};

/// How long an open may take before the test calls it a hang.
const WATCHDOG: Duration = Duration::from_secs(20);

/// Opens `dir` on another thread; the result, or a failure of the test if it
/// does not come back within the watchdog's time (the thread is left behind).
fn open_with_watchdog(dir: &Path) -> Result<SqliteBackend, SqliteError> {
    let (sender, receiver) = mpsc::channel();
    let dir = dir.to_owned();
    std::thread::spawn(move || {
        let _ = sender.send(SqliteBackend::open(&dir));
    });
    receiver
        .recv_timeout(WATCHDOG)
        .unwrap_or_else(|_| panic!("opening hung for {WATCHDOG:?}"))
}

fn with_suffix(dir: &Path, suffix: &str) -> PathBuf {
    dir.join(format!("{DB_FILE_NAME}{suffix}"))
}

/// A cache dir holding a closed database with one entry (so its `-wal` and
/// `-shm` are gone), or an empty one for the database's own name.
fn cache_dir(suffix: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if !suffix.is_empty() {
        let backend = SqliteBackend::open(dir.path()).unwrap();
        backend.put(sample_entry(key_of(1), 1)).unwrap();
        drop(backend);
        assert!(!with_suffix(dir.path(), suffix).exists());
    }
    dir
}

fn assert_refused(error: &SqliteError, planted: &Path, what: &str) {
    assert!(matches!(error, SqliteError::NotRegular { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&planted.display().to_string()),
        "{message}"
    );
    assert!(message.contains(what), "{message}");
}

#[test]
fn a_fifo_at_any_database_name_is_refused_without_hanging() {
    for suffix in ["", "-wal", "-shm"] {
        let dir = cache_dir(suffix);
        let planted = with_suffix(dir.path(), suffix);
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &planted,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let error = open_with_watchdog(dir.path()).unwrap_err();
        assert_refused(&error, &planted, "FIFO");
    }
}

#[test]
fn a_symlink_at_any_database_name_is_refused_and_its_target_untouched() {
    let outside = tempfile::tempdir().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let dir = cache_dir(suffix);
        let target = outside.path().join(format!("target{suffix}"));
        std::fs::write(&target, b"keep").unwrap();
        let planted = with_suffix(dir.path(), suffix);
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        let error = open_with_watchdog(dir.path()).unwrap_err();
        assert_refused(&error, &planted, "symbolic link");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep", "{suffix}");
        // A dangling link too: SQLite would have created its target.
        std::fs::remove_file(&target).unwrap();
        let error = open_with_watchdog(dir.path()).unwrap_err();
        assert_refused(&error, &planted, "symbolic link");
        assert!(!target.exists(), "{suffix}");
    }
}
