//! The cache's footprint on disk: the write-ahead log stays within
//! `wal_limit_bytes`, the file gives back what `clear` and large removals free,
//! and a full disk does not wedge the cache (removals and `clear` make room).
//!
//! The full disk is a size-limited tmpfs, which needs root (`mount -t tmpfs`);
//! where the machine does not allow it, that test prints why and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use cacheness_core::conformance::{key_of, sample_entry};
use cacheness_core::{Cache, Entry, Location, MetadataBackend, key};
use cacheness_sqlite::{DB_FILE_NAME, SqliteBackend, SqliteOptions, Synchronous};

use crate::running_as_root;

fn file_len(dir: &Path, suffix: &str) -> u64 {
    std::fs::metadata(dir.join(format!("{DB_FILE_NAME}{suffix}"))).map_or(0, |meta| meta.len())
}

/// The database, its log and its shared-memory index, in bytes.
fn footprint(dir: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| file_len(dir, suffix))
        .sum()
}

/// An entry holding `len` incompressible bytes inline.
fn inline_entry(index: u64, len: usize) -> Entry {
    let mut entry = sample_entry(key_of(index), 1_000 + index);
    let mut state = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    entry.stored_size = len as u64;
    entry.raw_size = len as u64;
    entry.location = Location::Inline(bytes);
    entry
}

#[test]
fn the_log_stays_within_its_limit_under_churn() {
    let dir = tempfile::tempdir().unwrap();
    let limit: u64 = 256 << 10;
    let options = SqliteOptions {
        wal_limit_bytes: limit,
        // The syncs of the many checkpoints are not what is tested.
        synchronous: Synchronous::Off,
        ..SqliteOptions::default()
    };
    let backend = SqliteBackend::open_with(dir.path(), &options).unwrap();
    // Like a cache with a size limit of 256 KiB: 32 values of 8 KiB live, the
    // oldest removed as each new one comes.
    let live = 32;
    let value_len = 8 << 10;
    let (mut longest_log, mut largest) = (0, 0);
    for index in 0..1_500u64 {
        backend.put(inline_entry(index, value_len)).unwrap();
        if index >= live {
            assert!(backend.remove(&key_of(index - live)).unwrap().is_some());
        }
        longest_log = longest_log.max(file_len(dir.path(), "-wal"));
        largest = largest.max(footprint(dir.path()));
    }
    // At the limit a commit waits for the checkpoint and copies the rest: a
    // commit's frames over it at most (an 8 KiB put changes ~8 pages).
    let frame = 24 + u64::from(options.page_size);
    assert!(
        longest_log <= limit + 16 * frame,
        "the log reached {longest_log} bytes, limit {limit}"
    );
    let data = live * value_len as u64;
    assert!(
        largest <= 4 * data,
        "the files reached {largest} bytes for {data} bytes of values"
    );
}

/// The bytes of every file under `dir`.
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|entry| match entry.file_type() {
                Ok(kind) if kind.is_dir() => dir_size(&entry.path()),
                _ => entry.metadata().map_or(0, |meta| meta.len()),
            })
            .sum()
    })
}

/// `len` incompressible bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn a_size_limited_cache_stays_within_a_small_multiple_of_its_limit() {
    // The case: max_size 256 KiB, 320 puts of 8 KiB (the directory
    // peaked at 11 MB), with the log limit the facade derives from max_size.
    let dir = tempfile::tempdir().unwrap();
    let max_size: u64 = 256 << 10;
    let options = SqliteOptions {
        wal_limit_bytes: max_size,
        synchronous: Synchronous::Off,
        ..SqliteOptions::default()
    };
    let cache = Cache::builder()
        .dir(dir.path())
        .max_size(Some(max_size))
        .open(SqliteBackend::open_with(dir.path(), &options).unwrap())
        .unwrap();
    let mut peak = 0;
    for id in 0..320u64 {
        cache
            .put_bytes(&key!(id = id), &noise(id, 8 << 10))
            .unwrap();
        peak = peak.max(dir_size(dir.path()));
    }
    assert!(
        peak <= 4 * max_size,
        "the directory peaked at {peak} bytes for a limit of {max_size}"
    );
}

#[test]
fn clear_and_large_removals_give_the_file_back() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path()).unwrap();
    // ~4 MB of values.
    for index in 0..1_000 {
        backend.put(inline_entry(index, 4 << 10)).unwrap();
    }
    drop(backend);
    let full = file_len(dir.path(), "");
    assert!(full > 4_000_000, "{full}");

    // Removing 90 % of the entries one by one: the file shrinks by about as much
    // once the log is copied back (at the latest when the backend closes).
    let backend = SqliteBackend::open(dir.path()).unwrap();
    for index in 0..900 {
        assert!(backend.remove(&key_of(index)).unwrap().is_some());
    }
    drop(backend);
    let after_removals = file_len(dir.path(), "");
    assert!(
        after_removals < full / 4,
        "{after_removals} bytes left of {full} after removing 90 %"
    );

    // clear: the file goes back to about its empty size at once, open or not.
    let backend = SqliteBackend::open(dir.path()).unwrap();
    assert_eq!(backend.clear().unwrap().len(), 100);
    let cleared = footprint(dir.path());
    assert!(
        cleared < 200 << 10,
        "{cleared} bytes left after clear (db {}, log {})",
        file_len(dir.path(), ""),
        file_len(dir.path(), "-wal")
    );
    drop(backend);
    assert!(file_len(dir.path(), "") < 64 << 10);
}

/// A tmpfs of `size` mounted for the test's lifetime.
struct TinyFs {
    mount_point: PathBuf,
}

impl TinyFs {
    fn mount(mount_point: &Path, size: &str) -> Result<TinyFs, String> {
        if !running_as_root() {
            return Err("not root, cannot mount a tmpfs".into());
        }
        std::fs::create_dir_all(mount_point).map_err(|error| error.to_string())?;
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(mount_point)
            .output()
            .map_err(|error| format!("cannot run mount: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(TinyFs {
            mount_point: mount_point.to_owned(),
        })
    }

    /// Bytes free.
    fn free(&self) -> u64 {
        let stats = rustix::fs::statvfs(&self.mount_point).unwrap();
        stats.f_bavail * stats.f_frsize
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mount_point)
            .status();
    }
}

#[test]
fn a_full_disk_does_not_wedge_the_cache() {
    // With the default log limit, the disk fills with values, not log.
    fill_then_make_room("default", &SqliteOptions::default());
}

#[test]
fn a_full_disk_with_new_pages_in_the_log_does_not_wedge_the_cache() {
    // No checkpoint at all while the disk fills (as when the checkpoint thread
    // falls behind): the log holds every page new since the cache was created,
    // and the checkpoint that truncates it must grow the database on a full
    // disk. The reserve file gives it that room.
    let options = SqliteOptions {
        wal_limit_bytes: 0,
        wal_autocheckpoint: 0,
        ..SqliteOptions::default()
    };
    fill_then_make_room("no checkpoints", &options);
}

#[test]
fn a_log_that_fills_the_disk_is_truncated_to_make_room() {
    let root = tempfile::tempdir().unwrap();
    let tiny = match TinyFs::mount(&root.path().join("tiny"), "8m") {
        Ok(tiny) => tiny,
        Err(reason) => {
            eprintln!("SKIPPED a_log_that_fills_the_disk_is_truncated_to_make_room: {reason}");
            return;
        }
    };
    let dir = tiny.mount_point.join("cache");
    // No log limit and checkpoints every ~40 MB (the defaults before the limit):
    // the log can fill the disk.
    let options = SqliteOptions {
        wal_limit_bytes: 0,
        wal_autocheckpoint: 10_000,
        ..SqliteOptions::default()
    };
    let entries = 200;
    let backend = SqliteBackend::open_with(&dir, &options).unwrap();
    for index in 0..entries {
        backend.put(inline_entry(index, 2 << 10)).unwrap();
    }
    // Closing copies the log into the database and deletes it.
    drop(backend);
    // Everything but ~1 MB taken by another file.
    let filler = tiny.mount_point.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![7u8; 64 << 10];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);
    let taken = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(taken.saturating_sub(1 << 20))
        .unwrap();

    // Rewrites of the same entries: the log grows (no checkpoint is due) until
    // the disk is full, and then the write that does not fit checkpoints and
    // truncates it, and goes on: ~25 MB of log through ~1 MB of room.
    let backend = SqliteBackend::open_with(&dir, &options).unwrap();
    let mut longest_log = 0;
    for round in 1..=10 {
        for index in 0..entries {
            let mut entry = inline_entry(index + round * entries, 2 << 10);
            entry.key = key_of(index);
            backend
                .put(entry)
                .unwrap_or_else(|error| panic!("put {index} of round {round}: {error}"));
            longest_log = longest_log.max(file_len(&dir, "-wal"));
        }
    }
    assert!(
        longest_log > 512 << 10,
        "the log filled the room: {longest_log}"
    );

    // Removals and clear, as ever.
    assert!(backend.remove(&key_of(0)).unwrap().is_some());
    assert_eq!(backend.clear().unwrap().len() as u64, entries - 1);
    assert!(file_len(&dir, "-wal") < 64 << 10, "clear truncates the log");
}

/// Fills an 8 MiB tmpfs with puts of 6 KiB values, then checks removals and
/// `clear` succeed and give the space back.
fn fill_then_make_room(case: &str, options: &SqliteOptions) {
    let root = tempfile::tempdir().unwrap();
    let tiny = match TinyFs::mount(&root.path().join("tiny"), "8m") {
        Ok(tiny) => tiny,
        Err(reason) => {
            eprintln!("SKIPPED full-disk test ({case}): {reason}");
            return;
        }
    };
    let dir = tiny.mount_point.join("cache");
    let empty = tiny.free();
    let cache = Cache::builder()
        .dir(&dir)
        .open(SqliteBackend::open_with(&dir, options).unwrap())
        .unwrap();
    // Values of 6 KiB, in blob files, until the disk is full.
    let value = |id: u64| noise(id, 6 << 10);
    let mut stored = 0u64;
    let mut failures = 0;
    for id in 0..5_000u64 {
        match cache.put_bytes(&key!(id = id), &value(id)) {
            Ok(()) => stored = id + 1,
            Err(_) => {
                failures += 1;
                if failures == 20 {
                    break;
                }
            }
        }
    }
    assert!(
        failures > 0,
        "{case}: the disk never filled ({stored} puts)"
    );
    let full = tiny.free();

    // Removals succeed and give space back.
    let mut removed = 0;
    for id in 0..stored.min(50) {
        if cache
            .remove(&key!(id = id))
            .unwrap_or_else(|error| panic!("{case}: remove {id} on a full disk: {error}"))
        {
            removed += 1;
        }
    }
    assert!(removed > 0);
    assert!(
        tiny.free() > full,
        "{case}: free {} after removals, {full} before",
        tiny.free()
    );
    // A put fits again.
    cache.put_bytes(&key!(id = u64::MAX), &value(1)).unwrap();

    // clear succeeds and gives back all but the empty database's few pages
    // and the reserve file, made again once there was room.
    cache.clear().unwrap();
    let reserve = file_len(&dir, "-reserve");
    assert!(reserve > 0, "{case}: the reserve is back");
    assert!(
        tiny.free() + reserve + (256 << 10) >= empty,
        "{case}: free {} after clear, {empty} when empty (db {}, log {})",
        tiny.free(),
        file_len(&dir, ""),
        file_len(&dir, "-wal")
    );
    assert_eq!(cache.get_bytes(&key!(id = 1)).unwrap(), None);
}
