//! Shared by the torture modules: a small deterministic RNG, the cache
//! configuration they run, child-process spawning and file inspection helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use cacheness::{Cache, CacheConfig};
use cacheness_json::JsonOptions;
use cacheness_sqlite::SqliteOptions;

/// The disk backends the torture tests run against.
pub(crate) const DISK_BACKENDS: [&str; 2] = ["json", "sqlite"];

/// Whether the long versions run (`CACHENESS_TORTURE_LONG=1`).
pub(crate) fn long_run() -> bool {
    std::env::var("CACHENESS_TORTURE_LONG").is_ok_and(|value| value != "0" && !value.is_empty())
}

/// `short` in the default run, `long` with `CACHENESS_TORTURE_LONG=1`.
pub(crate) fn scale(short: u64, long: u64) -> u64 {
    if long_run() { long } else { short }
}

/// A seed from `CACHENESS_TORTURE_SEED`, or a fresh one; printed so a failure
/// can be replayed.
pub(crate) fn seed(test: &str) -> u64 {
    let seed = std::env::var("CACHENESS_TORTURE_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos() as u64);
            nanos ^ u64::from(std::process::id()).rotate_left(32)
        });
    eprintln!("{test}: CACHENESS_TORTURE_SEED={seed}");
    seed
}

/// splitmix64: deterministic, tiny, good enough to pick operations.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The configuration the torture tests open: small values partly inline,
/// frequent JSON compactions and SQLite checkpoints, so crashes and damage hit
/// those paths too.
pub(crate) fn config(backend: &str, dir: &Path) -> CacheConfig {
    CacheConfig::new()
        .dir(dir)
        .backend(backend)
        .inline_threshold(64)
        .json(JsonOptions {
            compaction_min_bytes: 4096,
            compaction_ratio: 0.25,
            ..JsonOptions::default()
        })
        .sqlite(SqliteOptions {
            wal_autocheckpoint: 16,
            ..SqliteOptions::default()
        })
}

/// Opens the torture configuration of `backend` in `dir`.
pub(crate) fn open(backend: &str, dir: &Path) -> Cache {
    config(backend, dir)
        .open()
        .unwrap_or_else(|error| panic!("{backend} cache in {} opens: {error}", dir.display()))
}

/// A command running the test `test` of this very binary as a child, with its
/// harness output kept out of the parent's stdout.
pub(crate) fn child(test: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary has a path"));
    command
        .args([
            test,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Every file (not directory) under `dir`, recursively, symlinks not followed.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(listing) = fs::read_dir(&next) else {
            continue;
        };
        for item in listing.flatten() {
            let path = item.path();
            match item.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(path),
                Ok(_) => found.push(path),
                Err(_) => {}
            }
        }
    }
    found.sort();
    found
}

/// Temp files a writer leaves while it works: anything in `tmp/`, and `*.tmp`
/// metadata replacements in the cache dir.
pub(crate) fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map(|listing| {
            listing
                .flatten()
                .map(|item| item.path())
                .filter(|path| path.extension().is_some_and(|extension| extension == "tmp"))
                .collect()
        })
        .unwrap_or_default();
    found.extend(files_under(&dir.join("tmp")));
    found
}

/// The blob files under `dir/blobs`.
pub(crate) fn blob_files(dir: &Path) -> Vec<PathBuf> {
    files_under(&dir.join("blobs"))
}

/// `len` bytes from `seed`: incompressible, so the value keeps its size when
/// stored and lands in a blob file once over the inline threshold.
pub(crate) fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Waits for `child` for at most `limit`, polling it in short steps (the count
/// of steps bounds the wait); a child still running then is killed, reaped and
/// reported as `None`: a hang.
pub(crate) fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    const STEP: Duration = Duration::from_millis(5);
    let steps = (limit.as_millis() / STEP.as_millis()).max(1);
    for _ in 0..steps {
        if let Some(status) = child.try_wait().expect("the child can be polled") {
            return Some(status);
        }
        std::thread::sleep(STEP);
    }
    if let Some(status) = child.try_wait().expect("the child can be polled") {
        return Some(status);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Copies the directory tree `from` to `to` (regular files and directories only).
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|error| panic!("create {}: {error}", to.display()));
    for item in
        fs::read_dir(from).unwrap_or_else(|error| panic!("list {}: {error}", from.display()))
    {
        let item = item.unwrap();
        let kind = item.file_type().unwrap();
        let target = to.join(item.file_name());
        if kind.is_dir() {
            copy_dir(&item.path(), &target);
        } else if kind.is_file() {
            fs::copy(item.path(), &target)
                .unwrap_or_else(|error| panic!("copy {}: {error}", item.path().display()));
        }
    }
}

/// Every path under `dir` (symlinks and special files included, not followed)
/// with the bytes of the regular files: what "nothing changed here" compares.
pub(crate) fn tree_snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(listing) = fs::read_dir(&next) else {
            continue;
        };
        for item in listing.flatten() {
            let path = item.path();
            match item.file_type() {
                Ok(kind) if kind.is_dir() => {
                    found.insert(path.clone(), None);
                    pending.push(path);
                }
                Ok(kind) if kind.is_file() => {
                    found.insert(path.clone(), fs::read(&path).ok());
                }
                _ => {
                    found.insert(path, None);
                }
            }
        }
    }
    found
}

/// A copy of the closed cache dir `from` at `to` for one round of a test:
/// metadata copied, blob files hard-linked (they are never changed in place,
/// only renamed into place and unlinked, so the rounds cannot affect each
/// other through them), which makes a round's copy of hundreds of blobs cheap.
pub(crate) fn clone_cache_dir(from: &Path, to: &Path) {
    fn clone(from: &Path, to: &Path, link: bool) {
        fs::create_dir_all(to).unwrap_or_else(|error| panic!("create {}: {error}", to.display()));
        let listing =
            fs::read_dir(from).unwrap_or_else(|error| panic!("list {}: {error}", from.display()));
        for item in listing {
            let item = item.unwrap();
            let kind = item.file_type().unwrap();
            let target = to.join(item.file_name());
            if kind.is_dir() {
                clone(&item.path(), &target, link || item.file_name() == "blobs");
            } else if kind.is_file() {
                let copied = if link {
                    fs::hard_link(item.path(), &target)
                } else {
                    fs::copy(item.path(), &target).map(drop)
                };
                copied.unwrap_or_else(|error| panic!("copy {}: {error}", item.path().display()));
            }
        }
    }
    clone(from, to, false);
}

/// Makes a FIFO at `path` (where a file is expected: opening it to read or
/// write would block).
pub(crate) fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg("-m")
        .arg("600")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}
