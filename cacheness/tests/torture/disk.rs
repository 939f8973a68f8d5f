//! Disk full and permission denied: a put that cannot be written returns an
//! error and leaves the cache as it was (no entry, no file, the old value of an
//! overwritten key intact), and the cache works again once there is room.
//!
//! A full disk is a size-limited tmpfs, which needs root (`mount -t tmpfs`); a
//! read-only directory is `chmod`, which root ignores. Each test runs the
//! variant the machine allows and prints why it skips the other.
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{DISK_BACKENDS, Rng};
use cacheness::{Cache, ListOptions, key, ops::no_progress};

fn running_as_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|metadata| metadata.uid() == 0)
}

/// A tmpfs of `size` mounted for the test's lifetime.
struct TinyFs {
    mount_point: PathBuf,
}

impl TinyFs {
    /// Mounts it, or says why not.
    fn mount(mount_point: &Path, size: &str) -> Result<TinyFs, String> {
        if !running_as_root() {
            return Err("not root, cannot mount a tmpfs".into());
        }
        fs::create_dir_all(mount_point).map_err(|error| error.to_string())?;
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
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mount_point)
            .status();
    }
}

fn key_of(id: u64) -> cacheness::Params {
    key!(torture = "disk", id = id)
}

/// Incompressible bytes, so they take their size on disk.
fn value(id: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ len as u64);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Checks the cache holds exactly `expected` (id → bytes), with one blob file
/// per blob entry and no temp file.
fn assert_exactly(cache: &Cache, dir: &Path, expected: &[(u64, Vec<u8>)], context: &str) {
    for (id, bytes) in expected {
        assert_eq!(
            cache.get_bytes(&key_of(*id)).unwrap().as_ref(),
            Some(bytes),
            "{context}: entry {id}"
        );
    }
    let listed = cache.list(&ListOptions::default()).unwrap();
    assert_eq!(listed.len(), expected.len(), "{context}: entry count");
    let blob_entries = listed
        .iter()
        .filter(|entry| entry.blob_name().is_some())
        .count();
    assert_eq!(
        crate::support::blob_files(dir).len(),
        blob_entries,
        "{context}: blob files"
    );
    assert!(
        crate::support::temp_files(dir).is_empty(),
        "{context}: temp files"
    );
}

#[test]
fn puts_on_a_full_disk_fail_and_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    for backend in DISK_BACKENDS {
        let tiny = match TinyFs::mount(&root.path().join(backend), "640k") {
            Ok(tiny) => tiny,
            Err(reason) => {
                eprintln!(
                    "SKIPPED puts_on_a_full_disk_fail_and_change_nothing ({backend}): {reason}"
                );
                return;
            }
        };
        let dir = tiny.mount_point.join("cache");
        let cache = crate::support::open(backend, &dir);
        let mut stored: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut failures = 0;
        // Fill until puts fail, then keep trying a few more of various sizes.
        for id in 0..200u64 {
            let len = if failures == 0 {
                48 << 10
            } else {
                [40 << 10, 9_000, 3_000][id as usize % 3]
            };
            let bytes = value(id, len);
            match cache.put_bytes(&key_of(id), &bytes) {
                Ok(()) => stored.push((id, bytes)),
                Err(error) => {
                    failures += 1;
                    let context = format!("{backend} put {id} of {len} bytes failed ({error})");
                    assert_eq!(cache.get_bytes(&key_of(id)).unwrap(), None, "{context}");
                    assert_exactly(&cache, &dir, &stored, &context);
                    if failures == 8 {
                        break;
                    }
                }
            }
        }
        assert!(
            failures > 0,
            "{backend}: the tiny filesystem never filled ({} puts)",
            stored.len()
        );
        // Overwriting a key on the full disk keeps its old value if it fails.
        let first = stored[0].0;
        if let Err(error) = cache.put_bytes(&key_of(first), &value(1000, 48 << 10)) {
            assert_exactly(
                &cache,
                &dir,
                &stored,
                &format!("{backend} overwrite failed ({error})"),
            );
        } else {
            stored[0].1 = value(1000, 48 << 10);
        }
        // Room again: puts work.
        for (id, _) in stored.drain(..stored.len() / 2) {
            assert!(cache.remove(&key_of(id)).unwrap());
        }
        cache.gc(&mut no_progress).unwrap();
        let bytes = value(500, 20 << 10);
        cache.put_bytes(&key_of(500), &bytes).unwrap();
        stored.push((500, bytes));
        drop(cache);
        let cache = crate::support::open(backend, &dir);
        assert_exactly(&cache, &dir, &stored, &format!("{backend} reopened"));
        eprintln!(
            "disk full {backend}: {failures} failed puts on a 640 KiB tmpfs, cache unchanged by each"
        );
        drop(cache);
    }
}

#[test]
fn puts_into_a_read_only_dir_fail_and_change_nothing() {
    if running_as_root() {
        eprintln!(
            "SKIPPED puts_into_a_read_only_dir_fail_and_change_nothing: running as root, which permission bits do not stop (the full-disk test covers failed writes)"
        );
        return;
    }
    for backend in DISK_BACKENDS {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let cache = crate::support::open(backend, &dir);
        let stored = vec![(1, value(1, 5_000)), (2, value(2, 10))];
        for (id, bytes) in &stored {
            cache.put_bytes(&key_of(*id), bytes).unwrap();
        }
        let read_only = fs::Permissions::from_mode(0o500);
        fs::set_permissions(dir.join("tmp"), read_only.clone()).unwrap();
        let result = cache.put_bytes(&key_of(3), &value(3, 5_000));
        fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o700)).unwrap();
        let error = result.expect_err("a put into a read-only tmp dir fails");
        assert!(error.to_string().contains("tmp"), "{backend}: {error}");
        assert_exactly(&cache, &dir, &stored, backend);
    }
}
