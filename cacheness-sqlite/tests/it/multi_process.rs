//! Many processes on one cache directory. The test binary is its own child: the
//! parent runs it again with `CACHENESS_SQLITE_CHILD` set, selecting the
//! `child_process` test, which does the child's work. Children wait on their
//! stdin until every one is spawned, so they open the fresh directory together.
//! One test watches the parent's `data_version` while a child writes.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cacheness_core::conformance::{key_of, sample_entry};
use cacheness_core::{Cache, EvictionPolicy, ListOptions, MetadataBackend, key};
use cacheness_sqlite::{SqliteBackend, SqliteOptions};
use serde::{Deserialize, Serialize};

use crate::common::checkpoint_threads_become;

const CHILD_ENV: &str = "CACHENESS_SQLITE_CHILD";
const CHILDREN: u64 = 4;
const DISTINCT_KEYS: u64 = 500;
const SHARED_KEYS: u64 = 150;
/// Small, so that the larger values go to blob files.
const INLINE_THRESHOLD: usize = 128;
/// A mode ending in this runs with a checkpoint every [`SMALL_LOG_PAGES`] pages
/// (the default is 10 000, which these tests never reach).
const SMALL_LOG: &str = "+small-log";
const SMALL_LOG_PAGES: u32 = 32;
/// The size limit of the `evicting` mode: a few dozen entries, so that every
/// child evicts over and over while the others write.
const EVICTING_LIMIT: u64 = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Value {
    child: u64,
    index: u64,
    payload: String,
}

/// The value child `child` writes for `index`: every fourth one large enough for
/// a blob file, and different per child so the winner of a shared key is known.
fn value(child: u64, index: u64) -> Value {
    let len = if index.is_multiple_of(4) { 600 } else { 20 };
    // Pseudo-random letters: lz4 cannot shrink them under the inline threshold.
    let mut state = (child + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index;
    let payload = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    Value {
        child,
        index,
        payload,
    }
}

fn open_cache(dir: &Path) -> Cache {
    open_cache_with(dir, &SqliteOptions::default())
}

fn open_cache_with(dir: &Path, options: &SqliteOptions) -> Cache {
    open_limited_cache(dir, options, None, EvictionPolicy::default())
}

fn open_limited_cache(
    dir: &Path,
    options: &SqliteOptions,
    max_size: Option<u64>,
    policy: EvictionPolicy,
) -> Cache {
    let backend = SqliteBackend::open_with(dir, options).expect("the sqlite backend opens");
    Cache::builder()
        .dir(dir)
        .inline_threshold(INLINE_THRESHOLD)
        .max_size(max_size)
        .eviction(policy)
        .open(backend)
        .expect("the cache opens")
}

/// The child's work; a no-op in an ordinary test run.
#[test]
fn child_process() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = role.splitn(3, ':');
    let (mode, child, dir) = (
        parts.next().expect("role has a mode"),
        parts
            .next()
            .and_then(|child| child.parse::<u64>().ok())
            .expect("role has a child number"),
        PathBuf::from(parts.next().expect("role has a directory")),
    );
    // The start signal: the parent writes a byte once every child is running.
    let mut go = [0u8; 1];
    std::io::stdin()
        .read_exact(&mut go)
        .expect("the parent sends the start signal");
    let (mode, small_log) = mode
        .strip_suffix(SMALL_LOG)
        .map_or((mode, false), |mode| (mode, true));
    let options = SqliteOptions {
        wal_autocheckpoint: if small_log {
            SMALL_LOG_PAGES
        } else {
            SqliteOptions::default().wal_autocheckpoint
        },
        ..SqliteOptions::default()
    };
    // `evicting-POLICY` evicts by that policy.
    let (mode, policy) = match mode.split_once('-') {
        Some((mode, policy)) => (mode, policy.parse().expect("a known policy")),
        None => (mode, EvictionPolicy::default()),
    };
    let limit = (mode == "evicting").then_some(EVICTING_LIMIT);
    let cache = open_limited_cache(&dir, &options, limit, policy);
    match mode {
        "distinct" => {
            for index in 0..DISTINCT_KEYS {
                cache
                    .put(&key!(child = child, index = index), &value(child, index))
                    .expect("put succeeds");
            }
            for index in 0..DISTINCT_KEYS {
                let back: Option<Value> = cache
                    .get(&key!(child = child, index = index))
                    .expect("get succeeds");
                assert_eq!(
                    back,
                    Some(value(child, index)),
                    "child {child} reads back {index}"
                );
            }
        }
        "shared" => {
            for round in 0..2 {
                for index in 0..SHARED_KEYS {
                    cache
                        .put(&key!(index = index), &value(child, index))
                        .expect("put succeeds");
                    let back: Option<Value> =
                        cache.get(&key!(index = index)).expect("get succeeds");
                    let back = back.expect("a shared key once put stays");
                    assert_eq!(
                        back,
                        value(back.child, index),
                        "round {round}: a whole value"
                    );
                }
            }
        }
        "evicting" => {
            for index in 0..DISTINCT_KEYS {
                cache
                    .put(&key!(child = child, index = index), &value(child, index))
                    .expect("put succeeds");
                // Any key may have been evicted by now, by this process or
                // another; one that is there holds its own value.
                for read in [index, index / 2] {
                    let back: Option<Value> = cache
                        .get(&key!(child = child, index = read))
                        .expect("get succeeds");
                    if let Some(back) = back {
                        assert_eq!(back, value(child, read), "child {child} reads {read}");
                    }
                }
            }
        }
        "one" => {
            cache
                .put(&key!(child = child), &value(child, 0))
                .expect("put succeeds");
        }
        other => panic!("unknown child mode {other}"),
    }
    cache.flush().expect("flush succeeds");
    if small_log && cfg!(target_os = "linux") {
        assert_eq!(
            checkpoint_threads_become(1),
            1,
            "the child checkpointed on its thread"
        );
    }
}

/// Runs `CHILDREN` children in `mode` on `dir`, all released at once.
fn run_children(mode: &str, dir: &Path) {
    run_some_children(CHILDREN, mode, dir);
}

/// Runs `count` children in `mode` on `dir`, all released at once.
fn run_some_children(count: u64, mode: &str, dir: &Path) {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let mut children: Vec<_> = (0..count)
        .map(|child| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "multi_process::child_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, format!("{mode}:{child}:{}", dir.display()))
                .stdin(Stdio::piped())
                .spawn()
                .expect("the child starts")
        })
        .collect();
    for child in &mut children {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(b"g").expect("the child reads its stdin");
    }
    for (number, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().expect("the child runs");
        assert!(
            output.status.success(),
            "child {number} failed: {}",
            output.status
        );
    }
}

/// Every blob file under `dir`, as the names entries use (`ab/<key>-<nonce>`).
fn blob_files(dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for shard in std::fs::read_dir(dir.join("blobs"))
        .expect("blobs dir exists")
        .flatten()
    {
        for file in std::fs::read_dir(shard.path())
            .expect("shard is a dir")
            .flatten()
        {
            names.insert(format!(
                "{}/{}",
                shard.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            ));
        }
    }
    names
}

fn blob_names_of_entries(cache: &Cache) -> BTreeSet<String> {
    cache
        .list(&ListOptions::new().include_expired(true))
        .expect("list succeeds")
        .iter()
        .filter_map(|entry| entry.blob_name().map(str::to_owned))
        .collect()
}

#[test]
fn four_processes_opening_a_fresh_dir_at_once_lose_nothing() {
    four_processes_writing_distinct_keys_lose_nothing("distinct");
}

/// As above, with checkpoints every few puts of each process: their checkpoint
/// threads and tails race each other and the writers.
#[test]
fn four_processes_checkpointing_all_the_time_lose_nothing() {
    four_processes_writing_distinct_keys_lose_nothing(&format!("distinct{SMALL_LOG}"));
}

fn four_processes_writing_distinct_keys_lose_nothing(mode: &str) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("fresh");
    run_children(mode, &dir);

    let cache = open_cache(&dir);
    assert_eq!(cache.stats().unwrap().entries, CHILDREN * DISTINCT_KEYS);
    for child in 0..CHILDREN {
        for index in 0..DISTINCT_KEYS {
            assert_holds_its_value(&cache, child, index);
        }
    }
    assert_eq!(blob_files(&dir), blob_names_of_entries(&cache));
}

/// The entry child `child` wrote for `index` is there, with its whole value.
fn assert_holds_its_value(cache: &Cache, child: u64, index: u64) {
    let back: Option<Value> = cache.get(&key!(child = child, index = index)).unwrap();
    assert_eq!(
        back,
        Some(value(child, index)),
        "child {child}, index {index}"
    );
}

/// Four processes over a size limit from their first puts, each evicting while
/// the others write: the first eviction query of the fresh database creates the
/// eviction index while other processes run their own.
#[test]
fn four_processes_evicting_at_once_keep_whole_values_and_no_stray_blob() {
    four_processes_evicting(EvictionPolicy::Lru, "entries_by_accessed_at");
}

/// The same under the other policies, whose indexes the first eviction query
/// for each makes while other processes run theirs.
#[test]
fn four_processes_evicting_by_lrs_or_lfu_keep_whole_values_and_no_stray_blob() {
    four_processes_evicting(EvictionPolicy::Lrs, "entries_by_created_at");
    four_processes_evicting(EvictionPolicy::Lfu, "entries_by_access_count");
}

fn four_processes_evicting(policy: EvictionPolicy, index: &str) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("evicting");
    run_children(&format!("evicting-{policy}"), &dir);

    let cache = open_limited_cache(
        &dir,
        &SqliteOptions::default(),
        Some(EVICTING_LIMIT),
        policy,
    );
    let stats = cache.stats().unwrap();
    assert!(stats.evictions > 0, "the children evicted: {stats:?}");
    assert!(
        stats.entries < CHILDREN * DISTINCT_KEYS / 4,
        "most entries went: {stats:?}"
    );
    let entries = cache.list(&ListOptions::default()).unwrap();
    assert_eq!(entries.len() as u64, stats.entries);
    for entry in &entries {
        let params = entry.params.as_ref().expect("entries keep their params");
        let number = |name: &str| {
            match params.get(name) {
                Some(cacheness_core::Value::Int(integer)) => integer
                    .to_u128()
                    .and_then(|number| u64::try_from(number).ok()),
                _ => None,
            }
            .unwrap_or_else(|| panic!("{name} in {params:?}"))
        };
        assert_holds_its_value(&cache, number("child"), number("index"));
    }
    assert_eq!(blob_files(&dir), blob_names_of_entries(&cache));
    let conn = rusqlite::Connection::open(dir.join(cacheness_sqlite::DB_FILE_NAME)).unwrap();
    let indexes: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = ?1",
            [index],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 1, "one {policy} index, made by the first eviction");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn four_processes_writing_the_same_keys_leave_one_whole_value_each_and_no_stray_blob() {
    four_processes_writing_the_same_keys("shared");
}

#[test]
fn four_processes_writing_the_same_keys_through_frequent_checkpoints() {
    four_processes_writing_the_same_keys(&format!("shared{SMALL_LOG}"));
}

fn four_processes_writing_the_same_keys(mode: &str) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("shared");
    run_children(mode, &dir);

    let cache = open_cache(&dir);
    assert_eq!(cache.stats().unwrap().entries, SHARED_KEYS);
    for index in 0..SHARED_KEYS {
        let back: Value = cache
            .get(&key!(index = index))
            .unwrap()
            .unwrap_or_else(|| panic!("key {index} survives"));
        assert!(back.child < CHILDREN);
        assert_eq!(
            back,
            value(back.child, index),
            "key {index} holds one child's whole value"
        );
    }
    let referenced = blob_names_of_entries(&cache);
    assert_eq!(
        referenced.len() as u64,
        SHARED_KEYS.div_ceil(4),
        "one blob per large value"
    );
    assert_eq!(
        blob_files(&dir),
        referenced,
        "no blob file without an entry, none missing"
    );
}

#[test]
fn another_process_write_changes_data_version_and_own_writes_do_not() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("watched");
    let mine = SqliteBackend::open(&dir).unwrap();
    mine.put(sample_entry(key_of(1), 1)).unwrap();
    let before = mine.data_version().unwrap();
    run_some_children(1, "one", &dir);
    let after = mine.data_version().unwrap();
    assert_ne!(after, before, "the child's put shows");
    mine.put(sample_entry(key_of(2), 2)).unwrap();
    mine.remove(&key_of(1)).unwrap();
    assert_eq!(mine.data_version().unwrap(), after, "own writes do not");
    assert_eq!(mine.len().unwrap(), 2, "the child's entry and ours");
}
