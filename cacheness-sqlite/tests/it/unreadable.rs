//! Rows the backend cannot read back as entries (written here with raw SQL:
//! JSON nested past serde_json's limit, JSON that does not parse, a column of
//! the wrong type) never block the rest of the cache: listings and sweeps pass
//! over them, `get` of such a key fails naming it, removals and `clear` work on
//! them without decoding them, and `unreadable` reports them for `verify`.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::Path;

use cacheness_core::EvictionPolicy;
use cacheness_core::conformance::{key_of, sample_entry};
use cacheness_core::{AccessBatch, CacheKey, Entry, MetadataBackend, ScanFilter, Touch};
use cacheness_sqlite::{DB_FILE_NAME, SqliteBackend};
use rusqlite::Connection;

/// Entries 0..GOOD stay readable; the damaged ones are GOOD.. (one per kind).
const GOOD: u64 = 300;

/// `{"list":[...]}` nested `depth` deep: a `Value::List` as serde writes it.
fn nested_list(depth: usize) -> String {
    format!("{}{}", r#"{"list":["#.repeat(depth), "]}".repeat(depth))
}

/// How each damaged row is damaged, as SQL run on it, and the column named.
fn damages() -> Vec<(String, &'static str)> {
    vec![
        (
            format!("params = '{{\"deep\":{}}}'", nested_list(200)),
            "params",
        ),
        (
            format!("user_metadata = '{{\"deep\":{}}}'", nested_list(200)),
            "user_metadata",
        ),
        ("user_metadata = '{not json'".into(), "user_metadata"),
        ("created_at = 'yesterday'".into(), "created_at"),
        ("params = 42".into(), "params"),
    ]
}

/// A backend holding GOOD readable entries and one damaged row per kind of
/// damage (every entry expired at 1 ms, so sweeps see all of them); the keys of
/// the damaged rows.
fn damaged_cache(dir: &Path) -> (SqliteBackend, Vec<CacheKey>) {
    let backend = SqliteBackend::open(dir).unwrap();
    let damages = damages();
    for index in 0..GOOD + damages.len() as u64 {
        let mut entry = sample_entry(key_of(index), 1_000 + index);
        entry.expires_at = Some(1);
        backend.put(entry).unwrap();
    }
    let conn = Connection::open(dir.join(DB_FILE_NAME)).unwrap();
    let mut bad = Vec::new();
    for (offset, (damage, _)) in damages.iter().enumerate() {
        let key = key_of(GOOD + offset as u64);
        let changed = conn
            .execute(
                &format!("UPDATE entries SET {damage} WHERE key = ?1"),
                [key.as_bytes().as_slice()],
            )
            .unwrap();
        assert_eq!(changed, 1);
        bad.push(key);
    }
    (backend, bad)
}

fn good_keys() -> BTreeSet<CacheKey> {
    (0..GOOD).map(key_of).collect()
}

fn scanned(backend: &SqliteBackend, filter: &ScanFilter) -> Vec<CacheKey> {
    let mut keys = Vec::new();
    backend
        .scan(filter, &mut |entry| {
            keys.push(entry.key);
            ControlFlow::Continue(())
        })
        .unwrap();
    keys
}

#[test]
fn reads_pass_over_unreadable_rows_and_get_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, bad) = damaged_cache(dir.path());

    // A whole scan (more than one page), pages of a listing, a prefix.
    let all = scanned(&backend, &ScanFilter::all());
    assert_eq!(all.iter().copied().collect::<BTreeSet<_>>(), good_keys());
    assert_eq!(all.len() as u64, GOOD, "each entry once");
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let mut filter = ScanFilter::all().limit(7);
        filter.after = after;
        let page = scanned(&backend, &filter);
        if page.is_empty() {
            break;
        }
        after = page.last().copied();
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let mut prefixed = ScanFilter::all();
    prefixed.prefix = Some("sample".into());
    assert_eq!(scanned(&backend, &prefixed), all);

    // Sweeps return readable entries only, as many as asked for.
    let expired = backend.expired(u64::MAX, 1_000).unwrap();
    assert_eq!(expired.len() as u64, GOOD);
    assert_eq!(backend.expired(u64::MAX, 10).unwrap().len(), 10);
    let oldest = backend
        .eviction_candidates(EvictionPolicy::Lru, 0, 1_000)
        .unwrap();
    assert_eq!(oldest.len() as u64, GOOD);
    let expired_first = backend
        .eviction_candidates(EvictionPolicy::Lru, u64::MAX, 1_000)
        .unwrap();
    assert_eq!(expired_first.len() as u64, GOOD);

    // The running totals count every row.
    assert_eq!(backend.len().unwrap(), GOOD + bad.len() as u64);

    for key in &bad {
        let error = backend.get(key).unwrap_err().to_string();
        assert!(error.contains(&key.to_hex()), "{error}");
    }
    assert!(backend.get(&key_of(0)).unwrap().is_some());

    // A batch of reads that includes damaged rows records the others.
    let touches = bad
        .iter()
        .chain([key_of(0)].iter())
        .map(|key| Touch {
            key: *key,
            accessed_at: 5_000_000,
            count: 1,
        })
        .collect();
    let conn = Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
    conn.execute(
        "UPDATE entries SET access_count = 'many' WHERE key = ?1",
        [bad[3].as_bytes().as_slice()],
    )
    .unwrap();
    backend
        .touch(&AccessBatch {
            touches,
            ..AccessBatch::default()
        })
        .unwrap();
    assert_eq!(
        backend.get(&key_of(0)).unwrap().unwrap().accessed_at,
        5_000_000
    );
}

#[test]
fn unreadable_reports_each_damaged_row_with_its_column() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, bad) = damaged_cache(dir.path());
    let mut reported = Vec::new();
    backend
        .unreadable(&mut |key, reason| reported.push((key, reason)))
        .unwrap();
    let mut expected: Vec<(CacheKey, &str)> = bad
        .iter()
        .zip(damages())
        .map(|(key, (_, column))| (*key, column))
        .collect();
    expected.sort_by_key(|(key, _)| *key);
    assert_eq!(reported.len(), expected.len(), "{reported:?}");
    for ((key, reason), (expected_key, column)) in reported.iter().zip(&expected) {
        assert_eq!(key, expected_key);
        assert!(reason.contains(column), "{reason} names {column}");
    }
}

#[test]
fn removals_work_on_unreadable_rows_without_decoding_them() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, bad) = damaged_cache(dir.path());
    let rows = GOOD + bad.len() as u64;

    // remove: the row goes, with no entry to return.
    assert_eq!(backend.remove(&bad[0]).unwrap(), None);
    assert_eq!(backend.len().unwrap(), rows - 1);
    assert!(backend.get(&bad[0]).unwrap().is_none());

    // remove_unreadable: only while the row is still unreadable.
    assert!(backend.remove_unreadable(&bad[1]).unwrap());
    assert!(!backend.remove_unreadable(&bad[1]).unwrap());
    assert!(!backend.remove_unreadable(&key_of(0)).unwrap());
    assert!(backend.get(&key_of(0)).unwrap().is_some());
    assert_eq!(backend.len().unwrap(), rows - 2);

    // put over an unreadable row replaces it.
    let fresh = sample_entry(bad[2], 77);
    assert_eq!(backend.put(fresh.clone()).unwrap(), None);
    assert_eq!(backend.get(&bad[2]).unwrap(), Some(fresh));
    assert_eq!(backend.len().unwrap(), rows - 2);

    // remove_if_unchanged of an entry damaged since it was read.
    let read: Entry = backend.get(&key_of(1)).unwrap().unwrap();
    let conn = Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
    conn.execute(
        "UPDATE entries SET user_metadata = '[' WHERE key = ?1",
        [read.key.as_bytes().as_slice()],
    )
    .unwrap();
    assert_eq!(backend.remove_if_unchanged(&read).unwrap(), None);
    assert_eq!(backend.len().unwrap(), rows - 3);

    // clear: every row goes, the readable ones come back for their blobs.
    let cleared = backend.clear().unwrap();
    let cleared: BTreeSet<CacheKey> = cleared.iter().map(|entry| entry.key).collect();
    let mut expected = good_keys();
    expected.remove(&key_of(1));
    expected.insert(bad[2]);
    assert_eq!(cleared, expected);
    assert_eq!(backend.len().unwrap(), 0);
    let left: i64 = conn
        .query_row("SELECT count(*) FROM entries", [], |row| row.get(0))
        .unwrap();
    assert_eq!(left, 0);
}
