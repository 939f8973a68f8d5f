//! Values up to the cache's `inline_threshold` live in the journal line and
//! the snapshot by default; larger ones in blob files. What that changes for
//! a rebuild (inline values have no file: how many are lost is reported),
//! gc, verify, signing, the memory layer, and journal lines written by hand.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cacheness_core::ops::{InlineLoss, no_progress};
use cacheness_core::{
    Cache, ContentHash, GcOptions, Location, MetadataBackend, VerifyOptions, VerifyReport, key,
};
use cacheness_json::{JOURNAL_FILE, JsonBackend, JsonOptions, SNAPSHOT_FILE};
use cacheness_memlayer::{MemLayer, MemLayerConfig};

use crate::support::{append, in_blob_files};

/// Bytes that lz4 cannot shrink, so they are stored as they are: hashes of
/// the seed and a counter, one after the other.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    (0u64..)
        .flat_map(|block| ContentHash::of(&[seed.to_le_bytes(), block.to_le_bytes()].concat()).0)
        .take(len)
        .collect()
}

/// A value that fits under the default inline threshold (4 KiB).
fn small(index: u64) -> Vec<u8> {
    noise(200, index)
}

/// A value over the default inline threshold.
fn large(index: u64) -> Vec<u8> {
    noise(10_000, 1_000 + index)
}

fn open_cache(dir: &Path) -> Cache {
    Cache::builder()
        .dir(dir)
        .open(JsonBackend::open(dir).expect("json backend opens"))
        .expect("cache opens")
}

/// `inline` small values (`key!(inline = i)`) and `blobs` large ones
/// (`key!(blob = i)`), through a cache with the default options.
fn fill(dir: &Path, inline: u64, blobs: u64) {
    let cache = open_cache(dir);
    for index in 0..inline {
        cache
            .put_bytes(&key!(inline = index), &small(index))
            .unwrap();
    }
    for index in 0..blobs {
        cache.put_bytes(&key!(blob = index), &large(index)).unwrap();
    }
}

fn blob_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(shards) = fs::read_dir(dir.join("blobs")) else {
        return files;
    };
    for shard in shards.flatten() {
        files.extend(
            fs::read_dir(shard.path())
                .unwrap()
                .flatten()
                .map(|file| file.path()),
        );
    }
    files
}

/// The journal's lines, parsed.
fn journal_lines(dir: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(dir.join(JOURNAL_FILE))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn small_values_are_inline_by_default_and_large_ones_blob_files() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open_cache(dir.path());
    cache.put_bytes(&key!(size = "small"), &small(1)).unwrap();
    let small_entry = cache.entry(&key!(size = "small")).unwrap().unwrap();
    assert!(
        matches!(&small_entry.location, Location::Inline(bytes) if *bytes == small(1)),
        "{:?}",
        small_entry.location
    );
    assert!(blob_files(dir.path()).is_empty(), "no blob file for it");
    let put = journal_lines(dir.path()).pop().unwrap();
    assert!(
        put["put"]["location"]["inline"].is_string(),
        "the bytes are in the journal line: {put}"
    );

    cache.put_bytes(&key!(size = "large"), &large(1)).unwrap();
    let large_entry = cache.entry(&key!(size = "large")).unwrap().unwrap();
    assert!(large_entry.blob_name().is_some());
    assert_eq!(blob_files(dir.path()).len(), 1);
    drop(cache);

    // The snapshot carries them after a compaction, and a new handle reads them.
    JsonBackend::open(dir.path()).unwrap().compact().unwrap();
    let snapshot = fs::read_to_string(dir.path().join(SNAPSHOT_FILE)).unwrap();
    assert!(snapshot.contains("\"inline\""), "{snapshot}");
    let cache = open_cache(dir.path());
    assert_eq!(
        cache.get_bytes(&key!(size = "small")).unwrap(),
        Some(small(1))
    );
    assert_eq!(
        cache.get_bytes(&key!(size = "large")).unwrap(),
        Some(large(1))
    );
    assert!(cache.verify(false, &mut no_progress).unwrap().is_clean());
}

#[test]
fn inline_values_off_puts_every_value_in_a_blob_file() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .dir(dir.path())
        .open(JsonBackend::open_with(dir.path(), &in_blob_files()).unwrap())
        .unwrap();
    cache.put_bytes(&key!(size = "small"), &small(1)).unwrap();
    let entry = cache.entry(&key!(size = "small")).unwrap().unwrap();
    assert!(entry.blob_name().is_some(), "{:?}", entry.location);
    assert_eq!(blob_files(dir.path()).len(), 1);
    // And the option is what a config file says.
    let options: JsonOptions = serde_json::from_str(r#"{ "inline_values": false }"#).unwrap();
    assert_eq!(options, in_blob_files());
    assert!(JsonOptions::default().inline_values);
}

/// Removes both metadata files: the metadata is gone entirely.
fn remove_metadata(dir: &Path) {
    fs::remove_file(dir.join(SNAPSHOT_FILE)).unwrap();
    fs::remove_file(dir.join(JOURNAL_FILE)).unwrap();
}

#[test]
fn lost_metadata_is_rebuilt_from_the_blob_files_and_says_inline_values_are_not_recoverable() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 5, 3);
    remove_metadata(dir.path());

    let backend = JsonBackend::open(dir.path()).unwrap();
    assert_eq!(
        backend.len().unwrap(),
        3,
        "the blob-file values are rebuilt"
    );
    assert_eq!(backend.inline_lost(), InlineLoss::new(0, true));
    let cache = Cache::builder().dir(dir.path()).open(backend).unwrap();
    for index in 0..3 {
        assert_eq!(
            cache.get_bytes(&key!(blob = index)).unwrap(),
            Some(large(index))
        );
    }
    assert_eq!(cache.get_bytes(&key!(inline = 0u64)).unwrap(), None);
    let report = cache.rebuild(&mut no_progress).unwrap();
    assert_eq!(report.present, 3);
    assert_eq!(report.inline_lost, InlineLoss::new(0, true));
    assert!(
        report
            .inline_lost
            .to_string()
            .contains("if there were any, cannot be recovered"),
        "{}",
        report.inline_lost
    );
    drop(cache);

    // The loss was this handle's repair; the next open finds metadata intact.
    assert!(
        JsonBackend::open(dir.path())
            .unwrap()
            .inline_lost()
            .is_none()
    );
}

#[test]
fn a_new_or_intact_cache_lost_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        JsonBackend::open(dir.path())
            .unwrap()
            .inline_lost()
            .is_none()
    );
    fill(dir.path(), 3, 1);
    let cache = open_cache(dir.path());
    let report = cache.rebuild(&mut no_progress).unwrap();
    assert!(report.inline_lost.is_none(), "{:?}", report.inline_lost);
    assert_eq!(report.inline_lost.to_string(), "");
}

#[test]
fn a_lost_snapshot_loses_its_inline_values_but_not_the_journals() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 4, 1);
    JsonBackend::open(dir.path()).unwrap().compact().unwrap();
    {
        // After the compaction: only in the journal.
        let cache = open_cache(dir.path());
        cache.put_bytes(&key!(later = 1), &small(101)).unwrap();
        cache.put_bytes(&key!(later = 2), &small(102)).unwrap();
    }
    fs::remove_file(dir.path().join(SNAPSHOT_FILE)).unwrap();

    let backend = JsonBackend::open(dir.path()).unwrap();
    assert_eq!(backend.inline_lost(), InlineLoss::new(0, true));
    let cache = Cache::builder().dir(dir.path()).open(backend).unwrap();
    assert_eq!(
        cache.backend().len().unwrap(),
        3,
        "the blob and the journal's two"
    );
    assert_eq!(cache.get_bytes(&key!(later = 2)).unwrap(), Some(small(102)));
    assert_eq!(cache.get_bytes(&key!(blob = 0u64)).unwrap(), Some(large(0)));
}

/// Compacts `dir` and returns the snapshot's text and how many entries it
/// holds inline among the first `first` (in the snapshot's order).
fn compacted_snapshot(dir: &Path, first: usize) -> (String, usize) {
    JsonBackend::open(dir).unwrap().compact().unwrap();
    let text = fs::read_to_string(dir.join(SNAPSHOT_FILE)).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    let inline = parsed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .take(first)
        .filter(|entry| entry["location"].get("inline").is_some())
        .count();
    (text, inline)
}

#[test]
fn a_damaged_snapshot_counts_the_inline_entries_it_names_that_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 6, 3);
    let (text, inline) = compacted_snapshot(dir.path(), usize::MAX);
    assert_eq!(inline, 6);
    // Damage outside the entries: the file is no longer JSON, every entry is.
    let damaged = text.replacen("\"generation\": ", "\"generation\": x", 1);
    assert_ne!(damaged, text);
    fs::write(dir.path().join(SNAPSHOT_FILE), damaged).unwrap();

    let backend = JsonBackend::open(dir.path()).unwrap();
    assert_eq!(
        backend.len().unwrap(),
        3,
        "the blob-file values are rebuilt"
    );
    assert_eq!(backend.inline_lost(), InlineLoss::new(6, false));
    let cache = Cache::builder().dir(dir.path()).open(backend).unwrap();
    let report = cache.rebuild(&mut no_progress).unwrap();
    assert_eq!((report.restored, report.present), (0, 3));
    assert_eq!(report.inline_lost, InlineLoss::new(6, false));
    assert_eq!(
        report.inline_lost.to_string(),
        "6 entries stored inline in the damaged metadata could not be recovered \
         (no blob file holds them)"
    );
}

#[test]
fn a_truncated_snapshot_counts_what_it_still_names_and_says_more_may_be_lost() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 6, 3);
    let (text, inline_in_first_four) = compacted_snapshot(dir.path(), 4);
    // Cut inside the fifth entry: four entries are whole.
    let fifth = text.match_indices("\n    {").nth(4).unwrap().0;
    fs::write(dir.path().join(SNAPSHOT_FILE), &text[..fifth + 40]).unwrap();

    let backend = JsonBackend::open(dir.path()).unwrap();
    assert_eq!(backend.len().unwrap(), 3);
    assert_eq!(
        backend.inline_lost(),
        InlineLoss::new(inline_in_first_four as u64, true)
    );
    assert!(
        dir.path().join("metadata.json.corrupt").exists(),
        "the damaged snapshot is kept"
    );
}

#[test]
fn a_journal_without_its_header_counts_the_snapshots_inline_entries_that_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 5, 2);
    JsonBackend::open(dir.path()).unwrap().compact().unwrap();
    fs::write(dir.path().join(JOURNAL_FILE), "not a header\n").unwrap();

    let backend = JsonBackend::open(dir.path()).unwrap();
    assert_eq!(backend.len().unwrap(), 2);
    assert_eq!(backend.inline_lost(), InlineLoss::new(5, false));
}

#[test]
fn a_read_only_open_of_lost_metadata_reports_the_loss_too() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 2, 2);
    remove_metadata(dir.path());
    let backend = JsonBackend::open_read_only(dir.path(), &JsonOptions::default()).unwrap();
    assert_eq!(backend.len().unwrap(), 2);
    assert_eq!(backend.inline_lost(), InlineLoss::new(0, true));
}

#[test]
fn a_memory_layer_over_json_serves_inline_values_and_sees_other_handles_replace_them() {
    let dir = tempfile::tempdir().unwrap();
    let layered = |dir: &Path| {
        let backend =
            MemLayer::new(JsonBackend::open(dir).unwrap(), MemLayerConfig::default()).unwrap();
        Cache::builder().dir(dir).open(backend).unwrap()
    };
    let (first, second) = (layered(dir.path()), layered(dir.path()));
    first.put_bytes(&key!(layer = 1), &small(1)).unwrap();
    for _ in 0..3 {
        assert_eq!(second.get_bytes(&key!(layer = 1)).unwrap(), Some(small(1)));
    }
    let entry = second.entry(&key!(layer = 1)).unwrap().unwrap();
    assert!(matches!(entry.location, Location::Inline(_)));
    assert!(second.backend().layer_stats().unwrap().hits >= 2);

    first.put_bytes(&key!(layer = 1), &small(2)).unwrap();
    assert_eq!(
        second.get_bytes(&key!(layer = 1)).unwrap(),
        Some(small(2)),
        "the other handle's inline value, not the layer's copy"
    );
    assert!(blob_files(dir.path()).is_empty());
}

#[test]
fn gc_collects_an_old_blob_of_a_key_now_held_inline_and_keeps_the_inline_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open_cache(dir.path());
    let key = key!(gc = 1);
    cache.put_bytes(&key, &large(1)).unwrap();
    let old_blob = cache
        .blob_path(&cache.entry(&key).unwrap().unwrap())
        .unwrap();
    // The entry goes without its file (as after a crash between the two)...
    cache.backend().remove(&key.key()).unwrap();
    // ...and the key is stored again, inline.
    cache.put_bytes(&key, &small(2)).unwrap();
    assert!(old_blob.exists());

    // No writer elsewhere: any blob file without an entry is an orphan.
    let verify = || -> VerifyReport {
        let options = VerifyOptions::new().grace(Duration::ZERO);
        cache.verify_with(&options, &mut no_progress).unwrap()
    };
    let verified = verify();
    assert_eq!(verified.orphaned.len(), 1, "{verified:?}");
    assert!(verified.corrupted.is_empty() && verified.missing.is_empty());
    let report = cache
        .gc_with(&GcOptions::new().grace(Duration::ZERO), &mut no_progress)
        .unwrap();
    assert_eq!(report.orphaned_blobs, 1);
    assert!(!old_blob.exists());
    assert_eq!(cache.get_bytes(&key).unwrap(), Some(small(2)));
    assert!(verify().is_clean());
}

/// Rewrites the last `put` line of the journal with `edit`.
fn edit_last_put(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut lines = journal_lines(dir);
    let last = lines
        .iter_mut()
        .rev()
        .find(|line| line.get("put").is_some())
        .unwrap();
    edit(&mut last["put"]);
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    fs::write(dir.join(JOURNAL_FILE), text).unwrap();
}

fn base64(bytes: &[u8]) -> serde_json::Value {
    serde_json::to_value(Location::Inline(bytes.to_vec())).unwrap()["inline"].clone()
}

fn content_hash(bytes: &[u8]) -> serde_json::Value {
    serde_json::to_value(ContentHash::of(bytes)).unwrap()
}

#[test]
fn verify_reports_and_repair_removes_an_inline_value_changed_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 3, 0);
    edit_last_put(dir.path(), |put| {
        put["location"]["inline"] = base64(&small(99))
    });
    let cache = open_cache(dir.path());
    let report = cache.verify(false, &mut no_progress).unwrap();
    assert_eq!(report.corrupted, vec![key!(inline = 2u64).key()]);
    let repaired = cache.verify(true, &mut no_progress).unwrap();
    assert!(repaired.repaired);
    assert_eq!(cache.backend().len().unwrap(), 2);
    assert!(cache.verify(false, &mut no_progress).unwrap().is_clean());
}

#[test]
fn a_signature_covers_inline_bytes_rewritten_with_their_hash() {
    let dir = tempfile::tempdir().unwrap();
    let signed = |dir: &Path| {
        Cache::builder()
            .dir(dir)
            .signing_key([7; 32])
            .open(JsonBackend::open(dir).unwrap())
            .unwrap()
    };
    let cache = signed(dir.path());
    cache.put_bytes(&key!(signed = 1), &small(1)).unwrap();
    cache.put_bytes(&key!(signed = 2), &small(2)).unwrap();
    assert!(
        cache
            .entry(&key!(signed = 2))
            .unwrap()
            .unwrap()
            .signature
            .is_some()
    );
    drop(cache);
    // Other bytes of the same length, with their own hash: only the signature
    // can tell.
    edit_last_put(dir.path(), |put| {
        put["location"]["inline"] = base64(&small(99));
        put["content_hash"] = content_hash(&small(99));
    });

    let cache = signed(dir.path());
    assert_eq!(cache.get_bytes(&key!(signed = 1)).unwrap(), Some(small(1)));
    assert_eq!(
        cache.get_bytes(&key!(signed = 2)).unwrap(),
        None,
        "refused, not served"
    );
    let report = cache.verify(false, &mut no_progress).unwrap();
    assert_eq!(report.corrupted, vec![key!(signed = 2).key()]);
}

/// A journal line written by hand: the line of a real put of
/// `key!(hostile = index)`, changed by `edit`.
fn hostile_put(dir: &Path, index: u64, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let cache = open_cache(dir);
    cache
        .put_bytes(&key!(hostile = index), &small(index))
        .unwrap();
    drop(cache);
    let mut put = journal_lines(dir).pop().unwrap();
    edit(&mut put["put"]);
    format!("{put}\n")
}

#[test]
fn a_journal_line_with_a_malformed_inline_value_is_an_unreadable_entry_not_a_failure() {
    for malformed in [
        serde_json::json!("%%% not base64 %%%"),
        serde_json::json!(12),
        serde_json::json!({ "nested": [1, 2] }),
    ] {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 2, 1);
        let line = hostile_put(dir.path(), 7, |put| {
            put["location"]["inline"] = malformed.clone()
        });
        append(&dir.path().join(JOURNAL_FILE), &line);

        let backend = JsonBackend::open(dir.path()).unwrap();
        let key = key!(hostile = 7u64).key();
        let error = backend.get(&key).unwrap_err().to_string();
        assert!(error.contains(&key.to_string()), "{error}");
        let mut unreadable = Vec::new();
        backend
            .unreadable(&mut |key, reason| unreadable.push((key, reason)))
            .unwrap();
        assert_eq!(unreadable.len(), 1, "{malformed}: {unreadable:?}");
        assert_eq!(unreadable[0].0, key);
        let cache = Cache::builder().dir(dir.path()).open(backend).unwrap();
        assert_eq!(
            cache.get_bytes(&key!(inline = 1u64)).unwrap(),
            Some(small(1))
        );
        assert_eq!(cache.get_bytes(&key!(blob = 0u64)).unwrap(), Some(large(0)));
        let repaired = cache.verify(true, &mut no_progress).unwrap();
        assert_eq!(repaired.unreadable.len(), 1);
        assert!(matches!(
            JsonBackend::open(dir.path()).unwrap().get(&key),
            Ok(None)
        ));
    }
}

#[test]
fn a_journal_line_with_hostile_inline_sizes_is_a_miss_without_a_huge_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let line = hostile_put(dir.path(), 1, |put| {
        // Three bytes claiming to decompress to 2^64 - 1.
        put["location"]["inline"] = base64(b"abc");
        put["content_hash"] = content_hash(b"abc");
        put["stored_size"] = serde_json::json!(3);
        put["raw_size"] = serde_json::json!(u64::MAX);
        put["compression"] = serde_json::json!("lz4");
    });
    append(&dir.path().join(JOURNAL_FILE), &line);
    let line = hostile_put(dir.path(), 2, |put| {
        // Bytes that are not the ones hashed, and a size that lies.
        put["location"]["inline"] = base64(&small(50));
        put["stored_size"] = serde_json::json!(u64::MAX);
    });
    append(&dir.path().join(JOURNAL_FILE), &line);

    let cache = open_cache(dir.path());
    assert_eq!(cache.get_bytes(&key!(hostile = 1u64)).unwrap(), None);
    assert_eq!(cache.get_bytes(&key!(hostile = 2u64)).unwrap(), None);
    assert_eq!(
        cache.backend().len().unwrap(),
        0,
        "damaged entries are removed"
    );
}

#[test]
fn a_large_inline_value_written_by_hand_is_read_as_written() {
    // Larger than the threshold the cache is opened with: the backend keeps
    // what the line holds (its allocation is the line's size), the engine
    // checks it against its hash.
    let dir = tempfile::tempdir().unwrap();
    let value = noise(3 << 20, 5);
    let line = hostile_put(dir.path(), 1, |put| {
        put["location"]["inline"] = base64(&value);
        put["content_hash"] = content_hash(&value);
        put["stored_size"] = serde_json::json!(value.len());
        put["raw_size"] = serde_json::json!(value.len());
    });
    append(&dir.path().join(JOURNAL_FILE), &line);
    let cache = open_cache(dir.path());
    assert_eq!(cache.get_bytes(&key!(hostile = 1u64)).unwrap(), Some(value));
}
