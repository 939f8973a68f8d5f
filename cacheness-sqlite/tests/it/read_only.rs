//! Read-only opens (`SqliteOptions::read_only`) and caches on read-only
//! media: reads are served, nothing is created or changed, writes fail clearly,
//! and a writable open of a read-only directory names the cause.
//!
//! The read-only media are a read-only bind mount, which needs root; where the
//! machine does not allow it, that test prints why and passes.
#![cfg(unix)]

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;

use cacheness_core::EvictionPolicy;
use cacheness_core::conformance::{key_of, sample_entry};
use cacheness_core::{AccessBatch, Cache, MetadataBackend, ScanFilter, Touch, key};
use cacheness_sqlite::{DB_FILE_NAME, SqliteBackend, SqliteError, SqliteOptions};

use crate::running_as_root;

fn read_only() -> SqliteOptions {
    SqliteOptions {
        read_only: true,
        ..SqliteOptions::default()
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn count(backend: &SqliteBackend) -> usize {
    let mut seen = 0;
    backend
        .scan(&ScanFilter::all(), &mut |_| {
            seen += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    seen
}

/// Checks every write fails as read-only and a touch is dropped.
fn assert_writes_refused(backend: &SqliteBackend) {
    let refused = |result: cacheness_core::Result<()>, operation: &str| {
        let error = result.unwrap_err().to_string();
        assert!(error.contains("read-only"), "{operation}: {error}");
    };
    refused(backend.put(sample_entry(key_of(99), 1)).map(drop), "put");
    refused(backend.remove(&key_of(0)).map(drop), "remove");
    refused(backend.clear().map(drop), "clear");
    refused(
        backend.remove_unreadable(&key_of(0)).map(drop),
        "remove_unreadable",
    );
    backend
        .touch(&AccessBatch {
            touches: vec![Touch {
                key: key_of(0),
                accessed_at: 1,
                count: 1,
            }],
            ..AccessBatch::default()
        })
        .unwrap();
}

#[test]
fn a_read_only_open_of_a_dir_without_a_database_creates_nothing() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("cache");
    let error = SqliteBackend::open_with(&missing, &read_only()).unwrap_err();
    assert!(matches!(error, SqliteError::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains(DB_FILE_NAME), "{error}");
    assert!(!missing.exists(), "the directory was created");

    std::fs::create_dir(&missing).unwrap();
    let error = SqliteBackend::open_with(&missing, &read_only()).unwrap_err();
    assert!(matches!(error, SqliteError::NotFound { .. }), "{error:?}");
    assert!(names_in(&missing).is_empty(), "{:?}", names_in(&missing));
}

#[test]
fn a_read_only_open_serves_reads_and_creates_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SqliteBackend::open(dir.path()).unwrap();
    for index in 0..5 {
        writer.put(sample_entry(key_of(index), 10)).unwrap();
    }
    drop(writer);
    let before = names_in(dir.path());
    let reserve = format!("{DB_FILE_NAME}-reserve");
    assert_eq!(
        before,
        [DB_FILE_NAME, reserve.as_str()],
        "a clean close leaves the file (and its reserve) alone"
    );
    let bytes = std::fs::read(dir.path().join(DB_FILE_NAME)).unwrap();

    let reader = SqliteBackend::open_with(dir.path(), &read_only()).unwrap();
    assert_eq!(reader.len().unwrap(), 5);
    assert_eq!(count(&reader), 5);
    assert_eq!(
        reader.get(&key_of(3)).unwrap(),
        Some(sample_entry(key_of(3), 10))
    );
    assert_eq!(
        reader
            .eviction_candidates(EvictionPolicy::Lru, 0, 2)
            .unwrap()
            .len(),
        2
    );
    assert_writes_refused(&reader);
    drop(reader);
    assert_eq!(names_in(dir.path()), before, "no -wal or -shm created");
    assert_eq!(std::fs::read(dir.path().join(DB_FILE_NAME)).unwrap(), bytes);

    // Through the engine: gets are served (their access records dropped).
    let cache = Cache::builder()
        .dir(dir.path())
        .open(SqliteBackend::open_with(dir.path(), &read_only()).unwrap())
        .unwrap();
    assert!(cache.get_bytes(&key!(absent = 1)).unwrap().is_none());
    cache.flush().unwrap();
    drop(cache);
    assert_eq!(std::fs::read(dir.path().join(DB_FILE_NAME)).unwrap(), bytes);
}

#[test]
fn a_read_only_open_beside_a_writer_sees_its_commits() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SqliteBackend::open(dir.path()).unwrap();
    writer.put(sample_entry(key_of(0), 10)).unwrap();
    let reader = SqliteBackend::open_with(dir.path(), &read_only()).unwrap();
    assert_eq!(reader.len().unwrap(), 1);
    let version = reader.data_version().unwrap();
    writer.put(sample_entry(key_of(1), 10)).unwrap();
    assert_eq!(reader.len().unwrap(), 2);
    assert!(reader.get(&key_of(1)).unwrap().is_some());
    assert_ne!(reader.data_version().unwrap(), version);
    assert_writes_refused(&reader);
}

/// `source` bind-mounted read-only at `target` for the test's lifetime.
struct ReadOnlyMount {
    target: PathBuf,
}

impl ReadOnlyMount {
    fn new(source: &Path, target: &Path) -> Result<ReadOnlyMount, String> {
        if !running_as_root() {
            return Err("not root, cannot bind-mount".into());
        }
        std::fs::create_dir_all(target).map_err(|error| error.to_string())?;
        let run = |args: &[&str]| -> Result<(), String> {
            let output = Command::new("mount")
                .args(args)
                .output()
                .map_err(|error| format!("cannot run mount: {error}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "mount {args:?} failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ))
            }
        };
        let (source, target_str) = (source.to_str().unwrap(), target.to_str().unwrap());
        run(&["--bind", source, target_str])?;
        let mount = ReadOnlyMount {
            target: target.to_owned(),
        };
        run(&["-o", "remount,bind,ro", target_str])?;
        Ok(mount)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.target).status();
    }
}

#[test]
fn a_cache_on_a_read_only_mount_is_read_and_a_writable_open_names_the_cause() {
    let root = tempfile::tempdir().unwrap();
    let source = root.path().join("cache");
    let writer = SqliteBackend::open(&source).unwrap();
    for index in 0..5 {
        writer.put(sample_entry(key_of(index), 10)).unwrap();
    }
    drop(writer);
    let mount = match ReadOnlyMount::new(&source, &root.path().join("ro")) {
        Ok(mount) => mount,
        Err(reason) => {
            eprintln!("SKIPPED a_cache_on_a_read_only_mount_is_read: {reason}");
            return;
        }
    };
    let dir = &mount.target;

    let error = SqliteBackend::open(dir).unwrap_err();
    assert!(
        matches!(error, SqliteError::NotWritable { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("Read-only file system"), "{message}");
    assert!(message.contains(&dir.display().to_string()), "{message}");

    let reader = SqliteBackend::open_with(dir, &read_only()).unwrap();
    assert_eq!(count(&reader), 5);
    assert!(reader.get(&key_of(4)).unwrap().is_some());
    assert_writes_refused(&reader);
    drop(reader);
    assert_eq!(
        names_in(&source),
        [DB_FILE_NAME.to_owned(), format!("{DB_FILE_NAME}-reserve")]
    );

    // With the log and index present (a writer has the cache open through the
    // writable path), the reader goes through them, read-only.
    let writer = SqliteBackend::open(&source).unwrap();
    writer.put(sample_entry(key_of(5), 10)).unwrap();
    let reader = SqliteBackend::open_with(dir, &read_only()).unwrap();
    assert_eq!(count(&reader), 6);
    drop(reader);
    drop(writer);
}
