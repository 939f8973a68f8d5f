//! `JsonBackend::open_read_only`: reads a cache without writing a byte, follows
//! other processes' writes, refuses writes; and works on a read-only mount,
//! where the writable open fails naming the cause and the path.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use cacheness_core::conformance::{key_of, sample_entry};
use cacheness_core::{AccessBatch, Cache, MetadataBackend, key};
use cacheness_json::{JOURNAL_FILE, JsonBackend, JsonOptions, LOCK_FILE, SNAPSHOT_FILE};

fn read_only(dir: &Path) -> JsonBackend {
    JsonBackend::open_read_only(dir, &JsonOptions::default()).expect("the read-only open")
}

fn fill(dir: &Path, count: u64) {
    // Every value in a blob file (not inline, the default): blob files, which a rebuild reads.
    let cache = Cache::builder()
        .dir(dir)
        .inline_threshold(0)
        .open(JsonBackend::open(dir).unwrap())
        .unwrap();
    for index in 0..count {
        cache
            .put(&key!(read_only = index), &format!("value {index}"))
            .unwrap();
    }
}

/// Every file under `dir` with its bytes and modification time.
fn tree(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for item in fs::read_dir(&at).unwrap() {
            let path = item.unwrap().path();
            let metadata = fs::symlink_metadata(&path).unwrap();
            if metadata.is_dir() {
                pending.push(path.clone());
                found.insert(path, (Vec::new(), metadata.modified().unwrap()));
            } else {
                let bytes = fs::read(&path).unwrap();
                found.insert(path, (bytes, metadata.modified().unwrap()));
            }
        }
    }
    found
}

fn assert_refused<T: std::fmt::Debug>(result: cacheness_core::Result<T>) {
    let error = result
        .expect_err("a write through a read-only handle")
        .to_string();
    assert!(error.contains("opened read-only"), "{error}");
}

#[test]
fn a_read_only_open_reads_and_changes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 5);
    let before = tree(dir.path());

    let backend = read_only(dir.path());
    assert!(backend.is_read_only());
    assert_eq!(backend.len().unwrap(), 5);
    let entry = backend.get(&key!(read_only = 1u64).key()).unwrap().unwrap();
    assert_refused(backend.put(sample_entry(key_of(99), 1)));
    assert_refused(backend.remove(&entry.key));
    assert_refused(backend.remove_if_unchanged(&entry));
    assert_refused(backend.clear());
    assert_refused(backend.remove_unreadable(&entry.key));
    let compacted = backend.compact().unwrap_err().to_string();
    assert!(compacted.contains("opened read-only"), "{compacted}");
    // Reads through a cache record accesses; on a read-only handle they are dropped.
    let mut batch = AccessBatch::default();
    batch.counters.hits = 1;
    backend.touch(&batch).unwrap();
    assert_eq!(backend.len().unwrap(), 5);
    drop(backend);
    assert_eq!(
        tree(dir.path()),
        before,
        "no file created, changed or deleted"
    );
}

#[test]
fn a_read_only_open_creates_nothing_where_there_is_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let error = JsonBackend::open_read_only(&missing, &JsonOptions::default()).unwrap_err();
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );
    assert!(!missing.exists(), "not created");

    let backend = read_only(dir.path());
    assert!(backend.is_empty().unwrap());
    drop(backend);
    assert!(
        tree(dir.path()).is_empty(),
        "no file created in an empty dir"
    );
}

#[test]
fn a_read_only_open_without_lock_file_or_metadata_rebuilds_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 5);
    for name in [LOCK_FILE, SNAPSHOT_FILE, JOURNAL_FILE] {
        fs::remove_file(dir.path().join(name)).unwrap();
    }
    let before = tree(dir.path());
    let backend = read_only(dir.path());
    assert_eq!(backend.len().unwrap(), 5, "rebuilt from the blob files");
    assert_eq!(tree(dir.path()), before, "and nothing written");

    // A writer comes along: the read-only handle follows it.
    let writer = JsonBackend::open(dir.path()).unwrap();
    writer.put(sample_entry(key_of(1), 1)).unwrap();
    assert_eq!(backend.len().unwrap(), 6);
    assert_eq!(
        backend.get(&key_of(1)).unwrap(),
        Some(sample_entry(key_of(1), 1))
    );
}

#[test]
fn a_read_only_handle_follows_writes_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let writer = JsonBackend::open(dir.path()).unwrap();
    writer.put(sample_entry(key_of(1), 1)).unwrap();
    let reader = read_only(dir.path());
    assert_eq!(reader.len().unwrap(), 1);
    let version = reader.data_version().unwrap();

    writer.put(sample_entry(key_of(2), 2)).unwrap();
    assert_eq!(
        reader.get(&key_of(2)).unwrap(),
        Some(sample_entry(key_of(2), 2))
    );
    assert_ne!(reader.data_version().unwrap(), version);
    writer.compact().unwrap();
    writer.remove(&key_of(1)).unwrap();
    assert_eq!(reader.get(&key_of(1)).unwrap(), None);
    assert_eq!(reader.len().unwrap(), 1);
    writer.clear().unwrap();
    assert!(reader.is_empty().unwrap());
}

/// A read-only bind mount of a cache dir, unmounted when dropped.
struct ReadOnlyMount {
    at: PathBuf,
}

impl ReadOnlyMount {
    /// Mounts `dir` read-only at `at`; why not, when that is not permitted here.
    fn new(dir: &Path, at: &Path) -> Result<ReadOnlyMount, String> {
        fs::create_dir(at).map_err(|error| error.to_string())?;
        let run = |args: &[&str]| -> Result<(), String> {
            let output = Command::new("mount")
                .args(args)
                .output()
                .map_err(|error| format!("cannot run mount: {error}"))?;
            match output.status.success() {
                true => Ok(()),
                false => Err(format!(
                    "mount {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                )),
            }
        };
        let (dir, target) = (dir.to_str().unwrap(), at.to_str().unwrap());
        run(&["--bind", dir, target])?;
        let mount = ReadOnlyMount {
            at: at.to_path_buf(),
        };
        run(&["-o", "remount,bind,ro", target])?;
        Ok(mount)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

#[test]
fn on_a_read_only_mount_the_read_only_open_reads_and_the_writable_one_names_the_cause() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("cache");
    fill(&dir, 4);
    let mount = match ReadOnlyMount::new(&dir, &temp.path().join("read-only")) {
        Ok(mount) => mount,
        Err(reason) => {
            println!("skipped: no read-only bind mount here ({reason})");
            return;
        }
    };
    let probe = mount.at.join("probe");
    if fs::write(&probe, b"x").is_ok() {
        let _ = fs::remove_file(&probe);
        println!("skipped: the bind mount is writable");
        return;
    }

    let error = JsonBackend::open(&mount.at).unwrap_err().to_string();
    assert!(error.contains("Read-only file system"), "{error}");
    assert!(error.contains(&mount.at.display().to_string()), "{error}");

    let backend = read_only(&mount.at);
    assert_eq!(backend.len().unwrap(), 4);
    let cache = Cache::builder().dir(&mount.at).open(backend).unwrap();
    assert_eq!(
        cache
            .get::<String>(&key!(read_only = 2u64))
            .unwrap()
            .as_deref(),
        Some("value 2"),
        "a cache on the read-only handle serves reads"
    );
    drop(cache);
    // The writer, through the writable mount, is still followed.
    let writer = JsonBackend::open(&dir).unwrap();
    writer.put(sample_entry(key_of(7), 7)).unwrap();
    let reader = read_only(&mount.at);
    assert_eq!(reader.len().unwrap(), 5);
}
