//! Migration between backends: every pair keeps the same entries, bytes and expiry
//! times; opening a dir with the other disk backend's metadata migrates once; a
//! migration killed half way is finished by the next open.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cacheness::{
    Cache, CacheConfig, LocalBlobStore, ManualClock, MetadataBackend, PutOptions, key, migrate,
    no_progress,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const BACKENDS: [&str; 4] = ["memory", "json", "sqlite", "sqlite-memory"];

fn backend(name: &str, dir: &Path) -> Arc<dyn MetadataBackend> {
    CacheConfig {
        dir: Some(dir.to_path_buf()),
        backend: name.to_owned(),
        ..CacheConfig::default()
    }
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
    CacheConfig {
        dir: Some(dir.to_path_buf()),
        backend: backend.to_owned(),
        inline_threshold: 64,
        ..CacheConfig::default()
    }
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
    // Both exist now: the configured backend wins and the other is left alone.
    let json_again = config(dir.path(), "json").open().unwrap();
    assert_eq!(
        json_again.stats().unwrap().entries,
        300,
        "no second migration into json"
    );
    drop(json_again);
    let sqlite_again = config(dir.path(), "sqlite").open().unwrap();
    assert_eq!(sqlite_again.stats().unwrap().entries, 301);

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
