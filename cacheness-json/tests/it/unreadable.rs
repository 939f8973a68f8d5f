//! Entries nested deeply: read from the journal as from the snapshot (up to
//! simd-json's depth limit, not serde_json's 128); past it, entries that
//! cannot be decoded never fail the open nor hide other entries, are reported
//! by `unreadable`, survive compaction as they were written, and go only when
//! removed or replaced.

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

use cacheness_core::conformance::{key_of, sample_entry};
use cacheness_core::{CacheKey, Entry, MetadataBackend, ScanFilter};
use cacheness_json::{JOURNAL_FILE, JsonBackend, SNAPSHOT_FILE};

use crate::support::append;

/// Parameters nested `depth` lists deep, as `Value` writes them in JSON.
fn deep_params(depth: usize) -> String {
    format!(
        "{{\"deep\":{}\"none\"{}}}",
        "{\"list\":[".repeat(depth),
        "]}".repeat(depth)
    )
}

/// User metadata nested `depth` objects deep.
fn deep_metadata(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

/// The JSON of `entry` with `field` replaced by the raw text `raw`.
fn entry_with_raw(entry: &Entry, field: &str, raw: &str) -> String {
    let mut value = serde_json::to_value(entry).unwrap();
    value.as_object_mut().unwrap().remove(field);
    let rest = serde_json::to_string(&value).unwrap();
    format!("{{\"{field}\":{raw},{}", &rest[1..])
}

fn unreadable(backend: &JsonBackend) -> Vec<(CacheKey, String)> {
    let mut found = Vec::new();
    backend
        .unreadable(&mut |key, reason| found.push((key, reason)))
        .unwrap();
    found
}

fn unreadable_keys(backend: &JsonBackend) -> Vec<CacheKey> {
    unreadable(backend)
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

fn sorted(mut keys: Vec<CacheKey>) -> Vec<CacheKey> {
    keys.sort();
    keys
}

fn scanned(backend: &JsonBackend) -> usize {
    let count = AtomicUsize::new(0);
    backend
        .scan(&ScanFilter::default(), &mut |_| {
            count.fetch_add(1, Ordering::Relaxed);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    count.into_inner()
}

/// Params nested this deep make JSON nested 1 200 deep: past simd-json's limit
/// (1 024), the deepest the snapshot reader reads.
const TOO_DEEP: usize = 600;

fn assert_readable(backend: &JsonBackend, indexes: &[u64]) {
    assert_eq!(backend.len().unwrap(), indexes.len() as u64);
    assert_eq!(scanned(backend), indexes.len());
    for &index in indexes {
        assert!(
            backend.get(&key_of(index)).unwrap().is_some(),
            "entry {index}"
        );
    }
}

/// The nesting serde_json refuses (its limit is 128; the cases were
/// params 70 deep and user metadata 200 deep) was dropped from the journal at
/// the next open; the snapshot reader read it. Both read it now.
#[test]
fn entries_nested_200_deep_are_read_from_the_journal_and_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let backend = JsonBackend::open(dir.path()).unwrap();
    backend.put(sample_entry(key_of(1), 1)).unwrap();
    let mut deep = sample_entry(key_of(2), 2);
    deep.params = None;
    let line = format!(
        "{{\"put\":{}}}\n",
        entry_with_raw(&deep, "params", &deep_params(200))
    );
    append(&dir.path().join(JOURNAL_FILE), &line);
    let deep_metadata_entry = sample_entry(key_of(3), 3);
    let line = format!(
        "{{\"put\":{}}}\n",
        entry_with_raw(&deep_metadata_entry, "user_metadata", &deep_metadata(200))
    );
    append(&dir.path().join(JOURNAL_FILE), &line);
    drop(backend);

    let reopened = JsonBackend::open(dir.path()).unwrap();
    assert_readable(&reopened, &[1, 2, 3]);
    assert!(unreadable(&reopened).is_empty());
    let read = reopened.get(&key_of(2)).unwrap().unwrap();
    let params = serde_json::to_string(&read.params).unwrap();
    assert_eq!(params, deep_params(200), "read whole");

    // In the snapshot, after compaction: the same.
    reopened.compact().unwrap();
    let compacted = JsonBackend::open(dir.path()).unwrap();
    assert_readable(&compacted, &[1, 2, 3]);
    assert_eq!(compacted.get(&key_of(2)).unwrap(), Some(read));
}

#[test]
fn a_journal_put_too_deep_to_read_is_reported_kept_through_compaction_and_removable() {
    let dir = tempfile::tempdir().unwrap();
    let backend = JsonBackend::open(dir.path()).unwrap();
    for index in 1..=3 {
        backend.put(sample_entry(key_of(index), index)).unwrap();
    }
    // Another handle, open before the line is written: it follows it.
    let watcher = JsonBackend::open(dir.path()).unwrap();
    let mut deep = sample_entry(key_of(3), 3);
    deep.params = None;
    let deep_text = deep_params(TOO_DEEP);
    let line = format!(
        "{{\"put\":{}}}\n",
        entry_with_raw(&deep, "params", &deep_text)
    );
    append(&dir.path().join(JOURNAL_FILE), &line);
    // The entry written earlier under the key is replaced by the unreadable
    // line, not served.
    assert!(watcher.get(&key_of(3)).is_err());
    backend.put(sample_entry(key_of(4), 4)).unwrap();

    for handle in [&backend, &watcher, &JsonBackend::open(dir.path()).unwrap()] {
        assert_readable(handle, &[1, 2, 4]);
        let found = unreadable(handle);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, key_of(3));
        assert!(found[0].1.contains(JOURNAL_FILE), "{}", found[0].1);
        let error = handle.get(&key_of(3)).unwrap_err().to_string();
        assert!(error.contains(&key_of(3).to_string()), "{error}");
    }

    // Compaction keeps it, as written.
    backend.compact().unwrap();
    let snapshot = fs::read_to_string(dir.path().join(SNAPSHOT_FILE)).unwrap();
    assert!(
        snapshot.contains(&deep_text),
        "the raw entry is in the snapshot"
    );
    let reopened = JsonBackend::open(dir.path()).unwrap();
    assert_eq!(unreadable_keys(&reopened), vec![key_of(3)]);
    assert_readable(&reopened, &[1, 2, 4]);

    // Removed only when asked, then gone for everyone.
    assert!(reopened.remove_unreadable(&key_of(3)).unwrap());
    assert!(!reopened.remove_unreadable(&key_of(3)).unwrap());
    assert!(
        !reopened.remove_unreadable(&key_of(1)).unwrap(),
        "readable entries are not touched"
    );
    assert!(unreadable(&backend).is_empty());
    assert_readable(&backend, &[1, 2, 4]);
    reopened.compact().unwrap();
    let last = JsonBackend::open(dir.path()).unwrap();
    assert!(unreadable(&last).is_empty());
    assert_readable(&last, &[1, 2, 4]);
}

#[test]
fn snapshot_entries_too_deep_to_read_are_reported_kept_and_replaced_by_a_put() {
    let dir = tempfile::tempdir().unwrap();
    let backend = JsonBackend::open(dir.path()).unwrap();
    for index in 1..=3 {
        backend.put(sample_entry(key_of(index), index)).unwrap();
    }
    backend.compact().unwrap();
    drop(backend);

    let mut deep_params_entry = sample_entry(key_of(10), 10);
    deep_params_entry.params = None;
    let deep_metadata_entry = sample_entry(key_of(11), 11);
    let snapshot_path = dir.path().join(SNAPSHOT_FILE);
    let snapshot = fs::read_to_string(&snapshot_path).unwrap();
    let end = snapshot.rfind("\n  ]\n}").expect("the writer's layout");
    let edited = format!(
        "{},\n    {},\n    {}{}",
        &snapshot[..end],
        entry_with_raw(&deep_params_entry, "params", &deep_params(TOO_DEEP)),
        entry_with_raw(
            &deep_metadata_entry,
            "user_metadata",
            &deep_metadata(2 * TOO_DEEP)
        ),
        &snapshot[end..]
    );
    fs::write(&snapshot_path, &edited).unwrap();

    let backend = JsonBackend::open(dir.path()).unwrap();
    assert_readable(&backend, &[1, 2, 3]);
    assert_eq!(
        unreadable_keys(&backend),
        sorted(vec![key_of(10), key_of(11)])
    );
    for (_, reason) in unreadable(&backend) {
        assert!(reason.contains(SNAPSHOT_FILE), "{reason}");
    }
    assert!(
        !dir.path().join("metadata.json.corrupt").exists(),
        "not treated as a corrupted snapshot"
    );

    // Kept through compaction, parsed the same way afterwards.
    backend.compact().unwrap();
    let reopened = JsonBackend::open(dir.path()).unwrap();
    assert_eq!(
        unreadable_keys(&reopened),
        sorted(vec![key_of(10), key_of(11)])
    );
    assert_readable(&reopened, &[1, 2, 3]);

    // A new put of the key replaces it; a remove removes it.
    let fresh = sample_entry(key_of(10), 20);
    assert_eq!(reopened.put(fresh.clone()).unwrap(), None);
    assert_eq!(reopened.get(&key_of(10)).unwrap(), Some(fresh));
    assert_eq!(reopened.remove(&key_of(11)).unwrap(), None);
    assert!(unreadable(&reopened).is_empty());
    reopened.compact().unwrap();
    let last = JsonBackend::open(dir.path()).unwrap();
    assert!(unreadable(&last).is_empty());
    assert_readable(&last, &[1, 2, 3, 10]);
}

/// Text that does not even name a key cannot be reported under one: it is
/// logged, passed over, and not carried into the next snapshot.
#[test]
fn a_journal_line_without_a_key_is_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let backend = JsonBackend::open(dir.path()).unwrap();
    backend.put(sample_entry(key_of(1), 1)).unwrap();
    append(
        &dir.path().join(JOURNAL_FILE),
        format!("{{\"put\":{{\"kez\":{}}}}}\n", deep_params(TOO_DEEP)),
    );
    backend.put(sample_entry(key_of(2), 2)).unwrap();
    let reopened = JsonBackend::open(dir.path()).unwrap();
    assert_readable(&reopened, &[1, 2]);
    assert!(unreadable(&reopened).is_empty());
}

/// Not only depth: an entry with a field of the wrong type (another tool's, a
/// hand edit) is kept and reported the same way, in the snapshot and the journal.
#[test]
fn entries_with_a_field_of_the_wrong_type_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let backend = JsonBackend::open(dir.path()).unwrap();
    backend.put(sample_entry(key_of(1), 1)).unwrap();
    backend.compact().unwrap();
    drop(backend);
    let snapshot_path = dir.path().join(SNAPSHOT_FILE);
    let snapshot = fs::read_to_string(&snapshot_path).unwrap();
    let end = snapshot.rfind("\n  ]\n}").unwrap();
    let wrong = entry_with_raw(&sample_entry(key_of(2), 2), "created_at", "\"yesterday\"");
    fs::write(
        &snapshot_path,
        format!("{},\n    {wrong}{}", &snapshot[..end], &snapshot[end..]),
    )
    .unwrap();
    let wrong = entry_with_raw(&sample_entry(key_of(3), 3), "stored_size", "-1");
    append(
        &dir.path().join(JOURNAL_FILE),
        format!("{{\"put\":{wrong}}}\n"),
    );

    let reopened = JsonBackend::open(dir.path()).unwrap();
    assert_readable(&reopened, &[1]);
    assert_eq!(
        unreadable_keys(&reopened),
        sorted(vec![key_of(2), key_of(3)])
    );
    reopened.compact().unwrap();
    let compacted = JsonBackend::open(dir.path()).unwrap();
    assert_readable(&compacted, &[1]);
    assert_eq!(
        unreadable_keys(&compacted),
        sorted(vec![key_of(2), key_of(3)])
    );
}
