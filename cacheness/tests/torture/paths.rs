//! Path security and permissions: nothing read from metadata (prefixes, blob
//! names) or planted in the cache dir (symlinks) makes cacheness write or delete
//! outside the cache dir, and what it creates is private (0700 dirs, 0600 files).
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::support::DISK_BACKENDS;
use cacheness::{CacheKey, ListOptions, PutOptions, ToKey, key, ops::no_progress};

fn key_of(id: u64) -> cacheness::Params {
    key!(torture = "paths", id = id)
}

/// A value large enough to go to a blob file with every backend.
fn blob_value(id: u64) -> Vec<u8> {
    (0..2_000u64).map(|index| (index * 31 + id) as u8).collect()
}

/// A directory beside the cache dir, holding a file that must survive intact.
struct Outside {
    dir: PathBuf,
    victim: PathBuf,
}

impl Outside {
    fn new(root: &Path) -> Self {
        let dir = root.join("outside");
        fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        fs::write(&victim, b"must stay").unwrap();
        Outside { dir, victim }
    }

    /// Checks the outside dir holds exactly the victim, unchanged.
    fn assert_untouched(&self, context: &str) {
        assert_eq!(
            fs::read(&self.victim).ok().as_deref(),
            Some(&b"must stay"[..]),
            "{context}: the file outside the cache dir was changed or deleted"
        );
        let files = crate::support::files_under(&self.dir);
        assert_eq!(
            files,
            vec![self.victim.clone()],
            "{context}: files written outside the cache dir"
        );
    }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn everything_created_is_private() {
    for backend in DISK_BACKENDS {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let cache = crate::support::open(backend, &dir);
        for id in 0..4 {
            cache.put_bytes(&key_of(id), &blob_value(id)).unwrap();
            cache.put_bytes(&key_of(100 + id), b"tiny").unwrap();
        }
        // Keep the cache open so SQLite's -wal and -shm files exist too.
        let mut checked = 0;
        let mut pending = vec![dir.clone()];
        while let Some(path) = pending.pop() {
            let metadata = fs::symlink_metadata(&path).unwrap();
            if metadata.is_dir() {
                assert_eq!(
                    mode(&path),
                    0o700,
                    "{backend}: directory {} is not 0700",
                    path.display()
                );
                pending.extend(
                    fs::read_dir(&path)
                        .unwrap()
                        .flatten()
                        .map(|item| item.path()),
                );
            } else {
                assert_eq!(
                    mode(&path),
                    0o600,
                    "{backend}: file {} is not 0600",
                    path.display()
                );
            }
            checked += 1;
        }
        assert!(checked >= 8, "{backend}: {checked} paths");
        drop(cache);
    }
}

#[test]
fn prefixes_and_descriptions_never_become_paths() {
    for backend in DISK_BACKENDS {
        let root = tempfile::tempdir().unwrap();
        let outside = Outside::new(root.path());
        let dir = root.path().join("cache");
        let cache = crate::support::open(backend, &dir);
        for hostile in ["../outside", "/tmp/x", "..", "a/../../b", "\0"] {
            let options = PutOptions::new().prefix(hostile);
            assert!(
                cache
                    .put_bytes_with(&key_of(1), &blob_value(1), &options)
                    .is_err(),
                "{backend}: prefix {hostile:?} accepted"
            );
            // A description is a label only.
            let options = PutOptions::new().description(format!("../../outside/{hostile}"));
            cache
                .put_bytes_with(&key_of(2), &blob_value(2), &options)
                .unwrap();
        }
        cache.gc(&mut no_progress).unwrap();
        outside.assert_untouched(backend);
    }
}

/// Points the blob name of `key`'s entry at `name`, behind the backend's back.
fn tamper_blob_name(backend: &str, dir: &Path, key: CacheKey, name: &str) {
    match backend {
        "sqlite" => {
            let conn = rusqlite::Connection::open(dir.join("cache_metadata.db")).unwrap();
            let changed = conn
                .execute(
                    "UPDATE entries SET blob_name = ?1 WHERE key = ?2",
                    rusqlite::params![name, key.as_bytes().as_slice()],
                )
                .unwrap();
            assert_eq!(changed, 1);
        }
        _ => {
            // The json backend reads the journal: append a put of the edited entry.
            let cache = crate::support::open(backend, dir);
            let mut entry = cache.entry(&key).unwrap().unwrap();
            drop(cache);
            entry.location = cacheness::backend::Location::Blob(name.to_owned());
            let line = format!("{{\"put\":{}}}\n", serde_json::to_string(&entry).unwrap());
            let journal = dir.join("metadata.journal");
            let mut text = fs::read(&journal).unwrap();
            text.extend_from_slice(line.as_bytes());
            fs::write(&journal, text).unwrap();
        }
    }
}

#[test]
fn blob_names_from_metadata_never_reach_outside() {
    for backend in DISK_BACKENDS {
        let root = tempfile::tempdir().unwrap();
        let outside = Outside::new(root.path());
        let dir = root.path().join("cache");
        let victim = outside.victim.display().to_string();
        let hostile = [
            "../../outside/victim".to_owned(),
            "../outside/victim".to_owned(),
            victim.clone(),
            "ab/../../../outside/victim".to_owned(),
            format!("ab/{}", "../".repeat(10) + victim.trim_start_matches('/')),
        ];
        for (id, name) in hostile.iter().enumerate() {
            let id = id as u64;
            let cache = crate::support::open(backend, &dir);
            cache.put_bytes(&key_of(id), &blob_value(id)).unwrap();
            drop(cache);
            tamper_blob_name(backend, &dir, key_of(id).to_key(), name);
            let cache = crate::support::open(backend, &dir);
            let context = format!("{backend} blob name {name:?}");
            // Served never; a clear error or a miss.
            if let Ok(Some(bytes)) = cache.get_bytes(&key_of(id)) {
                assert_eq!(bytes, blob_value(id), "{context}: wrong bytes");
            }
            let _ = cache.remove(&key_of(id));
            let _ = cache.verify(true, &mut no_progress);
            let _ = cache.gc(&mut no_progress);
            let _ = cache.clear();
            outside.assert_untouched(&context);
        }
    }
}

/// A key whose blob lands in shard `blobs/<first two hex digits>`.
fn shard_of(id: u64) -> String {
    key_of(id).to_key().to_hex()[..2].to_owned()
}

#[test]
fn a_symlinked_shard_is_never_written_through() {
    for backend in DISK_BACKENDS {
        let root = tempfile::tempdir().unwrap();
        let outside = Outside::new(root.path());
        let dir = root.path().join("cache");
        let cache = crate::support::open(backend, &dir);
        let shard = dir.join("blobs").join(shard_of(7));
        let _ = fs::remove_dir_all(&shard);
        symlink(&outside.dir, &shard).unwrap();
        // A blob-named file in the outside dir, that gc would take for an orphan.
        let planted = outside
            .dir
            .join(format!("{}-0123456789abcdef", key_of(7).to_key().to_hex()));
        fs::write(&planted, b"planted").unwrap();
        let put = cache.put_bytes(&key_of(7), &blob_value(7));
        let context = format!("{backend} symlinked shard (put: {put:?})");
        if put.is_ok() {
            let read = cache.get_bytes(&key_of(7));
            assert!(
                matches!(read, Ok(Some(ref bytes)) if *bytes == blob_value(7))
                    || read.is_err()
                    || matches!(read, Ok(None)),
                "{context}"
            );
        }
        let _ = cache.gc(&mut no_progress);
        let _ = cache.verify(true, &mut no_progress);
        let _ = cache.remove(&key_of(7));
        let _ = cache.clear();
        drop(cache);
        fs::remove_file(&planted)
            .unwrap_or_else(|error| panic!("{context}: the planted file was deleted: {error}"));
        outside.assert_untouched(&context);
    }
}

#[test]
fn a_symlinked_tmp_or_blobs_dir_is_refused() {
    for backend in DISK_BACKENDS {
        for planted in ["tmp", "blobs"] {
            let root = tempfile::tempdir().unwrap();
            let outside = Outside::new(root.path());
            let dir = root.path().join("cache");
            drop(crate::support::open(backend, &dir));
            fs::remove_dir_all(dir.join(planted)).unwrap();
            symlink(&outside.dir, dir.join(planted)).unwrap();
            // A stale-looking temp file of a dead writer in the outside dir.
            let stale = outside.dir.join("4294967295-00.tmp");
            fs::write(&stale, b"x").unwrap();
            let context = format!("{backend} with {planted} -> outside");
            match crate::support::config(backend, &dir).open() {
                Err(error) => assert!(error.to_string().contains(planted), "{context}: {error}"),
                Ok(cache) => {
                    let _ = cache.put_bytes(&key_of(1), &blob_value(1));
                    let _ = cache.gc(&mut no_progress);
                    let _ = cache.list(&ListOptions::default());
                }
            }
            assert!(stale.exists(), "{context}: a file outside was deleted");
            fs::remove_file(&stale).unwrap();
            outside.assert_untouched(&context);
        }
    }
}

#[test]
fn symlinked_metadata_files_are_refused() {
    let planted_files: [(&str, &[&str]); 2] = [
        ("sqlite", &["cache_metadata.db", "cache_metadata.db-wal"]),
        ("json", &["metadata.journal", "metadata.lock"]),
    ];
    for (backend, names) in planted_files {
        for name in names {
            let root = tempfile::tempdir().unwrap();
            let outside = Outside::new(root.path());
            let dir = root.path().join("cache");
            drop(crate::support::open(backend, &dir));
            let target = outside.dir.join("planted");
            let _ = fs::remove_file(dir.join(name));
            symlink(&target, dir.join(name)).unwrap();
            let context = format!("{backend} with {name} -> outside");
            match crate::support::config(backend, &dir).open() {
                Err(error) => assert!(error.to_string().contains(name), "{context}: {error}"),
                Ok(cache) => {
                    let _ = cache.put_bytes(&key_of(1), &blob_value(1));
                    panic!("{context}: opened through a planted link");
                }
            }
            assert!(!target.exists(), "{context}: a file was created outside");
            outside.assert_untouched(&context);
        }
    }
}
