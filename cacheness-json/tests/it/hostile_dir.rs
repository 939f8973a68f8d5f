//! A cache dir someone tampered with: symbolic links and FIFOs planted at every
//! name the json backend opens. A link is refused (never followed, its target
//! untouched) and a FIFO is refused, never waited on.
#![cfg(target_os = "linux")]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use cacheness_core::{Cache, MetadataBackend, key};
use cacheness_json::{JOURNAL_FILE, JsonBackend, JsonError, JsonOptions, LOCK_FILE, SNAPSHOT_FILE};

/// How long an open may take before the test calls it a hang.
const HANG_GUARD: Duration = Duration::from_secs(10);

/// Runs `work` on another thread and returns its result, failing the test if it
/// has not finished within [`HANG_GUARD`] (a FIFO that blocks an open never
/// would). This waits for the work, not for time to pass.
fn without_hanging<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    finished
        .recv_timeout(HANG_GUARD)
        .unwrap_or_else(|_| panic!("{what} hung (still running after {HANG_GUARD:?})"))
}

fn fill(dir: &Path, count: u64) {
    // Every value in a blob file (not inline, the default): blob files, where the hostile plants go.
    let cache = Cache::builder()
        .dir(dir)
        .inline_threshold(0)
        .open(JsonBackend::open(dir).unwrap())
        .unwrap();
    for index in 0..count {
        cache
            .put(&key!(hostile = index), &format!("value {index}"))
            .unwrap();
    }
}

fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
}

/// A file outside the cache dir, and what it must still hold at the end.
struct Outside {
    _dir: tempfile::TempDir,
    path: PathBuf,
    content: Vec<u8>,
}

impl Outside {
    fn new(content: &[u8]) -> Outside {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outside");
        fs::write(&path, content).unwrap();
        Outside {
            _dir: dir,
            path,
            content: content.to_vec(),
        }
    }

    fn assert_untouched(&self) {
        assert_eq!(
            fs::read(&self.path).unwrap(),
            self.content,
            "the link's target changed"
        );
    }
}

/// What is planted in place of a file.
#[derive(Debug, Clone, Copy)]
enum Plant {
    Fifo,
    Symlink,
}

/// Replaces `path` by a FIFO or by a link to `outside`.
fn plant(path: &Path, what: Plant, outside: &Outside) {
    let _ = fs::remove_file(path);
    match what {
        Plant::Fifo => mkfifo(path),
        Plant::Symlink => std::os::unix::fs::symlink(&outside.path, path).unwrap(),
    }
}

fn assert_refusal(error: &JsonError, path: &Path, what: Plant) {
    let text = error.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    match what {
        Plant::Fifo => assert!(text.contains("FIFO"), "{text}"),
        Plant::Symlink => assert!(text.contains("symbolic link"), "{text}"),
    }
}

#[test]
fn a_link_or_fifo_at_a_metadata_file_fails_the_open_without_hanging() {
    for name in [SNAPSHOT_FILE, JOURNAL_FILE, LOCK_FILE] {
        for what in [Plant::Fifo, Plant::Symlink] {
            let dir = tempfile::tempdir().unwrap();
            fill(dir.path(), 3);
            // A link to a valid snapshot, journal or lock file of another cache.
            let original = fs::read(dir.path().join(name)).unwrap();
            let outside = Outside::new(&original);
            let path = dir.path().join(name);
            plant(&path, what, &outside);
            for read_only in [false, true] {
                let at = dir.path().to_path_buf();
                let opened = without_hanging(
                    &format!("open (read-only: {read_only}) with a {what:?} at {name}"),
                    move || match read_only {
                        false => JsonBackend::open(&at),
                        true => JsonBackend::open_read_only(&at, &JsonOptions::default()),
                    },
                );
                let error = opened.expect_err(&format!(
                    "a {what:?} at {name} is refused (read-only: {read_only})"
                ));
                assert_refusal(&error, &path, what);
                outside.assert_untouched();
            }
        }
    }
}

#[test]
fn a_link_or_fifo_at_a_temp_file_fails_the_compaction_without_hanging() {
    let pid = std::process::id();
    for stem in [SNAPSHOT_FILE, JOURNAL_FILE] {
        for what in [Plant::Fifo, Plant::Symlink] {
            let dir = tempfile::tempdir().unwrap();
            fill(dir.path(), 3);
            let outside = Outside::new(b"outside the cache dir\n");
            let temp = dir.path().join(format!("{stem}.{pid}.tmp"));
            let backend = JsonBackend::open(dir.path()).unwrap();
            plant(&temp, what, &outside);
            let compacted = without_hanging(&format!("compaction with a {what:?} at {stem}"), {
                move || {
                    let result = backend.compact();
                    (result, backend)
                }
            });
            let (result, backend) = compacted;
            let error = result.expect_err("the planted temp file is refused");
            assert_refusal(&error, &temp, what);
            outside.assert_untouched();
            assert_eq!(backend.len().unwrap(), 3, "nothing was lost");
            drop(backend);

            // The next open clears the planted file away (the link, not its
            // target) and compacts again.
            plant(&temp, what, &outside);
            let reopened = JsonBackend::open(dir.path()).unwrap();
            assert!(
                fs::symlink_metadata(&temp).is_err(),
                "{} is gone",
                temp.display()
            );
            reopened.compact().unwrap();
            assert_eq!(reopened.len().unwrap(), 3);
            outside.assert_untouched();
        }
    }
}

/// The blob files of `dir`, by name.
fn blob_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for shard in fs::read_dir(dir.join("blobs")).unwrap() {
        for file in fs::read_dir(shard.unwrap().path()).unwrap() {
            files.push(file.unwrap().path());
        }
    }
    files.sort();
    files
}

#[test]
fn the_rebuild_at_open_skips_linked_and_fifo_blob_files_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 6);
    let blobs = blob_files(dir.path());
    assert_eq!(blobs.len(), 6);
    // The link leads to a valid blob of this very key, moved outside: followed,
    // it would come back as an entry.
    let linked = &blobs[0];
    let outside = Outside::new(&fs::read(linked).unwrap());
    plant(linked, Plant::Symlink, &outside);
    plant(&blobs[1], Plant::Fifo, &outside);
    fs::remove_file(dir.path().join(SNAPSHOT_FILE)).unwrap();
    fs::remove_file(dir.path().join(JOURNAL_FILE)).unwrap();

    let at = dir.path().to_path_buf();
    let backend = without_hanging("a rebuild over a FIFO blob", move || JsonBackend::open(&at))
        .expect("the rebuild skips what it cannot read");
    assert_eq!(
        backend.len().unwrap(),
        4,
        "the four regular blob files are rebuilt"
    );
    outside.assert_untouched();
    assert!(
        fs::symlink_metadata(linked)
            .unwrap()
            .file_type()
            .is_symlink(),
        "left in place"
    );
}

#[test]
fn a_link_or_fifo_planted_under_an_open_handle_fails_its_next_read_without_hanging() {
    for what in [Plant::Fifo, Plant::Symlink] {
        for read_only in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            fill(dir.path(), 3);
            let backend = match read_only {
                false => JsonBackend::open(dir.path()).unwrap(),
                true => JsonBackend::open_read_only(dir.path(), &JsonOptions::default()).unwrap(),
            };
            let path = dir.path().join(JOURNAL_FILE);
            let outside = Outside::new(&fs::read(&path).unwrap());
            plant(&path, what, &outside);
            let read =
                without_hanging(&format!("a read after a {what:?} was planted"), move || {
                    backend.len()
                });
            let error = read
                .expect_err("the planted journal is refused")
                .to_string();
            assert!(error.contains(&path.display().to_string()), "{error}");
            outside.assert_untouched();
        }
    }
}
