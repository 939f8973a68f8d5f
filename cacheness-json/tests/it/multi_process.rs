//! Several processes on one cache dir: the test binary runs itself as the children
//! (selected by `CACHENESS_JSON_CHILD`), which all open a fresh dir at the same
//! instant (they wait on stdin until every one is spawned).

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cacheness_core::{Cache, ListOptions, MetadataBackend, key};
use cacheness_json::{JsonBackend, JsonOptions};
use serde::{Deserialize, Serialize};

use crate::support::in_blob_files;

const CHILDREN: u64 = 4;
const KEYS: u64 = 500;
const ROLE: &str = "CACHENESS_JSON_CHILD";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Value {
    writer: u64,
    index: u64,
    payload: String,
}

fn value(writer: u64, index: u64) -> Value {
    Value {
        writer,
        index,
        payload: format!("{writer}-{index}-").repeat(8),
    }
}

fn options(mode: &str) -> JsonOptions {
    match mode {
        // Compact every few dozen puts while the others keep writing (the
        // values inline, the default, so every compaction rewrites them).
        "compact" => JsonOptions {
            compaction_min_bytes: 4096,
            compaction_ratio: 0.1,
            ..JsonOptions::default()
        },
        // Values inline in the journal lines, the default.
        "inline" => JsonOptions::default(),
        // Every value a blob file, for the blob files' races.
        _ => in_blob_files(),
    }
}

fn open_cache(dir: &Path, mode: &str) -> Cache {
    let backend = JsonBackend::open_with(dir, &options(mode)).expect("json backend opens");
    Cache::builder()
        .dir(dir)
        .open(backend)
        .expect("cache opens")
}

/// The child role: does nothing unless started by a parent test.
#[test]
fn child_process_role() {
    let Ok(mode) = std::env::var(ROLE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var("CACHENESS_JSON_DIR").unwrap());
    let writer: u64 = std::env::var("CACHENESS_JSON_WRITER")
        .unwrap()
        .parse()
        .unwrap();
    // Wait for the parent's go, so every child opens the fresh dir at once.
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go).unwrap();
    let cache = open_cache(&dir, &mode);
    for index in 0..KEYS {
        match mode.as_str() {
            "race" => cache
                .put(
                    &key!(experiment = "race", idx = index),
                    &value(writer, index),
                )
                .unwrap(),
            _ => cache
                .put(
                    &key!(experiment = "mp", writer = writer, idx = index),
                    &value(writer, index),
                )
                .unwrap(),
        }
        if mode != "race" && index % 50 == 49 {
            // Reads of what this child wrote see it, whatever the others did.
            let back: Option<Value> = cache
                .get(&key!(experiment = "mp", writer = writer, idx = index - 10))
                .unwrap();
            assert_eq!(back, Some(value(writer, index - 10)));
        }
    }
    cache.flush().unwrap();
}

fn run_children(dir: &Path, mode: &str) {
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..CHILDREN)
        .map(|writer| {
            Command::new(&exe)
                .args([
                    "multi_process::child_process_role",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(ROLE, mode)
                .env("CACHENESS_JSON_DIR", dir)
                .env("CACHENESS_JSON_WRITER", writer.to_string())
                .stdin(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in &mut children {
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "a child failed in mode {mode}");
    }
}

fn blob_files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    for shard in std::fs::read_dir(dir.join("blobs")).unwrap().flatten() {
        files.extend(
            std::fs::read_dir(shard.path())
                .unwrap()
                .flatten()
                .map(|file| file.path()),
        );
    }
    files
}

/// Every blob file belongs to a live entry and every entry's blob exists (no
/// blob file at all when the values are inline).
fn assert_no_orphans(cache: &Cache, dir: &Path) {
    let referenced: BTreeSet<PathBuf> = cache
        .list(&ListOptions::default())
        .unwrap()
        .iter()
        .filter_map(|entry| cache.blob_path(entry))
        .collect();
    assert_eq!(
        blob_files(dir),
        referenced,
        "blob files are exactly the live entries'"
    );
}

fn check_distinct(dir: &Path, mode: &str) {
    let cache = open_cache(dir, mode);
    assert_eq!(cache.backend().len().unwrap(), CHILDREN * KEYS);
    for writer in 0..CHILDREN {
        for index in 0..KEYS {
            let back: Option<Value> = cache
                .get(&key!(experiment = "mp", writer = writer, idx = index))
                .unwrap();
            assert_eq!(
                back,
                Some(value(writer, index)),
                "writer {writer} index {index}"
            );
        }
    }
    assert_no_orphans(&cache, dir);
}

#[test]
fn four_processes_write_distinct_keys_and_lose_none() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("fresh");
    run_children(&cache_dir, "distinct");
    check_distinct(&cache_dir, "distinct");
}

#[test]
fn four_processes_write_inline_values_and_lose_none() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("fresh");
    run_children(&cache_dir, "inline");
    check_distinct(&cache_dir, "inline");
    let cache = open_cache(&cache_dir, "inline");
    let inline = cache
        .list(&ListOptions::default())
        .unwrap()
        .iter()
        .filter(|entry| cache.blob_path(entry).is_none())
        .count();
    assert_eq!(
        inline as u64,
        CHILDREN * KEYS,
        "small values are inline by default"
    );
}

#[test]
fn four_processes_racing_on_the_same_keys_leave_one_value_each_and_no_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("fresh");
    run_children(&cache_dir, "race");
    let cache = open_cache(&cache_dir, "race");
    assert_eq!(cache.backend().len().unwrap(), KEYS);
    for index in 0..KEYS {
        let back: Value = cache
            .get(&key!(experiment = "race", idx = index))
            .unwrap()
            .expect("every raced key is present");
        assert!(back.writer < CHILDREN);
        assert_eq!(back, value(back.writer, index));
    }
    assert_no_orphans(&cache, &cache_dir);
}

#[test]
fn compaction_while_others_write_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("fresh");
    run_children(&cache_dir, "compact");
    let snapshot: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache_dir.join("metadata.json")).unwrap()).unwrap();
    let generation = snapshot["generation"].as_u64().unwrap();
    assert!(generation > 10, "compacted {generation} times only");
    check_distinct(&cache_dir, "compact");
}

#[test]
fn data_version_changes_only_for_writes_of_other_handles() {
    let dir = tempfile::tempdir().unwrap();
    let first = JsonBackend::open(dir.path()).unwrap();
    let second = JsonBackend::open(dir.path()).unwrap();
    let entry =
        cacheness_core::conformance::sample_entry(cacheness_core::conformance::key_of(1), 5);
    let before = (
        first.data_version().unwrap(),
        second.data_version().unwrap(),
    );
    first.put(entry.clone()).unwrap();
    assert_eq!(
        first.data_version().unwrap(),
        before.0,
        "own writes do not count"
    );
    assert_ne!(
        second.data_version().unwrap(),
        before.1,
        "another handle's write counts"
    );
    assert_eq!(second.get(&entry.key).unwrap().as_ref(), Some(&entry));
    let seen = second.data_version().unwrap();
    first.compact().unwrap();
    assert_ne!(
        second.data_version().unwrap(),
        seen,
        "a compaction elsewhere counts"
    );
    assert_eq!(second.len().unwrap(), 1);
}

const PAUSE_ROLE: &str = "CACHENESS_JSON_PAUSE_CHILD";
/// Set for a child that waits for a line on stdin halfway through.
const PAUSE_HALFWAY: &str = "CACHENESS_JSON_PAUSE_HALFWAY";

/// The child of the torn-line test: puts `KEYS` inline values as writer
/// `CACHENESS_JSON_WRITER` (or puts until killed, without
/// `CACHENESS_JSON_PAUSE_HALFWAY`), reporting each finished put on stdout.
#[test]
fn pausing_writer_role() {
    let Ok(dir) = std::env::var(PAUSE_ROLE) else {
        return;
    };
    let writer: u64 = std::env::var("CACHENESS_JSON_WRITER")
        .unwrap()
        .parse()
        .unwrap();
    let pause = std::env::var_os(PAUSE_HALFWAY).is_some();
    let cache = open_cache(Path::new(&dir), "inline");
    let mut stdout = std::io::stdout().lock();
    let last = match pause {
        true => KEYS - 1,
        false => u64::MAX,
    };
    for index in 0..=last {
        if pause && index == KEYS / 2 {
            let mut go = String::new();
            std::io::stdin().lock().read_line(&mut go).unwrap();
        }
        cache
            .put(
                &key!(experiment = "mp", writer = writer, idx = index),
                &value(writer, index),
            )
            .unwrap();
        writeln!(stdout, "put {index}").unwrap();
        stdout.flush().unwrap();
    }
}

/// The index of each `put <index>` line `lines` yields, until `until` says
/// stop or the lines end; the last one.
fn read_puts(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    mut until: impl FnMut(u64) -> bool,
) -> Option<u64> {
    let mut last = None;
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(index) = line.strip_prefix("put ") {
            let index: u64 = index.parse().unwrap();
            last = Some(index);
            if until(index) {
                break;
            }
        }
    }
    last
}

/// Two processes put inline values into one dir; one is killed with SIGKILL
/// mid-stream, and a third dies mid-append (it holds the lock, writes half a
/// line carrying an inline value, and is gone). Readers skip the torn line,
/// the next writer cuts it off, and every finished put of the others
/// survives.
#[test]
fn a_writer_killed_mid_append_loses_only_its_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("fresh");
    drop(open_cache(&cache_dir, "inline"));
    let exe = std::env::current_exe().unwrap();
    let spawn = |writer: u64, pause: bool| {
        let mut command = Command::new(&exe);
        command
            .args([
                "multi_process::pausing_writer_role",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PAUSE_ROLE, &cache_dir)
            .env("CACHENESS_JSON_WRITER", writer.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if pause {
            command.env(PAUSE_HALFWAY, "1");
        }
        command.spawn().unwrap()
    };
    let mut survivor = spawn(0, true);
    let mut killed = spawn(1, false);

    let mut killed_lines = std::io::BufReader::new(killed.stdout.take().unwrap()).lines();
    read_puts(&mut killed_lines, |index| index >= 100);
    killed.kill().unwrap();
    // Lines still in the pipe were finished puts too.
    let killed_reported = read_puts(&mut killed_lines, |_| false).unwrap_or(100);
    killed.wait().unwrap();

    let mut survivor_lines = std::io::BufReader::new(survivor.stdout.take().unwrap()).lines();
    read_puts(&mut survivor_lines, |index| index == KEYS / 2 - 1);

    // The writer that dies mid-append: a real inline put line, of another
    // key, cut in the middle of its value, written under the lock.
    let journal = cache_dir.join(cacheness_json::JOURNAL_FILE);
    let text = std::fs::read_to_string(&journal).unwrap();
    let line = text.lines().last().unwrap();
    let torn_key = key!(experiment = "torn");
    let real_key = serde_json::from_str::<serde_json::Value>(line).unwrap()["put"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let torn = line.replace(&real_key, &torn_key.key().to_string());
    let cut = torn.find("\"inline\":\"").unwrap() + 14;
    {
        let lock = std::fs::OpenOptions::new()
            .append(true)
            .open(cache_dir.join(cacheness_json::LOCK_FILE))
            .unwrap();
        fs4::FileExt::lock(&lock).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap()
            .write_all(&torn.as_bytes()[..cut])
            .unwrap();
        // Its lock goes with it.
    }

    let reader = JsonBackend::open_read_only(&cache_dir, &JsonOptions::default()).unwrap();
    let count = reader.len().unwrap() - KEYS / 2;
    assert!(
        count == killed_reported + 1 || count == killed_reported + 2,
        "{count} entries of the killed writer, which reported {killed_reported}"
    );
    assert_eq!(
        reader.get(&torn_key.key()).unwrap(),
        None,
        "the torn line is skipped"
    );

    survivor.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(read_puts(&mut survivor_lines, |_| false), Some(KEYS - 1));
    assert!(survivor.wait().unwrap().success());

    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("the torn line was cut off");
    }
    let cache = open_cache(&cache_dir, "inline");
    for index in 0..KEYS {
        let back: Option<Value> = cache
            .get(&key!(experiment = "mp", writer = 0u64, idx = index))
            .unwrap();
        assert_eq!(back, Some(value(0, index)), "survivor's {index}");
    }
    for index in 0..=killed_reported {
        let back: Option<Value> = cache
            .get(&key!(experiment = "mp", writer = 1u64, idx = index))
            .unwrap();
        assert_eq!(back, Some(value(1, index)), "killed writer's {index}");
    }
    assert_eq!(cache.get::<Value>(&torn_key).unwrap(), None);
    assert_eq!(cache.backend().len().unwrap(), KEYS + count);
    assert!(
        blob_files(&cache_dir).is_empty(),
        "no file for inline values"
    );
}
