//! Crashes and damage: torn journal lines, lost or corrupted snapshots, newer
//! formats, hostile blob names, and a writer killed with SIGKILL.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cacheness_core::conformance::{blob_name_for, key_of, sample_entry};
use cacheness_core::{Cache, Location, MetadataBackend, key};
use cacheness_json::{JsonBackend, JsonError, JsonOptions};
use proptest::prelude::*;

use crate::support::{append, in_blob_files};

fn value(index: u64) -> String {
    format!("value {index} ").repeat(20)
}

fn open_cache(dir: &Path, options: &JsonOptions) -> Cache {
    let backend = JsonBackend::open_with(dir, options).expect("json backend opens");
    Cache::builder()
        .dir(dir)
        .open(backend)
        .expect("cache opens")
}

fn fill(dir: &Path, count: u64) {
    let cache = open_cache(dir, &in_blob_files());
    for index in 0..count {
        cache.put(&key!(recovery = index), &value(index)).unwrap();
    }
}

fn assert_all_present(dir: &Path, count: u64) {
    let cache = open_cache(dir, &in_blob_files());
    assert_eq!(cache.backend().len().unwrap(), count);
    for index in 0..count {
        assert_eq!(
            cache.get::<String>(&key!(recovery = index)).unwrap(),
            Some(value(index)),
            "entry {index}"
        );
    }
}

#[test]
fn a_torn_last_line_is_ignored_then_cut_off_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10);
    let journal = dir.path().join("metadata.journal");
    append(&journal, br#"{"put":{"key":"0123"#);
    assert_all_present(dir.path(), 10);
    let cache = open_cache(dir.path(), &in_blob_files());
    cache.put(&key!(recovery = 10u64), &value(10)).unwrap();
    drop(cache);
    let text = fs::read_to_string(&journal).unwrap();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("every line is whole");
    }
    assert_all_present(dir.path(), 11);
}

#[test]
fn a_missing_snapshot_is_rebuilt_from_the_blobs_and_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 30);
    fs::remove_file(dir.path().join("metadata.json")).unwrap();
    assert_all_present(dir.path(), 30);
    assert!(
        dir.path().join("metadata.json").exists(),
        "a new snapshot is written"
    );
}

#[test]
fn deleting_all_metadata_rebuilds_every_entry_from_the_blobs() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 30);
    // Compacted, removed and replaced entries too: only the newest blob per key counts.
    {
        let cache = open_cache(dir.path(), &in_blob_files());
        cache.put(&key!(recovery = 3u64), &value(3)).unwrap();
        cache.remove(&key!(recovery = 29u64)).unwrap();
        JsonBackend::open_with(dir.path(), &in_blob_files())
            .unwrap()
            .compact()
            .unwrap();
    }
    fs::remove_file(dir.path().join("metadata.json")).unwrap();
    fs::remove_file(dir.path().join("metadata.journal")).unwrap();
    assert_all_present(dir.path(), 29);
}

/// The rebuild at open only reads: a temp file of a writer that looks dead (its
/// pid is not running) stays, for the blob store's own collection to judge.
#[test]
fn the_rebuild_at_open_deletes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 5);
    let temp = dir
        .path()
        .join("tmp")
        .join("4294967294-0000000000000001.tmp");
    fs::write(&temp, b"a dead writer's half-written blob").unwrap();
    let before = all_files(dir.path());
    fs::remove_file(dir.path().join("metadata.json")).unwrap();
    fs::remove_file(dir.path().join("metadata.journal")).unwrap();

    let backend = JsonBackend::open_with(dir.path(), &in_blob_files()).unwrap();
    assert_eq!(backend.len().unwrap(), 5);
    let after = all_files(dir.path());
    let missing: Vec<_> = before.difference(&after).collect();
    assert!(missing.is_empty(), "the rebuild deleted {missing:?}");
}

fn all_files(dir: &Path) -> std::collections::BTreeSet<PathBuf> {
    let mut found = std::collections::BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for item in fs::read_dir(&at).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.insert(path);
            }
        }
    }
    found
}

/// A put in progress elsewhere has renamed its blob into place and not yet
/// committed; a rebuild in between makes an entry of that blob. The put's
/// commit must not report that entry as the one it replaced: the engine
/// deletes the blob of whatever `put` replaced, which would be the put's own.
#[test]
fn a_put_whose_blob_a_rebuild_already_found_does_not_replace_its_own_blob() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 3);
    let writer = JsonBackend::open_with(dir.path(), &in_blob_files()).unwrap();
    let key = key!(recovery = 1u64).key();
    let entry = writer.get(&key).unwrap().expect("filled");
    // The blob file without its entry: as between a put's rename and its commit.
    writer.remove(&key).unwrap();
    fs::remove_file(dir.path().join("metadata.json")).unwrap();
    fs::remove_file(dir.path().join("metadata.journal")).unwrap();
    let rebuilt = JsonBackend::open_with(dir.path(), &in_blob_files()).unwrap();
    assert_eq!(
        rebuilt
            .get(&key)
            .unwrap()
            .and_then(|found| found.blob_name().map(str::to_owned)),
        entry.blob_name().map(str::to_owned),
        "the rebuild found the uncommitted blob"
    );

    let replaced = writer.put(entry.clone()).unwrap();
    assert_eq!(
        replaced, None,
        "the rebuilt entry is the put itself, not an older one"
    );
    assert_eq!(writer.get(&key).unwrap(), Some(entry));
    drop((writer, rebuilt));
    assert_all_present(dir.path(), 3);
}

#[test]
fn a_corrupted_snapshot_is_kept_aside_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 20);
    JsonBackend::open_with(dir.path(), &in_blob_files())
        .unwrap()
        .compact()
        .unwrap();
    let snapshot = dir.path().join("metadata.json");
    let mut bytes = fs::read(&snapshot).unwrap();
    bytes.truncate(bytes.len() / 2);
    fs::write(&snapshot, &bytes).unwrap();
    assert_all_present(dir.path(), 20);
    assert_eq!(
        fs::read(dir.path().join("metadata.json.corrupt")).unwrap(),
        bytes,
        "the damaged file is kept for inspection"
    );
}

#[test]
fn metadata_of_a_newer_format_version_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 3);
    let snapshot = dir.path().join("metadata.json");
    let original = fs::read(&snapshot).unwrap();
    let newer_snapshot = br#"{"format_version": 7, "generation": 1, "tables": {}}"#;
    fs::write(&snapshot, newer_snapshot).unwrap();
    let error = JsonBackend::open_with(dir.path(), &in_blob_files()).unwrap_err();
    assert!(matches!(
        error,
        JsonError::NewerFormat {
            found: 7,
            supported: 1,
            ..
        }
    ));
    assert!(error.to_string().contains("format version 7"), "{error}");
    assert_eq!(
        fs::read(&snapshot).unwrap(),
        newer_snapshot,
        "a newer file is left untouched"
    );

    fs::write(&snapshot, &original).unwrap();
    let journal = dir.path().join("metadata.journal");
    let text = fs::read_to_string(&journal).unwrap();
    let newer = text.replacen("\"format_version\":1", "\"format_version\":2", 1);
    fs::write(&journal, newer).unwrap();
    let error = JsonBackend::open_with(dir.path(), &in_blob_files()).unwrap_err();
    assert!(
        matches!(error, JsonError::NewerFormat { found: 2, .. }),
        "{error}"
    );
}

#[test]
fn blob_names_outside_the_store_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let backend = JsonBackend::open_with(dir.path(), &in_blob_files()).unwrap();
    let good = sample_entry(key_of(1), 5);
    let mut bad = sample_entry(key_of(2), 5);
    bad.location = Location::Blob("../../../etc/passwd".into());
    assert!(backend.put(bad.clone()).is_err(), "put refuses it");
    backend.put(good.clone()).unwrap();
    backend.compact().unwrap();
    drop(backend);

    // Smuggle bad entries into the snapshot and the journal by hand.
    let snapshot = dir.path().join("metadata.json");
    let mut parsed: serde_json::Value =
        serde_json::from_slice(&fs::read(&snapshot).unwrap()).unwrap();
    let mut absolute = sample_entry(key_of(3), 5);
    absolute.location = Location::Blob("/etc/passwd".into());
    parsed["entries"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::to_value(&absolute).unwrap());
    fs::write(&snapshot, serde_json::to_vec_pretty(&parsed).unwrap()).unwrap();
    let line = serde_json::json!({ "put": bad });
    append(
        &dir.path().join("metadata.journal"),
        format!("{line}\n").as_bytes(),
    );

    let reopened = JsonBackend::open_with(dir.path(), &in_blob_files()).unwrap();
    assert_eq!(reopened.get(&good.key).unwrap().as_ref(), Some(&good));
    assert_eq!(reopened.get(&bad.key).unwrap(), None);
    assert_eq!(reopened.get(&absolute.key).unwrap(), None);
    assert_eq!(reopened.len().unwrap(), 1);
    // A well-formed name is fine.
    let mut blob = sample_entry(key_of(4), 5);
    blob.location = Location::Blob(blob_name_for(&blob.key, 9));
    reopened.put(blob).unwrap();
}

#[test]
fn old_and_expired_entries_are_never_dropped_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let backend = JsonBackend::open_with(dir.path(), &in_blob_files()).unwrap();
    let mut ancient = sample_entry(key_of(1), 0);
    ancient.accessed_at = 0;
    ancient.expires_at = None;
    let mut expired = sample_entry(key_of(2), 1);
    expired.expires_at = Some(2);
    backend.put(ancient.clone()).unwrap();
    backend.put(expired.clone()).unwrap();
    backend.compact().unwrap();
    drop(backend);
    let reopened = JsonBackend::open_with(dir.path(), &in_blob_files()).unwrap();
    assert_eq!(reopened.get(&ancient.key).unwrap(), Some(ancient));
    assert_eq!(reopened.get(&expired.key).unwrap(), Some(expired));
}

#[test]
fn a_fresh_dir_gets_a_readable_empty_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let backend = JsonBackend::open(&dir.path().join("new")).unwrap();
    assert!(backend.is_empty().unwrap());
    let text = fs::read_to_string(backend.snapshot_path()).unwrap();
    assert!(text.starts_with("{\n  \"format_version\": 1,"), "{text}");
}

const KILL_ROLE: &str = "CACHENESS_JSON_KILL_CHILD";
/// Set for a child whose values are inline; else they are blob files.
const KILL_INLINE: &str = "CACHENESS_JSON_KILL_INLINE";

fn compacting_often(inline: bool) -> JsonOptions {
    JsonOptions {
        compaction_min_bytes: 2048,
        compaction_ratio: 0.05,
        ..match inline {
            true => JsonOptions::default(),
            false => in_blob_files(),
        }
    }
}

/// The child of the SIGKILL test: puts until killed, reporting each finished put.
#[test]
fn kill_child_role() {
    let Ok(dir) = std::env::var(KILL_ROLE) else {
        return;
    };
    let inline = std::env::var_os(KILL_INLINE).is_some();
    let cache = open_cache(Path::new(&dir), &compacting_often(inline));
    let mut stdout = std::io::stdout().lock();
    for index in 0u64.. {
        cache.put(&key!(recovery = index), &value(index)).unwrap();
        writeln!(stdout, "put {index}").unwrap();
        stdout.flush().unwrap();
    }
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|item| item.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "tmp"))
        .collect();
    if let Ok(tmp) = fs::read_dir(dir.join("tmp")) {
        found.extend(tmp.flatten().map(|item| item.path()));
    }
    found
}

#[test]
fn a_writer_killed_mid_stream_leaves_a_consistent_cache() {
    let exe = std::env::current_exe().unwrap();
    // Values in blob files, then inline in the journal (the default).
    for (inline, kill_after) in [false, true]
        .into_iter()
        .flat_map(|inline| [40u64, 150, 400].map(|kill_after| (inline, kill_after)))
    {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(&exe);
        command
            .args([
                "recovery::kill_child_role",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(KILL_ROLE, dir.path())
            .stdout(Stdio::piped());
        if inline {
            command.env(KILL_INLINE, "1");
        }
        let mut child = command.spawn().unwrap();
        // Every line the child wrote is read, also those still in the pipe when
        // it is killed: the child may be several puts ahead of this reader, so
        // the last line it wrote, not the one that triggered the kill, bounds
        // what it finished.
        let mut reported = None;
        let mut killed = false;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let Ok(line) = line else { break };
            if let Some(index) = line.strip_prefix("put ") {
                let index: u64 = index.parse().unwrap();
                reported = Some(index);
                if index >= kill_after && !killed {
                    child.kill().unwrap();
                    killed = true;
                }
            }
        }
        child.wait().unwrap();
        let reported = reported.expect("the child reported puts");

        let cache = open_cache(dir.path(), &compacting_often(inline));
        // A blob temp file goes by age now (an hour), not by its writer's pid:
        // the writer is dead, so a zero grace collects what it left.
        cache
            .gc_with(
                &cacheness_core::GcOptions::new().grace(std::time::Duration::ZERO),
                &mut cacheness_core::ops::no_progress,
            )
            .unwrap();
        assert!(
            temp_files(dir.path()).is_empty(),
            "{:?}",
            temp_files(dir.path())
        );
        for index in 0..=reported {
            assert_eq!(
                cache.get::<String>(&key!(recovery = index)).unwrap(),
                Some(value(index)),
                "a finished put survives the kill (killed after {kill_after}, inline {inline})"
            );
        }
        // At most the put in flight is beyond what was reported, with the right bytes.
        let count = cache.backend().len().unwrap();
        assert!(
            count == reported + 1 || count == reported + 2,
            "{count} entries"
        );
        if count == reported + 2 {
            assert_eq!(
                cache.get::<String>(&key!(recovery = reported + 1)).unwrap(),
                Some(value(reported + 1))
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn garbage_metadata_files_never_panic(
        snapshot in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        journal_line in proptest::collection::vec(any::<u8>(), 0..300),
        valid_header in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 2);
        if let Some(snapshot) = &snapshot {
            fs::write(dir.path().join("metadata.json"), snapshot).unwrap();
        }
        let journal = dir.path().join("metadata.journal");
        if !valid_header {
            fs::write(&journal, b"").unwrap();
        }
        append(&journal, &journal_line);
        append(&journal, b"\n");
        // Ok or a clear error, never a panic; when it opens, the blobs' entries are there.
        if let Ok(backend) = JsonBackend::open_with(dir.path(), &in_blob_files()) {
            let _ = backend.len();
            if snapshot.is_some() && backend.len().unwrap() < 2 {
                prop_assert!(false, "entries lost after damage: {}", backend.len().unwrap());
            }
        }
    }
}

/// The cache dir removed and made again (empty) under an open backend: the
/// handle notices, starts from the new dir's (missing) metadata, and writes
/// there.
#[test]
fn a_cache_dir_made_again_under_an_open_backend_is_followed() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("cache");
    let backend = JsonBackend::open_with(&dir, &in_blob_files()).unwrap();
    backend.put(sample_entry(key_of(1), 1)).unwrap();

    fs::remove_dir_all(&dir).unwrap();
    fs::create_dir(&dir).unwrap();
    assert_eq!(backend.get(&key_of(1)).unwrap(), None);
    let (second, third) = (sample_entry(key_of(2), 2), sample_entry(key_of(3), 3));
    backend.put(second.clone()).unwrap();
    backend.put(third.clone()).unwrap();
    assert_eq!(backend.get(&key_of(2)).unwrap(), Some(second));

    // What it wrote is in the new dir, for another handle to find.
    let other = JsonBackend::open_with(&dir, &in_blob_files()).unwrap();
    assert_eq!(other.len().unwrap(), 2);
    assert_eq!(other.get(&key_of(3)).unwrap(), Some(third));
    // And the first handle sees the other's writes there.
    let fourth = sample_entry(key_of(4), 4);
    other.put(fourth.clone()).unwrap();
    assert_eq!(backend.get(&key_of(4)).unwrap(), Some(fourth));
}

/// The same through the engine: its blob store makes its temp dir again in the
/// new dir, so values written after the dir was made again are stored there,
/// whole, and a cache opened on the new dir reads them.
#[test]
fn a_cache_dir_made_again_under_an_open_cache_takes_new_values() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("cache");
    let open = || open_cache(&dir, &in_blob_files());
    let cache = open();
    cache.put(&key!(n = 1), &"before").unwrap();

    fs::remove_dir_all(&dir).unwrap();
    fs::create_dir(&dir).unwrap();
    assert_eq!(cache.get::<String>(&key!(n = 1)).unwrap(), None);
    cache.put(&key!(n = 2), &"after").unwrap();
    assert_eq!(
        cache.get::<String>(&key!(n = 2)).unwrap().as_deref(),
        Some("after")
    );

    let other = open();
    assert_eq!(
        other.get::<String>(&key!(n = 2)).unwrap().as_deref(),
        Some("after")
    );
    assert!(other.verify(false, &mut |_| {}).unwrap().is_clean());
}

#[test]
fn a_rebuild_recovers_blob_values_and_loses_inline_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open_cache(dir.path(), &JsonOptions::default());
    // Too large to be inline even compressed: digits of a generator.
    let mut state = 7u64;
    let large: String = (0..10_000)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            char::from(b'0' + (state >> 60) as u8 % 10)
        })
        .collect();
    for index in 0..10u64 {
        cache.put(&key!(small = index), &index).unwrap();
        cache.put(&key!(large = index), &large).unwrap();
    }
    drop(cache);
    JsonBackend::open(dir.path()).unwrap().compact().unwrap();
    let snapshot = dir.path().join("metadata.json");
    let mut bytes = fs::read(&snapshot).unwrap();
    bytes.truncate(bytes.len() - 10);
    fs::write(&snapshot, &bytes).unwrap();
    let cache = open_cache(dir.path(), &JsonOptions::default());
    for index in 0..10u64 {
        assert_eq!(
            cache.get::<String>(&key!(large = index)).unwrap().as_ref(),
            Some(&large)
        );
        assert_eq!(
            cache.get::<u64>(&key!(small = index)).unwrap(),
            None,
            "inline: lost"
        );
    }
}
