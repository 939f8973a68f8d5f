//! Migration between backends: every pair keeps the same entries, bytes and expiry
//! times; opening a dir with the other disk backend's metadata migrates once; a
//! migration killed half way is finished by the next open.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cacheness::{
    Cache, CacheConfig, ManualClock, PutOptions,
    backend::{LocalBlobStore, MetadataBackend},
    key,
    ops::{migrate, no_progress},
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const BACKENDS: [&str; 4] = ["memory", "json", "sqlite", "sqlite-memory"];

fn backend(name: &str, dir: &Path) -> Arc<dyn MetadataBackend> {
    CacheConfig::new()
        .dir(dir)
        .backend(name)
        .open_backend()
        .unwrap()
}

fn cache_over(dir: &Path, backend: Arc<dyn MetadataBackend>, clock: &ManualClock) -> Cache {
    Cache::builder()
        .dir(dir)
        .inline_threshold(256)
        .clock(clock.clone())
        .open_shared(backend)
        .unwrap()
}

#[derive(Debug, Clone)]
struct Stored {
    id: u16,
    value: Vec<u8>,
    ttl_secs: Option<u32>,
    prefix: &'static str,
}

fn arb_entries() -> impl Strategy<Value = Vec<Stored>> {
    proptest::collection::vec(
        (
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..1_500),
            proptest::option::of(1u32..1_000_000),
            prop::sample::select(vec!["", "models", "runs"]),
        )
            .prop_map(|(id, value, ttl_secs, prefix)| Stored {
                id,
                value,
                ttl_secs,
                prefix,
            }),
        0..20,
    )
}

/// Puts `entries` through a cache over `from`, migrates to `to`, and checks the
/// target serves the same entries with the same bytes and expiry.
fn migrate_and_compare(from: &str, to: &str, entries: &[Stored]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let source = backend(from, dir.path());
    let cache = cache_over(dir.path(), source.clone(), &clock);
    let mut expected = std::collections::BTreeMap::new();
    for stored in entries {
        let mut options = PutOptions::new().prefix(stored.prefix);
        if let Some(ttl) = stored.ttl_secs {
            options = options.ttl(Duration::from_secs(u64::from(ttl)));
        }
        let key = key!(id = stored.id);
        cache.put_bytes_with(&key, &stored.value, &options).unwrap();
        expected.insert(key.key(), stored.clone());
    }
    cache.flush().unwrap();
    drop(cache);

    let target = backend(to, dir.path());
    let blobs = LocalBlobStore::open(dir.path(), Default::default()).unwrap();
    migrate(
        source.as_ref(),
        target.as_ref(),
        Some(&blobs),
        &mut no_progress,
    )
    .unwrap();
    let migrated = cache_over(dir.path(), target.clone(), &clock);
    prop_assert_eq!(
        target.len().unwrap(),
        expected.len() as u64,
        "{} -> {}",
        from,
        to
    );
    for (key, stored) in &expected {
        let source_entry = source.get(key).unwrap().unwrap();
        let entry = migrated.entry(key).unwrap().unwrap();
        prop_assert_eq!(entry.expires_at, source_entry.expires_at);
        prop_assert_eq!(entry.created_at, source_entry.created_at);
        prop_assert_eq!(entry.content_hash, source_entry.content_hash);
        prop_assert_eq!(&entry.prefix, stored.prefix);
        prop_assert_eq!(
            migrated.get_bytes(key).unwrap(),
            Some(stored.value.clone()),
            "{} -> {}",
            from,
            to
        );
    }
    Ok(())
}

#[test]
fn every_pair_of_backends_migrates_the_same_entries() {
    for from in BACKENDS {
        for to in BACKENDS.into_iter().filter(|to| *to != from) {
            let mut runner = TestRunner::new(Config::with_cases(6));
            runner
                .run(&arb_entries(), |entries| {
                    migrate_and_compare(from, to, &entries)
                })
                .unwrap_or_else(|failure| panic!("{from} -> {to}: {failure}"));
        }
    }
}

fn config(dir: &Path, backend: &str) -> CacheConfig {
    CacheConfig::new()
        .dir(dir)
        .backend(backend)
        .inline_threshold(64)
}

/// A json cache that keeps small values inline, so that filling it with many
/// entries does not create a file per entry.
fn inline_json(dir: &Path) -> CacheConfig {
    let mut config = config(dir, "json");
    config.json.inline_values = true;
    config
}

#[test]
fn opening_with_the_other_backend_migrates_once_each_way() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = config(dir.path(), "json").open().unwrap();
        for index in 0..300u32 {
            cache
                .put(&key!(index = index), &format!("value {index}"))
                .unwrap();
        }
    }
    {
        let cache = config(dir.path(), "sqlite").open().unwrap();
        assert_eq!(
            cache.stats().unwrap().entries,
            300,
            "json metadata migrated to sqlite"
        );
        for index in 0..300u32 {
            assert_eq!(
                cache.get::<String>(&key!(index = index)).unwrap(),
                Some(format!("value {index}"))
            );
        }
        cache.put(&key!(index = 300u32), &"only in sqlite").unwrap();
    }
    assert!(
        dir.path().join("metadata.json").exists() || dir.path().join("metadata.journal").exists()
    );
    // Both exist now, and the marker says sqlite is current: the json copy is
    // stale (it lacks the 301st entry), so opening with json migrates back
    // instead of serving it, and the switch back to sqlite again.
    assert_eq!(
        cacheness::ops::detect_backend(dir.path()).unwrap(),
        Some("sqlite")
    );
    let json_again = config(dir.path(), "json").open().unwrap();
    assert_eq!(
        json_again.stats().unwrap().entries,
        301,
        "the current sqlite metadata migrated back into json"
    );
    assert_eq!(
        json_again
            .get::<String>(&key!(index = 300u32))
            .unwrap()
            .as_deref(),
        Some("only in sqlite")
    );
    json_again.remove(&key!(index = 0u32)).unwrap();
    drop(json_again);
    assert_eq!(
        cacheness::ops::detect_backend(dir.path()).unwrap(),
        Some("json")
    );
    let sqlite_again = config(dir.path(), "sqlite").open().unwrap();
    assert_eq!(
        sqlite_again.stats().unwrap().entries,
        300,
        "the removal made through json is not undone by the stale sqlite copy"
    );

    let other = tempfile::tempdir().unwrap();
    {
        let cache = config(other.path(), "sqlite").open().unwrap();
        cache
            .put(&key!(direction = "reverse"), &vec![1u8; 1_000])
            .unwrap();
        cache.put(&key!(direction = "small"), &1).unwrap();
    }
    let cache = config(other.path(), "json").open().unwrap();
    assert_eq!(
        cache.get::<Vec<u8>>(&key!(direction = "reverse")).unwrap(),
        Some(vec![1u8; 1_000])
    );
    assert_eq!(
        cache.get::<i32>(&key!(direction = "small")).unwrap(),
        Some(1),
        "inline value moved to a blob"
    );
}

const CHILD: &str = "CACHENESS_MIGRATION_CHILD_DIR";
const ENTRIES: u32 = 20_000;

/// The child role of the interrupted-migration test: open with sqlite over json
/// metadata (so the migration runs), logging progress to stdout for the parent.
#[test]
fn migration_child() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .init();
    let _cache = config(Path::new(&dir), "sqlite").open().unwrap();
    println!("child finished the migration");
}

#[test]
fn a_killed_migration_is_finished_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = inline_json(dir.path()).open().unwrap();
        for index in 0..ENTRIES {
            cache.put(&key!(index = index), &index).unwrap();
        }
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "migration_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut killed_mid_way = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.contains("done=5000") {
            child.kill().unwrap();
            killed_mid_way = true;
            break;
        }
        assert!(
            !line.contains("child finished"),
            "the child finished before it could be killed"
        );
    }
    child.wait().unwrap();
    assert!(killed_mid_way, "the child reported progress and was killed");
    assert!(
        dir.path().join(".cacheness-migrating").exists(),
        "the migration is marked unfinished"
    );

    let cache = config(dir.path(), "sqlite").open().unwrap();
    assert_eq!(cache.stats().unwrap().entries, u64::from(ENTRIES));
    for index in (0..ENTRIES).step_by(97) {
        assert_eq!(cache.get::<u32>(&key!(index = index)).unwrap(), Some(index));
    }
    assert!(!dir.path().join(".cacheness-migrating").exists());
}

const BLOCKED_CHILD: &str = "CACHENESS_MIGRATION_BLOCKED_CHILD_DIR";

/// The child role of the lock test: open with sqlite over json metadata.
#[test]
fn blocked_migration_child() {
    let Ok(dir) = std::env::var(BLOCKED_CHILD) else {
        return;
    };
    let _cache = config(Path::new(&dir), "sqlite").open().unwrap();
}

/// Whether `pid` has the dir's migration lock open: it opens the lock file
/// first, then waits (polling) for its hold, creating nothing before it has it.
fn waits_for_a_lock(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.ends_with(".cacheness-migrate.lock"))
        })
    })
}

/// The deterministic case: a process that switches backends is killed
/// while it waits for the migration lock. Before the fix it had already created
/// the sqlite database, so the next open saw two metadata sets and no marker,
/// used the empty sqlite one, and `gc` deleted every blob.
#[test]
fn a_switch_killed_while_waiting_for_the_lock_leaves_the_cache_whole() {
    if !Path::new("/proc/self/fd").exists() {
        eprintln!("skipped: no /proc/self/fd to see the child wait");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let values = 200u32;
    {
        let cache = config(dir.path(), "json").open().unwrap();
        for index in 0..values {
            cache
                .put(&key!(index = index), &incompressible(index, 2_000))
                .unwrap();
        }
    }
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.path().join(".cacheness-migrate.lock"))
        .unwrap();
    lock.lock().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["blocked_migration_child", "--exact", "--test-threads=1"])
        .env(BLOCKED_CHILD, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Bounded: the child reaches the lock within a few seconds or the test fails.
    let mut waited = false;
    for _ in 0..20_000 {
        if waits_for_a_lock(child.id()) {
            waited = true;
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        std::thread::yield_now();
        std::thread::park_timeout(Duration::from_micros(500));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    lock.unlock().unwrap();
    assert!(waited, "the child never waited for the migration lock");
    assert!(
        !dir.path().join("cache_metadata.db").exists(),
        "the target's metadata is created only under the lock"
    );
    for backend in ["sqlite", "json", "sqlite"] {
        let cache = config(dir.path(), backend).open().unwrap();
        cache.gc(&mut no_progress).unwrap();
        assert_eq!(
            cache.stats().unwrap().entries,
            u64::from(values),
            "{backend}"
        );
        for index in 0..values {
            assert_eq!(
                cache.get::<Vec<u8>>(&key!(index = index)).unwrap(),
                Some(incompressible(index, 2_000)),
                "{backend}: entry {index}"
            );
        }
    }
}

/// A kill at each step of a migration, as the files it leaves: the next open
/// with either backend sees every entry.
#[test]
fn every_state_a_killed_migration_leaves_opens_whole() {
    // (in-progress marker, target created, done marker)
    let states = [
        (true, false, false),
        (true, true, false),
        (true, true, true),
        (false, true, true),
    ];
    for (marked, created, done) in states {
        for reopen in ["sqlite", "json"] {
            let dir = tempfile::tempdir().unwrap();
            {
                let cache = config(dir.path(), "json").open().unwrap();
                for index in 0..50u32 {
                    cache
                        .put(&key!(index = index), &incompressible(index, 500))
                        .unwrap();
                }
            }
            if created {
                // A partial copy, or a whole one once the done marker is written.
                let partial = backend("sqlite", dir.path());
                let source = backend("json", dir.path());
                let copy = if done { 50 } else { 25 };
                let mut copied = 0;
                source
                    .scan(&cacheness::backend::ScanFilter::all(), &mut |entry| {
                        if copied < copy {
                            partial.put(entry).unwrap();
                            copied += 1;
                        }
                        std::ops::ControlFlow::Continue(())
                    })
                    .unwrap();
            }
            if done {
                std::fs::write(dir.path().join(".cacheness-migrated-json-to-sqlite"), "").unwrap();
            }
            if marked {
                std::fs::write(dir.path().join(".cacheness-migrating"), "json -> sqlite\n")
                    .unwrap();
            }
            let state = format!("marked={marked} created={created} done={done} reopen={reopen}");
            let cache = config(dir.path(), reopen).open().unwrap();
            cache.gc(&mut no_progress).unwrap();
            // Whatever was cut short, the backend just opened is the current one
            // now, and the dir names it (no two metadata sets without a marker).
            assert_eq!(
                cacheness::ops::detect_backend(dir.path()).unwrap(),
                Some(reopen),
                "{state}"
            );
            assert_eq!(cache.stats().unwrap().entries, 50, "{state}");
            for index in 0..50u32 {
                assert_eq!(
                    cache.get::<Vec<u8>>(&key!(index = index)).unwrap(),
                    Some(incompressible(index, 500)),
                    "{state}: entry {index}"
                );
            }
            assert!(!dir.path().join(".cacheness-migrating").exists(), "{state}");
        }
    }
}

#[cfg(unix)]
#[test]
fn migration_markers_are_private_and_never_follow_links() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    {
        let cache = config(dir.path(), "json").open().unwrap();
        cache.put(&key!(id = 1), &incompressible(1, 1_000)).unwrap();
    }
    drop(config(dir.path(), "sqlite").open().unwrap());
    for name in [
        ".cacheness-migrate.lock",
        ".cacheness-migrated-json-to-sqlite",
    ] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }

    // A sqlite cache with an empty journal planted beside it, and every marker
    // name a link to a file outside the dir.
    let planted = tempfile::tempdir().unwrap();
    {
        let cache = config(planted.path(), "sqlite").open().unwrap();
        cache.put(&key!(id = 2), &incompressible(2, 1_000)).unwrap();
    }
    std::fs::write(planted.path().join("metadata.journal"), "").unwrap();
    assert_eq!(
        cacheness::ops::detect_backend(planted.path()).unwrap(),
        Some("sqlite")
    );
    let names = [
        ".cacheness-migrating",
        ".cacheness-migrating.tmp",
        ".cacheness-migrate.lock",
        ".cacheness-migrated-json-to-sqlite",
        ".cacheness-migrated-sqlite-to-json",
    ];
    for name in names {
        let target = outside.path().join(name);
        std::fs::write(&target, "precious").unwrap();
        // The lock file exists already: every writable open holds it.
        let _ = std::fs::remove_file(planted.path().join(name));
        symlink(&target, planted.path().join(name)).unwrap();
    }
    for backend in ["sqlite", "json"] {
        match config(planted.path(), backend).open() {
            Ok(cache) => {
                assert_eq!(
                    cache.get::<Vec<u8>>(&key!(id = 2)).unwrap(),
                    Some(incompressible(2, 1_000))
                )
            }
            Err(error) => assert!(error.to_string().contains("symbolic link"), "{error}"),
        }
    }
    for name in names {
        assert_eq!(
            std::fs::read_to_string(outside.path().join(name)).unwrap(),
            "precious"
        );
    }
}

#[test]
fn migrate_to_switches_the_dir_and_refuses_what_cannot_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = config(dir.path(), "sqlite").open().unwrap();
        for index in 0..20u32 {
            cache
                .put(&key!(index = index), &incompressible(index, 700))
                .unwrap();
        }
    }
    for refused in ["memory", "sqlite-memory", "sqlite"] {
        let error = cacheness::ops::migrate_dir(dir.path(), refused, &mut no_progress).unwrap_err();
        assert!(error.to_string().contains(refused), "{refused}: {error}");
    }
    // An open that may not switch the cache is refused and changes nothing.
    let error = config(dir.path(), "json")
        .switch_backend_on_open(false)
        .open()
        .unwrap_err();
    assert!(error.to_string().contains("is a sqlite cache"), "{error}");
    assert_eq!(
        cacheness::ops::detect_backend(dir.path()).unwrap(),
        Some("sqlite")
    );
    let report = cacheness::ops::migrate_dir(dir.path(), "json", &mut no_progress).unwrap();
    assert_eq!(report.copied, 20);
    assert_eq!(
        cacheness::ops::detect_backend(dir.path()).unwrap(),
        Some("json")
    );
    // A read-only open with the stale backend is refused, naming the current one.
    let error = config(dir.path(), "sqlite")
        .read_only(true)
        .open()
        .unwrap_err();
    assert!(error.to_string().contains("json cache"), "{error}");
    let cache = config(dir.path(), "json").open().unwrap();
    assert_eq!(cache.stats().unwrap().entries, 20);
}

#[test]
fn a_missing_sqlite_database_is_rebuilt_from_the_blobs_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = config(dir.path(), "sqlite").open().unwrap();
        for index in 0..30u32 {
            cache
                .put(&key!(index = index), &incompressible(index, 900))
                .unwrap();
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("cache_metadata.db{suffix}")));
    }
    let cache = config(dir.path(), "sqlite").open().unwrap();
    assert_eq!(cache.stats().unwrap().entries, 30);
    assert_eq!(
        cache.get::<Vec<u8>>(&key!(index = 29u32)).unwrap(),
        Some(incompressible(29, 900))
    );
}

/// Bytes lz4 cannot shrink, so they go to a blob file.
fn incompressible(seed: u32, len: usize) -> Vec<u8> {
    let mut state = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Every file under `dir` with its length, contents and mtime.
fn snapshot_of(dir: &Path) -> Vec<(std::path::PathBuf, u64, Vec<u8>, std::time::SystemTime)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for item in std::fs::read_dir(&next).unwrap() {
            let item = item.unwrap();
            let metadata = std::fs::symlink_metadata(item.path()).unwrap();
            if metadata.is_dir() {
                pending.push(item.path());
            }
            let contents = if metadata.is_file() {
                std::fs::read(item.path()).unwrap()
            } else {
                Vec::new()
            };
            files.push((
                item.path(),
                metadata.len(),
                contents,
                metadata.modified().unwrap(),
            ));
        }
    }
    files.sort();
    files
}

#[test]
fn a_read_only_open_serves_reads_and_leaves_every_file_as_it_was() {
    for backend in ["json", "sqlite"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let cache = config(dir.path(), backend).open().unwrap();
            for index in 0..20u32 {
                cache
                    .put(
                        &key!(index = index),
                        &incompressible(index, 300 + index as usize * 10),
                    )
                    .unwrap();
            }
        }
        let before = snapshot_of(dir.path());
        {
            let cache = config(dir.path(), backend).read_only(true).open().unwrap();
            for index in 0..20u32 {
                assert_eq!(
                    cache.get::<Vec<u8>>(&key!(index = index)).unwrap(),
                    Some(incompressible(index, 300 + index as usize * 10)),
                    "{backend}"
                );
            }
            let error = cache.put(&key!(index = 99u32), &1).unwrap_err();
            assert!(
                error.to_string().contains("read-only"),
                "{backend}: {error}"
            );
            assert!(cache.verify(false, &mut no_progress).unwrap().is_clean());
            assert!(cache.gc(&mut no_progress).is_err(), "{backend}: gc writes");
        }
        assert_eq!(
            snapshot_of(dir.path()),
            before,
            "{backend}: a read-only open wrote"
        );
        // The other backend, read-only, is refused and creates nothing.
        let other = if backend == "json" { "sqlite" } else { "json" };
        let error = config(dir.path(), other)
            .read_only(true)
            .open()
            .unwrap_err();
        assert!(
            error.to_string().contains(&format!("is a {backend} cache")),
            "{error}"
        );
        assert_eq!(
            snapshot_of(dir.path()),
            before,
            "{backend}: a refused open wrote"
        );
    }
}

/// The review's case: a handle opened before a switch kept writing into the
/// metadata the switch left behind (310 of 400 puts lost), and its gc deleted
/// the new backend's blobs. Every writable handle now holds the dir shared and
/// a switch needs it alone.
#[test]
fn a_switch_waits_for_no_open_handle_and_is_refused_beside_one() {
    let dir = tempfile::tempdir().unwrap();
    let writer = config(dir.path(), "json").open().unwrap();
    writer
        .put(&key!(index = 0u32), &incompressible(0, 900))
        .unwrap();
    let error = cacheness::ops::migrate_dir(dir.path(), "sqlite", &mut no_progress).unwrap_err();
    assert!(error.to_string().contains("still has it open"), "{error}");
    let error = config(dir.path(), "sqlite").open().unwrap_err();
    assert!(error.to_string().contains("still has it open"), "{error}");
    assert_eq!(
        cacheness::ops::detect_backend(dir.path()).unwrap(),
        Some("json")
    );
    assert!(!dir.path().join("cache_metadata.db").exists());
    writer
        .put(&key!(index = 1u32), &incompressible(1, 900))
        .unwrap();
    drop(writer);
    let report = cacheness::ops::migrate_dir(dir.path(), "sqlite", &mut no_progress).unwrap();
    assert_eq!(report.copied, 2);
}

/// Several processes (threads here, each with its own lock file handle) opening
/// a json dir with sqlite at once: one switches, the others wait and open it.
#[test]
fn openers_racing_to_switch_all_open_and_switch_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = config(dir.path(), "json").open().unwrap();
        for index in 0..100u32 {
            cache
                .put(&key!(index = index), &incompressible(index, 700))
                .unwrap();
        }
    }
    let caches: Vec<_> = std::thread::scope(|scope| {
        let openers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| config(dir.path(), "sqlite").open()))
            .collect();
        openers
            .into_iter()
            .map(|opener| opener.join().unwrap())
            .collect()
    });
    for cache in &caches {
        let cache = cache.as_ref().unwrap();
        assert_eq!(cache.stats().unwrap().entries, 100);
    }
}

/// The review's case: after a switch, the new backend's metadata lost. Before,
/// the stale copy became current (0 of the later entries) and gc removed their
/// blobs; now the lost backend stays current and is rebuilt.
#[test]
fn losing_the_metadata_after_a_switch_rebuilds_it_instead_of_reviving_the_stale_copy() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = config(dir.path(), "json").open().unwrap();
        for index in 0..10u32 {
            cache
                .put(&key!(index = index), &incompressible(index, 900))
                .unwrap();
        }
    }
    {
        let cache = config(dir.path(), "sqlite").open().unwrap();
        for index in 10..20u32 {
            cache
                .put(&key!(index = index), &incompressible(index, 900))
                .unwrap();
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("cache_metadata.db{suffix}")));
    }
    assert_eq!(
        cacheness::ops::detect_backend(dir.path()).unwrap(),
        Some("sqlite")
    );
    let error = config(dir.path(), "json").open().unwrap_err();
    assert!(error.to_string().contains("metadata is missing"), "{error}");
    let cache = config(dir.path(), "sqlite").open().unwrap();
    cache.gc(&mut no_progress).unwrap();
    for index in 0..20u32 {
        assert_eq!(
            cache.get::<Vec<u8>>(&key!(index = index)).unwrap(),
            Some(incompressible(index, 900)),
            "entry {index}"
        );
    }
    assert!(!dir.path().join(".cacheness-rebuilding").exists());
}

/// The review's case: a well-formed marker planted in a sqlite cache made the
/// open "resume" a switch from json, which has no metadata, and empty sqlite.
#[test]
fn a_migration_marker_whose_source_has_no_metadata_is_ignored() {
    for planted in ["json -> sqlite\n", "sqlite -> json\n"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let cache = config(dir.path(), "sqlite").open().unwrap();
            for index in 0..20u32 {
                cache.put(&key!(index = index), &index).unwrap();
            }
        }
        std::fs::write(dir.path().join(".cacheness-migrating"), planted).unwrap();
        assert_eq!(
            cacheness::ops::detect_backend(dir.path()).unwrap(),
            Some("sqlite")
        );
        let cache = config(dir.path(), "sqlite").open().unwrap();
        for index in 0..20u32 {
            assert_eq!(
                cache.get::<u32>(&key!(index = index)).unwrap(),
                Some(index),
                "{planted}"
            );
        }
        assert!(
            !dir.path().join(".cacheness-migrating").exists(),
            "{planted}"
        );
    }
}

/// The review's case: the library let the memory backend open a disk cache's
/// dir, and its gc removed every blob.
#[test]
fn a_memory_backend_cannot_open_a_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = config(dir.path(), "sqlite").open().unwrap();
        cache
            .put(&key!(index = 1u32), &incompressible(1, 900))
            .unwrap();
    }
    for backend in ["memory", "sqlite-memory"] {
        let error = config(dir.path(), backend).open().unwrap_err();
        assert!(
            error.to_string().contains("is a sqlite cache"),
            "{backend}: {error}"
        );
    }
}

/// A rebuild at open that was killed leaves its marker; the next open finishes it.
#[test]
fn an_unfinished_rebuild_is_finished_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = config(dir.path(), "sqlite").open().unwrap();
        for index in 0..10u32 {
            cache
                .put(&key!(index = index), &incompressible(index, 900))
                .unwrap();
        }
    }
    // As a kill leaves it: the marker, and metadata that lacks entries.
    cacheness::backend::open_backend("sqlite", Some(dir.path()))
        .unwrap()
        .remove(&key!(index = 3u32).key())
        .unwrap();
    std::fs::write(dir.path().join(".cacheness-rebuilding"), "").unwrap();
    let cache = config(dir.path(), "sqlite").open().unwrap();
    assert_eq!(
        cache.get::<Vec<u8>>(&key!(index = 3u32)).unwrap(),
        Some(incompressible(3, 900))
    );
    assert!(!dir.path().join(".cacheness-rebuilding").exists());
}

const SWITCH_WRITER: &str = "CACHENESS_SWITCH_WRITER_DIR";

/// The writer role of the switch-beside-writers test: puts fresh keys through
/// a json cache, prints each acknowledged one, and keeps the cache open until
/// the parent closes its stdin.
#[test]
fn switch_writer_child() {
    let Ok(spec) = std::env::var(SWITCH_WRITER) else {
        return;
    };
    let (dir, writer) = spec.split_once('|').unwrap();
    let cache = config(Path::new(dir), "json").open().unwrap();
    let writer: u32 = writer.parse().unwrap();
    for index in 0..SWITCH_PUTS {
        let id = writer * 1_000 + index;
        cache
            .put(&key!(index = id), &incompressible(id, 2_000))
            .unwrap();
        println!("ack {id}");
    }
    let mut rest = String::new();
    std::io::stdin().read_line(&mut rest).unwrap();
}

const SWITCH_PUTS: u32 = 300;

/// Maintenance's switch beside writers in other processes: refused while they
/// have the cache open (before, their later puts were lost to the switch), and
/// once they closed it, it carries every acknowledged put.
#[test]
fn a_switch_beside_writers_in_other_processes_is_refused_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    drop(config(dir.path(), "json").open().unwrap());
    let mut writers: Vec<_> = (0..2u32)
        .map(|writer| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "switch_writer_child",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(SWITCH_WRITER, format!("{}|{writer}", dir.path().display()))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut outputs: Vec<_> = writers
        .iter_mut()
        .map(|child| BufReader::new(child.stdout.take().unwrap()).lines())
        .collect();
    let mut acked: Vec<u32> = Vec::new();
    let next_ack = |lines: &mut std::io::Lines<BufReader<std::process::ChildStdout>>| {
        loop {
            let line = lines.next().expect("a writer ended early").unwrap();
            // The harness may start the line with "test switch_writer_child ... ".
            if let Some(at) = line.find("ack ") {
                return line[at + "ack ".len()..].trim().parse::<u32>().unwrap();
            }
        }
    };
    // Both writers have the cache open once each acknowledged a put.
    for lines in &mut outputs {
        acked.push(next_ack(lines));
    }
    let error = cacheness::ops::migrate_dir(dir.path(), "sqlite", &mut no_progress).unwrap_err();
    assert!(error.to_string().contains("still has it open"), "{error}");
    let error = config(dir.path(), "sqlite").open().unwrap_err();
    assert!(error.to_string().contains("still has it open"), "{error}");
    for lines in &mut outputs {
        for _ in 1..SWITCH_PUTS {
            acked.push(next_ack(lines));
        }
    }
    for writer in &mut writers {
        drop(writer.stdin.take());
    }
    for mut writer in writers {
        assert!(writer.wait().unwrap().success());
    }
    assert_eq!(acked.len(), 2 * SWITCH_PUTS as usize);
    cacheness::ops::migrate_dir(dir.path(), "sqlite", &mut no_progress).unwrap();
    let cache = config(dir.path(), "sqlite").open().unwrap();
    cache.gc(&mut no_progress).unwrap();
    for id in acked {
        assert_eq!(
            cache.get::<Vec<u8>>(&key!(index = id)).unwrap(),
            Some(incompressible(id, 2_000)),
            "acknowledged put {id}"
        );
    }
}

/// The second review's case: a json and a sqlite opener on a fresh dir both
/// made a cache, and each one's gc then deleted the other's blobs. The first
/// to create metadata claims the dir; the other is refused while it is open,
/// or switches the dir once it is closed.
#[test]
fn two_backends_opening_a_fresh_dir_at_once_never_make_two_caches() {
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let barrier = std::sync::Barrier::new(2);
        let opened: Vec<_> = std::thread::scope(|scope| {
            let openers: Vec<_> = ["json", "sqlite"]
                .into_iter()
                .map(|backend| {
                    let barrier = &barrier;
                    let dir = dir.path();
                    scope.spawn(move || {
                        barrier.wait();
                        config(dir, backend).open().map(|cache| (backend, cache))
                    })
                })
                .collect();
            openers
                .into_iter()
                .map(|opener| opener.join().unwrap())
                .collect()
        });
        let caches: Vec<_> = opened.into_iter().filter_map(Result::ok).collect();
        assert_eq!(caches.len(), 1, "exactly one backend claims the fresh dir");
        let (backend, cache) = &caches[0];
        cache
            .put(&key!(index = 1u32), &incompressible(1, 900))
            .unwrap();
        assert_eq!(
            cacheness::ops::detect_backend(dir.path()).unwrap(),
            Some(*backend)
        );
    }
}

/// The second review's case: a memory handle with blob files in a dir, then a
/// disk cache created there: the memory handle's gc took the disk cache's
/// blobs for orphans. A disk cache cannot be created while it is open.
#[test]
fn no_disk_cache_is_created_beside_an_open_memory_handle() {
    let dir = tempfile::tempdir().unwrap();
    let memory = config(dir.path(), "memory").open().unwrap();
    memory
        .put(&key!(index = 1u32), &incompressible(1, 900))
        .unwrap();
    let error = config(dir.path(), "sqlite").open().unwrap_err();
    assert!(error.to_string().contains("still has it open"), "{error}");
    assert!(!dir.path().join("cache_metadata.db").exists());
    drop(memory);
    drop(config(dir.path(), "sqlite").open().unwrap());
}

/// The second review's case: on a dir switched json -> sqlite, a planted (or
/// left over) `json -> sqlite` in-progress marker made the open redo the copy
/// from the stale json, dropping the entries written since.
#[test]
fn an_in_progress_marker_beside_its_own_done_marker_redoes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = config(dir.path(), "json").open().unwrap();
        cache
            .put(&key!(index = 1u32), &incompressible(1, 900))
            .unwrap();
    }
    {
        let cache = config(dir.path(), "sqlite").open().unwrap();
        cache
            .put(&key!(index = 2u32), &incompressible(2, 900))
            .unwrap();
    }
    std::fs::write(dir.path().join(".cacheness-migrating"), "json -> sqlite\n").unwrap();
    let cache = config(dir.path(), "sqlite").open().unwrap();
    for index in [1u32, 2] {
        assert_eq!(
            cache.get::<Vec<u8>>(&key!(index = index)).unwrap(),
            Some(incompressible(index, 900)),
            "entry {index}"
        );
    }
    assert!(!dir.path().join(".cacheness-migrating").exists());
}

/// Both metadata sets and no marker: a writable open with either backend is
/// refused (a handle of each would collect the other's blobs).
#[test]
fn two_metadata_sets_without_a_marker_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(config(dir.path(), "sqlite").open().unwrap());
    {
        let json = cacheness::backend::open_backend("json", Some(dir.path())).unwrap();
        let cache = cacheness::Cache::builder()
            .dir(dir.path())
            .open_shared(json)
            .unwrap();
        cache
            .put(&key!(index = 1u32), &incompressible(1, 900))
            .unwrap();
    }
    for backend in ["json", "sqlite"] {
        let error = config(dir.path(), backend).open().unwrap_err();
        assert!(
            error.to_string().contains("no marker says which"),
            "{backend}: {error}"
        );
    }
}
