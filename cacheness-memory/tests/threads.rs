//! Eight threads hammering one cache over the memory backend: no lost update, no
//! stray blob.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use cacheness_core::{Cache, key};
use cacheness_memory::MemoryBackend;

const THREADS: u64 = 8;
const ROUNDS: u64 = 200;

fn blob_files(dir: &Path) -> HashSet<String> {
    let mut names = HashSet::new();
    for shard in fs::read_dir(dir.join("blobs")).unwrap().flatten() {
        for file in fs::read_dir(shard.path()).unwrap().flatten() {
            names.insert(format!(
                "{}/{}",
                shard.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            ));
        }
    }
    names
}

#[test]
fn eight_threads_lose_no_update_and_leave_no_stray_blob() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(
        Cache::builder()
            .dir(dir.path())
            .inline_threshold(64)
            .open(MemoryBackend::new())
            .unwrap(),
    );
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let cache = Arc::clone(&cache);
            scope.spawn(move || {
                for round in 0..ROUNDS {
                    // Own keys: every write must survive. Values alternate between
                    // inline and blob sizes so both paths race.
                    let own = key!(thread = thread, round = round);
                    let size = if round % 2 == 0 { 16 } else { 512 };
                    let value = vec![(thread * ROUNDS + round) as u8; size];
                    cache.put_bytes(&own, &value).unwrap();
                    assert_eq!(cache.get_bytes(&own).unwrap(), Some(value));
                    // Shared keys: every thread overwrites the same ten keys.
                    let shared = key!(shared = round % 10);
                    let shared_value = format!("{thread}:{round}:{}", "x".repeat(300));
                    cache.put(&shared, &shared_value).unwrap();
                    let read: String = cache
                        .get(&shared)
                        .unwrap()
                        .expect("a shared key stays present");
                    assert!(
                        read.ends_with(&"x".repeat(300)),
                        "a whole value, never a mix"
                    );
                }
            });
        }
    });
    for thread in 0..THREADS {
        for round in 0..ROUNDS {
            let size = if round % 2 == 0 { 16 } else { 512 };
            let expected = vec![(thread * ROUNDS + round) as u8; size];
            assert_eq!(
                cache
                    .get_bytes(&key!(thread = thread, round = round))
                    .unwrap(),
                Some(expected)
            );
        }
    }
    let entries = cache.list(&Default::default()).unwrap();
    assert_eq!(entries.len() as u64, THREADS * ROUNDS + 10);
    let referenced: HashSet<String> = entries
        .iter()
        .filter_map(|entry| entry.blob_name().map(str::to_owned))
        .collect();
    assert_eq!(
        blob_files(dir.path()),
        referenced,
        "every blob file belongs to exactly one entry"
    );
    assert_eq!(
        fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0,
        "no temp file left"
    );
}
