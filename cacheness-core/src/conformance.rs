//! The conformance suite: the contract of [`MetadataBackend`], checked.
//!
//! Every check is a public function taking `open`, a function that opens the
//! backend under test in a given directory (a fresh temporary directory per
//! check; called again with the same directory to test reopening). Backends that
//! do not persist may ignore the directory. The [`conformance_tests!`] macro turns
//! every check into its own `#[test]`, so a failure names the check:
//!
//! ```ignore
//! // tests/conformance.rs
//! mod conformance {
//!     cacheness_core::conformance_tests!(|dir: &std::path::Path| MyBackend::open(dir).unwrap());
//! }
//! ```
//!
//! The checks cover the backend alone (round trips of every field, replacement,
//! removal, touches, ordered and filtered scans, the provided methods, conditional
//! removal, persistence, threads, and a model-based test of random operation
//! sequences against a `BTreeMap`) and the [`Cache`] engine over the backend (TTL
//! on a manual clock, inline and blob values, corruption recovery, the size limit,
//! prefixes, paging, statistics).
//!
//! # Stability
//!
//! This module and the `conformance` feature are not part of the stable API:
//! the suite may gain checks in any release, patch releases included, so a
//! backend that passes today may fail after an upgrade, and the signatures of the
//! checks may change. Enable the feature only as a dev-dependency, and run the
//! suite from `tests/` (for example `tests/conformance.rs`), not from `src/`:
//!
//! ```toml
//! [dev-dependencies]
//! cacheness-core = { version = "...", features = ["conformance"] }
//! ```
//!
//! [`conformance_tests!`]: crate::conformance_tests

use std::collections::BTreeMap;
use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::backend::{AccessBatch, Counters, MetadataBackend, ScanFilter, Touch};
use crate::cache::{Cache, GetOptions, ListOptions, PutOptions};
use crate::clock::{Clock, ManualClock};
use crate::entry::{Compression, ContentHash, Entry, Location, SharedEntry, UserMetadata};
use crate::eviction::EvictionPolicy;
use crate::key::{CacheKey, Params};

pub use crate::key::arb::{arb_params, arb_value};

/// Expands to one `#[test]` per conformance check for the backend that `$open`
/// opens (an expression of type `Fn(&Path) -> B`). Invoke it inside a module of
/// its own; invoke it in two modules to test two configurations.
#[macro_export]
macro_rules! conformance_tests {
    ($open:expr) => {
        $crate::conformance_tests!(@checks $open;
            get_of_missing_key_is_none,
            put_then_get_returns_every_field,
            put_returns_the_replaced_entry,
            remove_returns_the_entry,
            touch_moves_access_time_forward_and_counts,
            scan_is_ordered_filtered_and_paged,
            provided_methods_agree_with_scan,
            expired_and_eviction_candidates,
            eviction_candidates_follow_the_policy,
            eviction_candidates_put_expired_entries_first,
            eviction_candidates_break_ties_by_key,
            remove_if_unchanged_spares_a_newer_version,
            clear_returns_every_entry,
            counters_are_kept_when_claimed,
            reopen_keeps_entries_when_persistent,
            concurrent_writers_lose_nothing,
            random_operations_match_a_model,
            engine_round_trips_inline_and_blob_values,
            engine_expires_entries_on_the_clock,
            engine_recovers_from_corrupted_blobs,
            engine_keeps_entries_that_fail_to_decode,
            engine_evicts_least_recently_used_to_the_low_watermark,
            engine_evicts_in_the_configured_policys_order,
            engine_removals_leave_no_blob_behind,
            engine_lists_pages_and_counts,
            engine_records_reads_at_most_once_per_granularity,
            engine_reopen_serves_stored_values,
        );
    };
    (@checks $open:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::conformance::$check($open);
            }
        )*
    };
}

/// Cases each property runs (the `PROPTEST_CASES` environment variable overrides).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(48)
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cacheness-conformance-")
        .tempdir()
        .expect("the system temp dir is writable")
}

/// Entries compare by their JSON form, where a NaN parameter equals itself.
fn same_entry(left: &Entry, right: &Entry) -> bool {
    serde_json::to_value(left).ok() == serde_json::to_value(right).ok()
}

#[track_caller]
fn assert_same(actual: Option<&Entry>, expected: Option<&Entry>, context: &str) {
    let equal = match (actual, expected) {
        (None, None) => true,
        (Some(actual), Some(expected)) => same_entry(actual, expected),
        _ => false,
    };
    assert!(
        equal,
        "{context}:\n  got      {actual:?}\n  expected {expected:?}"
    );
}

/// The entries `scan` visits; `scan_listed` must visit the same ones.
fn scan_all(backend: &dyn MetadataBackend, filter: &ScanFilter) -> Vec<Entry> {
    let mut entries = Vec::new();
    backend
        .scan(filter, &mut |entry| {
            entries.push(entry);
            ControlFlow::Continue(())
        })
        .expect("scan succeeds");
    let mut listed = Vec::new();
    backend
        .scan_listed(filter, &mut |entry| {
            listed.push(entry.into_entry());
            ControlFlow::Continue(())
        })
        .expect("scan_listed succeeds");
    assert!(
        listed.len() == entries.len()
            && listed
                .iter()
                .zip(&entries)
                .all(|(listed, scanned)| same_entry(listed, scanned)),
        "scan_listed visits what scan visits ({filter:?})"
    );
    entries
}

/// A key from a small integer, spread over the key space.
pub fn key_of(index: u64) -> CacheKey {
    let digest = blake3::hash(&index.to_le_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_bytes()[..16]);
    CacheKey::from_bytes(bytes)
}

/// A well-formed blob name for `key`.
pub fn blob_name_for(key: &CacheKey, nonce: u64) -> String {
    crate::blob::format::BlobName::with_nonce(key, nonce).into_string()
}

/// A plausible entry for `key`, with every optional field filled.
pub fn sample_entry(key: CacheKey, created_at: u64) -> Entry {
    let value = format!("value of {key} at {created_at}").into_bytes();
    let mut user_metadata = UserMetadata::new();
    user_metadata.insert("owner".into(), "conformance".into());
    user_metadata.insert(
        "nested".into(),
        serde_json::json!({"list": [1, 2.5, null, "ü"]}),
    );
    Entry {
        key,
        prefix: "sample".into(),
        description: "a sample entry — with unicode ✓".into(),
        type_tag: "alloc::string::String".into(),
        codec: "json".into(),
        params: Some(
            Params::new()
                .with("index", created_at)
                .and_then(|params| params.with("name", "sample"))
                .expect("distinct names"),
        ),
        created_at,
        accessed_at: created_at,
        expires_at: Some(created_at + 60_000),
        access_count: 0,
        stored_size: value.len() as u64,
        raw_size: value.len() as u64,
        compression: Compression::None,
        content_hash: ContentHash::of(&value),
        location: Location::Inline(value),
        signature: Some("sig".into()),
        user_metadata,
    }
}

prop_compose! {
    /// Arbitrary entries for `key`: any prefix from a small set (so filters match),
    /// inline or blob locations, optional fields present or not.
    pub fn arb_entry_for(key: CacheKey)(
        prefix in prop::sample::select(vec!["", "a", "b"]),
        description in ".{0,16}",
        params in proptest::option::of(arb_params()),
        created_at in 0u64..1_000_000,
        age in 0u64..1_000,
        expires_in in proptest::option::of(0u64..2_000_000),
        access_count in 0u64..100,
        inline in proptest::option::of(vec(any::<u8>(), 0..64)),
        nonce in any::<u64>(),
        compressed in any::<bool>(),
        raw_extra in 0u64..100,
        signature in proptest::option::of("[a-f0-9]{8}"),
        user_metadata in btree_map("[a-z]{1,6}", any::<i32>(), 0..3),
    ) -> Entry {
        let stored_size = inline.as_ref().map_or(1000 + nonce % 1000, |bytes| bytes.len() as u64);
        let content_hash = ContentHash::of(&nonce.to_le_bytes());
        let location = match inline {
            Some(bytes) => Location::Inline(bytes),
            None => Location::Blob(blob_name_for(&key, nonce)),
        };
        Entry {
            key,
            prefix: prefix.to_owned(),
            description,
            type_tag: "conformance::Value".into(),
            codec: "json".into(),
            params,
            created_at,
            accessed_at: created_at + age,
            expires_at: expires_in.map(|offset| created_at + offset),
            access_count,
            stored_size,
            raw_size: stored_size + if compressed { raw_extra } else { 0 },
            compression: if compressed { Compression::Lz4 } else { Compression::None },
            content_hash,
            location,
            signature,
            user_metadata: user_metadata.into_iter().map(|(name, value)| (name, value.into())).collect(),
        }
    }
}

/// Arbitrary entries under arbitrary keys.
pub fn arb_entry() -> impl Strategy<Value = Entry> {
    any::<[u8; 16]>().prop_flat_map(|bytes| arb_entry_for(CacheKey::from_bytes(bytes)))
}

/// The backend returns `None` for a key never stored.
pub fn get_of_missing_key_is_none<B: MetadataBackend + 'static>(open: impl Fn(&Path) -> B) {
    let dir = temp_dir();
    let backend = open(dir.path());
    assert!(backend.get(&key_of(1)).unwrap().is_none());
    assert!(backend.remove(&key_of(1)).unwrap().is_none());
    assert_eq!(backend.len().unwrap(), 0);
    assert!(backend.is_empty().unwrap());
}

/// Every field comes back exactly as put, for inline and blob entries and for
/// arbitrary entries.
pub fn put_then_get_returns_every_field<B: MetadataBackend + 'static>(open: impl Fn(&Path) -> B) {
    let dir = temp_dir();
    let backend = open(dir.path());
    let inline = sample_entry(key_of(1), 1_000);
    let blob = Entry {
        location: Location::Blob(blob_name_for(&key_of(2), 7)),
        params: None,
        expires_at: None,
        signature: None,
        user_metadata: UserMetadata::new(),
        prefix: String::new(),
        description: String::new(),
        ..sample_entry(key_of(2), 2_000)
    };
    for entry in [&inline, &blob] {
        assert!(backend.put(entry.clone()).unwrap().is_none());
        assert_same(
            backend.get(&entry.key).unwrap().as_ref(),
            Some(entry),
            "get after put",
        );
        assert_same(
            backend
                .get_shared(&entry.key)
                .unwrap()
                .as_deref()
                .map(SharedEntry::entry),
            Some(entry),
            "get_shared after put",
        );
    }
    let extreme = Entry {
        created_at: u64::MAX - 1,
        accessed_at: u64::MAX - 1,
        expires_at: Some(u64::MAX),
        access_count: u64::MAX / 2,
        stored_size: u64::MAX / 4,
        raw_size: u64::MAX / 4,
        location: Location::Inline((0..=255u8).collect()),
        ..sample_entry(key_of(3), 0)
    };
    backend.put(extreme.clone()).unwrap();
    assert_same(
        backend.get(&extreme.key).unwrap().as_ref(),
        Some(&extreme),
        "extreme values",
    );

    let mut runner = TestRunner::new(Config::with_cases(cases()));
    let backend = &backend;
    runner
        .run(&arb_entry(), |entry| {
            backend
                .put(entry.clone())
                .map_err(|error| TestCaseError::fail(error.to_string()))?;
            let back = backend
                .get(&entry.key)
                .map_err(|error| TestCaseError::fail(error.to_string()))?;
            prop_assert!(
                back.as_ref().is_some_and(|back| same_entry(back, &entry)),
                "{back:?} != {entry:?}"
            );
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

/// A put returns the entry it replaced; the new one is what get returns.
pub fn put_returns_the_replaced_entry<B: MetadataBackend + 'static>(open: impl Fn(&Path) -> B) {
    let dir = temp_dir();
    let backend = open(dir.path());
    let first = sample_entry(key_of(1), 1_000);
    let second = Entry {
        location: Location::Blob(blob_name_for(&key_of(1), 2)),
        ..sample_entry(key_of(1), 2_000)
    };
    assert!(backend.put(first.clone()).unwrap().is_none());
    let replaced = backend.put(second.clone()).unwrap();
    assert_same(
        replaced.as_ref(),
        Some(&first),
        "put returns the replaced entry",
    );
    assert_same(
        backend.get(&key_of(1)).unwrap().as_ref(),
        Some(&second),
        "get after replace",
    );
    assert_eq!(backend.len().unwrap(), 1);
}

/// Remove returns the removed entry, once.
pub fn remove_returns_the_entry<B: MetadataBackend + 'static>(open: impl Fn(&Path) -> B) {
    let dir = temp_dir();
    let backend = open(dir.path());
    let entry = sample_entry(key_of(1), 1_000);
    let other = sample_entry(key_of(2), 1_000);
    backend.put(entry.clone()).unwrap();
    backend.put(other.clone()).unwrap();
    assert_same(
        backend.remove(&key_of(1)).unwrap().as_ref(),
        Some(&entry),
        "remove",
    );
    assert!(backend.get(&key_of(1)).unwrap().is_none());
    assert!(backend.remove(&key_of(1)).unwrap().is_none());
    assert_same(
        backend.get(&key_of(2)).unwrap().as_ref(),
        Some(&other),
        "the other entry stays",
    );
}

/// Touches move `accessed_at` forward only, add counts, and ignore missing keys.
pub fn touch_moves_access_time_forward_and_counts<B: MetadataBackend + 'static>(
    open: impl Fn(&Path) -> B,
) {
    let dir = temp_dir();
    let backend = open(dir.path());
    let entry = sample_entry(key_of(1), 1_000);
    backend.put(entry.clone()).unwrap();
    let batch = |accessed_at, count| AccessBatch {
        touches: vec![
            Touch {
                key: key_of(1),
                accessed_at,
                count,
            },
            Touch {
                key: key_of(99),
                accessed_at,
                count,
            },
        ],
        counters: Counters::default(),
    };
    // A reader holding the entry shared while it is touched keeps what it read,
    // and so does a listing.
    let shared_before = backend.get_shared(&key_of(1)).unwrap().unwrap();
    let mut listed_before = Vec::new();
    backend
        .scan_listed(&ScanFilter::all(), &mut |listed| {
            listed_before.push(listed);
            ControlFlow::Continue(())
        })
        .unwrap();
    backend.touch(&batch(5_000, 3)).unwrap();
    let touched = backend.get(&key_of(1)).unwrap().unwrap();
    assert_eq!((touched.accessed_at, touched.access_count), (5_000, 3));
    assert_same(
        Some(shared_before.entry()),
        Some(&entry),
        "a shared read is a snapshot",
    );
    assert_eq!(listed_before.len(), 1);
    assert_same(
        Some(listed_before[0].entry()),
        Some(&entry),
        "a listing is a snapshot",
    );
    let shared = backend.get_shared(&key_of(1)).unwrap().unwrap();
    assert_eq!((shared.accessed_at, shared.access_count), (5_000, 3));
    backend.touch(&batch(4_000, 2)).unwrap();
    let touched = backend.get(&key_of(1)).unwrap().unwrap();
    assert_eq!(
        (touched.accessed_at, touched.access_count),
        (5_000, 5),
        "access time never goes back"
    );
    assert!(
        backend.get(&key_of(99)).unwrap().is_none(),
        "touch does not create entries"
    );
    let expected = Entry {
        accessed_at: 5_000,
        access_count: 5,
        ..entry
    };
    assert_same(
        Some(&touched),
        Some(&expected),
        "touch changes nothing else",
    );
    backend.touch(&AccessBatch::default()).unwrap();
}

/// Scans are in ascending key order, filter by exact prefix, page by `after`,
/// stop at `limit` and when the visitor breaks.
pub fn scan_is_ordered_filtered_and_paged<B: MetadataBackend + 'static>(open: impl Fn(&Path) -> B) {
    let dir = temp_dir();
    let backend = open(dir.path());
    let prefixes = ["", "a", "b", "ab"];
    for index in 0..60 {
        backend
            .put(Entry {
                prefix: prefixes[index as usize % prefixes.len()].into(),
                ..sample_entry(key_of(index), 1_000 + index)
            })
            .unwrap();
    }
    let all = scan_all(&backend, &ScanFilter::all());
    assert_eq!(all.len(), 60);
    assert!(
        all.windows(2).all(|pair| pair[0].key < pair[1].key),
        "ascending key order"
    );

    let only_a = scan_all(&backend, &ScanFilter::all().prefix("a"));
    assert_eq!(only_a.len(), 15);
    assert!(
        only_a.iter().all(|entry| entry.prefix == "a"),
        "prefix is matched exactly"
    );
    let unprefixed = scan_all(&backend, &ScanFilter::all().prefix(""));
    assert_eq!(unprefixed.len(), 15);

    let first_page = scan_all(&backend, &ScanFilter::all().limit(25));
    assert_eq!(first_page, all[..25].to_vec());
    let second_page = scan_all(
        &backend,
        &ScanFilter::all().after(first_page[24].key).limit(25),
    );
    assert_eq!(second_page, all[25..50].to_vec());
    let paged_a = scan_all(
        &backend,
        &ScanFilter::all().prefix("a").after(only_a[4].key).limit(3),
    );
    assert_eq!(paged_a, only_a[5..8].to_vec());
    assert!(scan_all(&backend, &ScanFilter::all().limit(0)).is_empty());

    // A visitor that breaks at every seventh entry.
    let mut visited = 0;
    let mut seventh = |_| {
        visited += 1;
        if visited % 7 == 0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    backend
        .scan(&ScanFilter::all(), &mut |entry| seventh(Some(entry)))
        .unwrap();
    backend
        .scan_listed(&ScanFilter::all(), &mut |_| seventh(None))
        .unwrap();
    assert_eq!(visited, 14, "a break stops a scan and a listing's scan");
}

/// `len`, `is_empty`, `total_size` and `stats` agree with a full scan.
pub fn provided_methods_agree_with_scan<B: MetadataBackend + 'static>(open: impl Fn(&Path) -> B) {
    let dir = temp_dir();
    let backend = open(dir.path());
    let mut total = 0;
    for index in 0..30 {
        let entry = Entry {
            stored_size: 100 + index,
            ..sample_entry(key_of(index), 1_000)
        };
        total += entry.stored_size;
        backend.put(entry).unwrap();
    }
    backend.remove(&key_of(0)).unwrap();
    total -= 100;
    assert_eq!(backend.len().unwrap(), 29);
    assert!(!backend.is_empty().unwrap());
    assert_eq!(backend.total_size().unwrap(), total);
    let stats = backend.stats().unwrap();
    assert_eq!((stats.entries, stats.total_size), (29, total));
}

/// `expired` returns exactly the expired entries (up to its limit);
/// `eviction_candidates` the least recently accessed first.
pub fn expired_and_eviction_candidates<B: MetadataBackend + 'static>(open: impl Fn(&Path) -> B) {
    let dir = temp_dir();
    let backend = open(dir.path());
    for index in 0..20u64 {
        backend
            .put(Entry {
                expires_at: if index % 4 == 0 {
                    None
                } else {
                    Some(10_000 + index * 100)
                },
                accessed_at: 50_000 - index * 10,
                ..sample_entry(key_of(index), 1_000)
            })
            .unwrap();
    }
    let now = 10_000 + 1_000;
    let mut expired: Vec<CacheKey> = backend
        .expired(now, 100)
        .unwrap()
        .iter()
        .map(|entry| entry.key)
        .collect();
    expired.sort();
    let mut expected: Vec<CacheKey> = (0..20u64)
        .filter(|index| index % 4 != 0 && 10_000 + index * 100 <= now)
        .map(key_of)
        .collect();
    expected.sort();
    assert_eq!(expired, expected, "expired at {now}");
    assert_eq!(backend.expired(now, 2).unwrap().len(), 2);
    assert!(backend.expired(now, 0).unwrap().is_empty());
    assert!(backend.expired(0, 100).unwrap().is_empty());

    // Before anything expired, the least recently accessed first.
    let candidates = candidate_keys(&backend, EvictionPolicy::Lru, 0, 5);
    let coldest: Vec<CacheKey> = (15..20u64).rev().map(key_of).collect();
    assert_eq!(candidates, coldest, "least recently accessed first");
}

/// The keys of `eviction_candidates`, in its order.
fn candidate_keys(
    backend: &dyn MetadataBackend,
    policy: EvictionPolicy,
    now_ms: u64,
    limit: usize,
) -> Vec<CacheKey> {
    let candidates = backend
        .eviction_candidates(policy, now_ms, limit)
        .unwrap_or_else(|error| panic!("eviction candidates ({policy}): {error}"));
    keys(&candidates)
}

/// An entry under `key_of(index)` with the fields eviction orders by.
fn eviction_entry(
    index: u64,
    created_at: u64,
    accessed_at: u64,
    access_count: u64,
    expires_at: Option<u64>,
) -> Entry {
    Entry {
        accessed_at,
        access_count,
        expires_at,
        ..sample_entry(key_of(index), created_at)
    }
}

/// Checks every prefix of `expected` (and a limit past its end) is what
/// `eviction_candidates` gives under `policy` at `now_ms`.
fn assert_candidates(
    backend: &dyn MetadataBackend,
    policy: EvictionPolicy,
    now_ms: u64,
    expected: &[CacheKey],
    what: &str,
) {
    for limit in 0..=expected.len() + 1 {
        assert_eq!(
            candidate_keys(backend, policy, now_ms, limit),
            expected[..limit.min(expected.len())],
            "{what}: {policy} at {now_ms}, limit {limit}"
        );
    }
}

/// `eviction_candidates` gives each policy's order: least recently used
/// (`accessed_at`), least recently stored (`created_at`), least frequently used
/// (`access_count`, ties by least recently used); a limit takes the first ones.
pub fn eviction_candidates_follow_the_policy<B: MetadataBackend + 'static>(
    open: impl Fn(&Path) -> B,
) {
    let dir = temp_dir();
    let backend = open(dir.path());
    // (created_at, accessed_at, access_count) of keys 0 to 4; nothing expires.
    let fields = [
        (100, 900, 5),
        (200, 400, 1),
        (300, 700, 1),
        (400, 500, 9),
        (500, 600, 0),
    ];
    for (index, (created_at, accessed_at, count)) in (0u64..).zip(fields) {
        backend
            .put(eviction_entry(index, created_at, accessed_at, count, None))
            .unwrap();
    }
    let order = |indexes: [u64; 5]| indexes.map(key_of);
    for (policy, expected) in [
        (EvictionPolicy::Lru, order([1, 3, 4, 2, 0])),
        (EvictionPolicy::Lrs, order([0, 1, 2, 3, 4])),
        (EvictionPolicy::Lfu, order([4, 1, 2, 0, 3])),
    ] {
        assert_candidates(&backend, policy, 10_000, &expected, "the policy's order");
    }
}

/// Whatever the policy, expired entries come first, the soonest expired first
/// (ties by key), then the live ones in the policy's order; an entry expires at
/// its `expires_at` exactly.
pub fn eviction_candidates_put_expired_entries_first<B: MetadataBackend + 'static>(
    open: impl Fn(&Path) -> B,
) {
    let dir = temp_dir();
    let backend = open(dir.path());
    // Keys 0 to 3: stored and read long ago, never again: first under every
    // policy while the others live.
    for index in 0..4u64 {
        let at = 1_000 + index;
        let expires_at = (index % 2 == 0).then_some(1_000_000);
        backend
            .put(eviction_entry(index, at, at, 0, expires_at))
            .unwrap();
    }
    // Keys 10 to 13: stored, read and read often lately, equal in all of it;
    // they expire at 20 000 (10 and 12), 30 000 (11) and 30 001 (13).
    for (index, expires_at) in [(10, 20_000), (11, 30_000), (12, 20_000), (13, 30_001)] {
        backend
            .put(eviction_entry(index, 5_000, 6_000, 50, Some(expires_at)))
            .unwrap();
    }
    let by_key = |indexes: &[u64]| {
        let mut keys: Vec<CacheKey> = indexes.iter().copied().map(key_of).collect();
        keys.sort();
        keys
    };
    let cold = [0, 1, 2, 3].map(key_of);
    for policy in EvictionPolicy::ALL {
        // Nothing expired yet: the cold entries, then the others by key.
        let expected = [cold.to_vec(), by_key(&[10, 11, 12, 13])].concat();
        assert_candidates(&backend, policy, 19_999, &expected, "none expired");
        // At 30 000: 10 and 12 (by key), then 11, then the live ones.
        let expected = [
            by_key(&[10, 12]),
            vec![key_of(11)],
            cold.to_vec(),
            vec![key_of(13)],
        ]
        .concat();
        assert_candidates(&backend, policy, 30_000, &expected, "expired first");
    }
}

/// Entries equal in what the policy orders by come in ascending key order, and
/// a touch moves an entry in the orders that read it.
pub fn eviction_candidates_break_ties_by_key<B: MetadataBackend + 'static>(
    open: impl Fn(&Path) -> B,
) {
    let dir = temp_dir();
    let backend = open(dir.path());
    for index in 0..12u64 {
        backend
            .put(eviction_entry(index, 5_000, 5_000, 3, None))
            .unwrap();
    }
    let mut by_key: Vec<CacheKey> = (0..12u64).map(key_of).collect();
    by_key.sort();
    for policy in EvictionPolicy::ALL {
        assert_candidates(&backend, policy, 10_000, &by_key, "all tied");
    }
    // Reading the first key makes it the most recently and most frequently
    // used; it was stored no later than the others.
    let first = by_key[0];
    backend
        .touch(&AccessBatch {
            touches: vec![Touch {
                key: first,
                accessed_at: 5_001,
                count: 1,
            }],
            counters: Counters::default(),
        })
        .unwrap();
    let first_last = [&by_key[1..], &by_key[..1]].concat();
    for (policy, expected) in [
        (EvictionPolicy::Lru, &first_last),
        (EvictionPolicy::Lrs, &by_key),
        (EvictionPolicy::Lfu, &first_last),
    ] {
        assert_candidates(&backend, policy, 10_000, expected, "after a touch");
    }
}

/// `remove_if_unchanged` removes the version it was given and nothing newer.
pub fn remove_if_unchanged_spares_a_newer_version<B: MetadataBackend + 'static>(
    open: impl Fn(&Path) -> B,
) {
    let dir = temp_dir();
    let backend = open(dir.path());
    let old = Entry {
        location: Location::Blob(blob_name_for(&key_of(1), 1)),
        ..sample_entry(key_of(1), 1_000)
    };
    let new = Entry {
        location: Location::Blob(blob_name_for(&key_of(1), 2)),
        ..sample_entry(key_of(1), 2_000)
    };
    backend.put(old.clone()).unwrap();
    backend.put(new.clone()).unwrap();
    assert!(
        backend.remove_if_unchanged(&old).unwrap().is_none(),
        "a stale version removes nothing"
    );
    assert_same(
        backend.get(&key_of(1)).unwrap().as_ref(),
        Some(&new),
        "the newer version stays",
    );
    let touched = AccessBatch {
        touches: vec![Touch {
            key: key_of(1),
            accessed_at: 9_000,
            count: 1,
        }],
        counters: Counters::default(),
    };
    backend.touch(&touched).unwrap();
    assert!(
        backend.remove_if_unchanged(&new).unwrap().is_some(),
        "a touched entry is still the same version"
    );
    assert!(backend.get(&key_of(1)).unwrap().is_none());
    assert!(backend.remove_if_unchanged(&new).unwrap().is_none());
}

/// `clear` removes and returns every entry.
pub fn clear_returns_every_entry<B: MetadataBackend + 'static>(open: impl Fn(&Path) -> B) {
    let dir = temp_dir();
    let backend = open(dir.path());
    for index in 0..25 {
        backend.put(sample_entry(key_of(index), 1_000)).unwrap();
    }
    let mut cleared: Vec<CacheKey> = backend
        .clear()
        .unwrap()
        .iter()
        .map(|entry| entry.key)
        .collect();
    cleared.sort();
    let mut expected: Vec<CacheKey> = (0..25).map(key_of).collect();
    expected.sort();
    assert_eq!(cleared, expected);
    assert!(backend.is_empty().unwrap());
    assert!(backend.clear().unwrap().is_empty());
}

/// Backends that claim counters add the counters of every touch batch.
pub fn counters_are_kept_when_claimed<B: MetadataBackend + 'static>(open: impl Fn(&Path) -> B) {
    let dir = temp_dir();
    let backend = open(dir.path());
    if !backend.capabilities().counters {
        return;
    }
    let batch = AccessBatch {
        touches: Vec::new(),
        counters: Counters {
            hits: 5,
            misses: 3,
            evictions: 1,
        },
    };
    backend.touch(&batch).unwrap();
    backend.touch(&batch).unwrap();
    backend.flush().unwrap();
    let expected = Counters {
        hits: 10,
        misses: 6,
        evictions: 2,
    };
    assert_eq!(backend.stats().unwrap().counters, expected);
    if backend.capabilities().persistent {
        drop(backend);
        assert_eq!(
            open(dir.path()).stats().unwrap().counters,
            expected,
            "counters persist"
        );
    }
}

/// Persistent backends give back, after a reopen, what was put and touched.
pub fn reopen_keeps_entries_when_persistent<B: MetadataBackend + 'static>(
    open: impl Fn(&Path) -> B,
) {
    let dir = temp_dir();
    let backend = open(dir.path());
    if !backend.capabilities().persistent {
        return;
    }
    let entries: Vec<Entry> = (0..40)
        .map(|index| sample_entry(key_of(index), 1_000 + index))
        .collect();
    for entry in &entries {
        backend.put(entry.clone()).unwrap();
    }
    backend.remove(&key_of(0)).unwrap();
    backend
        .touch(&AccessBatch {
            touches: vec![Touch {
                key: key_of(1),
                accessed_at: 99_999,
                count: 4,
            }],
            counters: Counters::default(),
        })
        .unwrap();
    backend.flush().unwrap();
    drop(backend);

    let reopened = open(dir.path());
    assert!(
        reopened.get(&key_of(0)).unwrap().is_none(),
        "removals persist"
    );
    let touched = reopened.get(&key_of(1)).unwrap().unwrap();
    assert_eq!(
        (touched.accessed_at, touched.access_count),
        (99_999, 4),
        "touches persist"
    );
    for entry in &entries[2..] {
        assert_same(
            reopened.get(&entry.key).unwrap().as_ref(),
            Some(entry),
            "after reopen",
        );
    }
    assert_eq!(reopened.len().unwrap(), 39);
}

/// Eight threads putting distinct and shared keys lose no entry, and every put of
/// a shared key replaces exactly one predecessor.
pub fn concurrent_writers_lose_nothing<B: MetadataBackend + 'static>(open: impl Fn(&Path) -> B) {
    let dir = temp_dir();
    let backend = Arc::new(open(dir.path()));
    const THREADS: u64 = 8;
    const PUTS: u64 = 100;
    let first_puts: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let backend = Arc::clone(&backend);
                scope.spawn(move || {
                    let mut first_puts = 0;
                    for index in 0..PUTS {
                        let own = sample_entry(key_of(1_000 + thread * PUTS + index), index);
                        assert!(backend.put(own).unwrap().is_none());
                        let shared = Entry {
                            created_at: thread * PUTS + index,
                            ..sample_entry(key_of(index % 10), 0)
                        };
                        if backend.put(shared).unwrap().is_none() {
                            first_puts += 1;
                        }
                        backend
                            .get(&key_of(index % 10))
                            .unwrap()
                            .expect("a shared key once put stays");
                    }
                    first_puts
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .sum()
    });
    assert_eq!(
        first_puts, 10,
        "exactly one put per shared key found it empty"
    );
    assert_eq!(backend.len().unwrap(), THREADS * PUTS + 10);
    for thread in 0..THREADS {
        for index in 0..PUTS {
            let key = key_of(1_000 + thread * PUTS + index);
            assert!(backend.get(&key).unwrap().is_some(), "lost {key}");
        }
    }
}

/// One step of the model-based test.
#[derive(Debug, Clone)]
enum Op {
    Put(Entry),
    Get(u64),
    Remove(u64),
    RemoveIfUnchanged(Entry),
    Touch(u64, u64, u64),
    Scan(Option<&'static str>, Option<u64>, Option<usize>),
    Expired(u64),
    Candidates(EvictionPolicy, u64, usize),
    Clear,
    Flush,
}

fn arb_op() -> impl Strategy<Value = Op> {
    let key_index = 0u64..8;
    prop_oneof![
        4 => key_index.clone().prop_flat_map(|index| arb_entry_for(key_of(index))).prop_map(Op::Put),
        3 => key_index.clone().prop_map(Op::Get),
        2 => key_index.clone().prop_map(Op::Remove),
        1 => key_index.clone().prop_flat_map(|index| arb_entry_for(key_of(index))).prop_map(Op::RemoveIfUnchanged),
        2 => (key_index.clone(), 0u64..2_000_000, 1u64..5).prop_map(|(index, at, count)| Op::Touch(index, at, count)),
        2 => (
            proptest::option::of(prop::sample::select(vec!["", "a", "b"])),
            proptest::option::of(key_index),
            proptest::option::of(0usize..6)
        )
            .prop_map(|(prefix, after, limit)| Op::Scan(prefix, after, limit)),
        1 => (0u64..3_000_000).prop_map(Op::Expired),
        1 => (prop::sample::select(EvictionPolicy::ALL.to_vec()), 0u64..3_000_000, 0usize..10)
            .prop_map(|(policy, now, limit)| Op::Candidates(policy, now, limit)),
        1 => Just(Op::Clear),
        1 => Just(Op::Flush),
    ]
}

fn keys(entries: &[Entry]) -> Vec<CacheKey> {
    entries.iter().map(|entry| entry.key).collect()
}

fn run_ops(backend: &dyn MetadataBackend, ops: &[Op]) -> Result<(), TestCaseError> {
    let fail = |error: crate::Error| TestCaseError::fail(error.to_string());
    let mut model: BTreeMap<CacheKey, Entry> = BTreeMap::new();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Put(entry) => {
                let replaced = backend.put(entry.clone()).map_err(fail)?;
                let expected = model.insert(entry.key, entry.clone());
                prop_assert!(
                    replaced.as_ref().map(|e| serde_json::to_value(e).ok())
                        == expected.as_ref().map(|e| serde_json::to_value(e).ok()),
                    "step {step} put returned {replaced:?}, model {expected:?}"
                );
            }
            Op::Get(index) => {
                let got = backend.get(&key_of(*index)).map_err(fail)?;
                let expected = model.get(&key_of(*index));
                prop_assert!(
                    got.as_ref().map(|e| serde_json::to_value(e).ok())
                        == expected.map(|e| serde_json::to_value(e).ok()),
                    "step {step} get returned {got:?}, model {expected:?}"
                );
            }
            Op::Remove(index) => {
                let removed = backend.remove(&key_of(*index)).map_err(fail)?;
                let expected = model.remove(&key_of(*index));
                prop_assert_eq!(
                    removed.map(|e| e.key),
                    expected.map(|e| e.key),
                    "step {} remove",
                    step
                );
            }
            Op::RemoveIfUnchanged(entry) => {
                let removed = backend.remove_if_unchanged(entry).map_err(fail)?;
                let expected = match model.get(&entry.key) {
                    Some(current) if current.same_version(entry) => model.remove(&entry.key),
                    _ => None,
                };
                prop_assert_eq!(
                    removed.map(|e| e.key),
                    expected.map(|e| e.key),
                    "step {} remove_if_unchanged",
                    step
                );
            }
            Op::Touch(index, accessed_at, count) => {
                let batch = AccessBatch {
                    touches: vec![Touch {
                        key: key_of(*index),
                        accessed_at: *accessed_at,
                        count: *count,
                    }],
                    counters: Counters::default(),
                };
                backend.touch(&batch).map_err(fail)?;
                if let Some(entry) = model.get_mut(&key_of(*index)) {
                    entry.accessed_at = entry.accessed_at.max(*accessed_at);
                    entry.access_count += count;
                }
            }
            Op::Scan(prefix, after, limit) => {
                let filter = ScanFilter {
                    prefix: prefix.map(str::to_owned),
                    after: after.map(key_of),
                    limit: *limit,
                };
                let scanned = keys(&scan_all(backend, &filter));
                let expected: Vec<CacheKey> = model
                    .values()
                    .filter(|entry| filter.matches(entry))
                    .take(limit.unwrap_or(usize::MAX))
                    .map(|entry| entry.key)
                    .collect();
                prop_assert_eq!(scanned, expected, "step {} scan {:?}", step, filter);
            }
            Op::Expired(now) => {
                let mut expired = keys(&backend.expired(*now, usize::MAX).map_err(fail)?);
                expired.sort();
                let expected: Vec<CacheKey> = model
                    .values()
                    .filter(|entry| entry.is_expired(*now))
                    .map(|entry| entry.key)
                    .collect();
                prop_assert_eq!(expired, expected, "step {} expired at {}", step, now);
            }
            Op::Candidates(policy, now, limit) => {
                let candidates = backend
                    .eviction_candidates(*policy, *now, *limit)
                    .map_err(fail)?;
                let mut expected: Vec<&Entry> = model.values().collect();
                expected.sort_by(|a, b| policy.compare(a, b, *now));
                let expected: Vec<CacheKey> = expected
                    .iter()
                    .take(*limit)
                    .map(|entry| entry.key)
                    .collect();
                prop_assert_eq!(
                    keys(&candidates),
                    expected,
                    "step {} eviction candidates ({} at {})",
                    step,
                    policy,
                    now
                );
            }
            Op::Clear => {
                let mut cleared = keys(&backend.clear().map_err(fail)?);
                cleared.sort();
                let expected: Vec<CacheKey> = model.keys().copied().collect();
                model.clear();
                prop_assert_eq!(cleared, expected, "step {} clear", step);
            }
            Op::Flush => backend.flush().map_err(fail)?,
        }
        prop_assert_eq!(
            backend.len().map_err(fail)?,
            model.len() as u64,
            "step {} len",
            step
        );
    }
    Ok(())
}

/// Random sequences of put, get, remove, conditional remove, touch, scan,
/// expired, eviction candidates, clear and flush give the same results as a
/// `BTreeMap` model.
pub fn random_operations_match_a_model<B: MetadataBackend + 'static>(open: impl Fn(&Path) -> B) {
    let mut runner = TestRunner::new(Config::with_cases(cases()));
    runner
        .run(&vec(arb_op(), 1..40), |ops| {
            let dir = temp_dir();
            let backend = open(dir.path());
            run_ops(&backend, &ops)
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

/// A cache over the backend, in `dir/cache`, on a manual clock starting at 1 000 000.
fn engine<B: MetadataBackend + 'static>(
    open: &impl Fn(&Path) -> B,
    dir: &Path,
    configure: impl FnOnce(crate::CacheBuilder) -> crate::CacheBuilder,
) -> (Cache, ManualClock, PathBuf) {
    let cache_dir = dir.join("cache");
    fs::create_dir_all(&cache_dir).expect("temp dir is writable");
    let clock = ManualClock::new(1_000_000);
    let builder = Cache::builder()
        .dir(&cache_dir)
        .clock(clock.clone())
        .inline_threshold(256)
        .access_granularity(Duration::ZERO);
    let cache = configure(builder)
        .open(open(&cache_dir))
        .expect("cache opens");
    (cache, clock, cache_dir)
}

/// Incompressible bytes of a given length (so sizes are predictable).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut counter = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            blake3::hash(&[seed.to_le_bytes(), counter.to_le_bytes()].concat()).as_bytes(),
        );
        counter += 1;
    }
    out.truncate(len);
    out
}

fn blob_files(cache_dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(shards) = fs::read_dir(cache_dir.join("blobs")) {
        for shard in shards.flatten() {
            if let Ok(inner) = fs::read_dir(shard.path()) {
                files.extend(inner.flatten().map(|file| file.path()));
            }
        }
    }
    files.sort();
    files
}

/// Small values stay inline, large ones go to blob files, both read back; raw
/// bytes and serde values; compressible values are compressed.
pub fn engine_round_trips_inline_and_blob_values<B: MetadataBackend + 'static>(
    open: impl Fn(&Path) -> B,
) {
    let dir = temp_dir();
    let (cache, _clock, cache_dir) = engine(&open, dir.path(), |builder| builder);
    let small = crate::key!(kind = "small");
    let large = crate::key!(kind = "large");
    let text = crate::key!(kind = "text");
    let raw = crate::key!(kind = "raw");
    cache.put(&small, &vec![1u32, 2, 3]).unwrap();
    let large_value: Vec<u8> = noise(10_000, 1);
    cache.put_bytes(&large, &large_value).unwrap();
    let text_value = "compress me ".repeat(1_000);
    cache.put(&text, &text_value).unwrap();
    cache.put_bytes(&raw, b"\x00\xffraw").unwrap();

    assert_eq!(cache.get::<Vec<u32>>(&small).unwrap(), Some(vec![1, 2, 3]));
    assert_eq!(cache.get_bytes(&large).unwrap(), Some(large_value));
    assert_eq!(cache.get::<String>(&text).unwrap(), Some(text_value));
    assert_eq!(
        cache.get_bytes(&raw).unwrap().as_deref(),
        Some(&b"\x00\xffraw"[..])
    );

    let small_entry = cache.entry(&small).unwrap().unwrap();
    let large_entry = cache.entry(&large).unwrap().unwrap();
    let text_entry = cache.entry(&text).unwrap().unwrap();
    if open(&cache_dir).capabilities().inline_values {
        assert!(
            matches!(small_entry.location, Location::Inline(_)),
            "small values inline"
        );
    }
    assert!(large_entry.blob_name().is_some(), "large values in blobs");
    assert_eq!(
        text_entry.compression,
        Compression::Lz4,
        "repetitive text is compressed"
    );
    assert!(text_entry.stored_size < text_entry.raw_size);
    assert_eq!(small_entry.params.as_ref(), Some(&small));
    assert!(cache.blob_path(&large_entry).unwrap().exists());
    let (value, entry) = cache.get_with_entry::<Vec<u32>>(&small).unwrap().unwrap();
    assert_eq!((value, entry.key), (vec![1, 2, 3], small.key()));
}

/// Entries expire at their TTL on the cache's clock; `no_expiry` and `max_age`
/// do what they say.
pub fn engine_expires_entries_on_the_clock<B: MetadataBackend + 'static>(
    open: impl Fn(&Path) -> B,
) {
    let dir = temp_dir();
    let (cache, clock, _) = engine(&open, dir.path(), |builder| {
        builder.default_ttl(Duration::from_secs(60))
    });
    let default_ttl = crate::key!(ttl = "default");
    let short = crate::key!(ttl = "short");
    let never = crate::key!(ttl = "never");
    cache.put(&default_ttl, &1).unwrap();
    cache
        .put_with(&short, &2, &PutOptions::new().ttl(Duration::from_secs(5)))
        .unwrap();
    cache
        .put_with(&never, &3, &PutOptions::new().no_expiry())
        .unwrap();
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        cache.get::<i32>(&short).unwrap(),
        None,
        "expires at its TTL exactly"
    );
    assert_eq!(cache.get::<i32>(&default_ttl).unwrap(), Some(1));
    assert_eq!(
        cache
            .get_with::<i32>(&default_ttl, &GetOptions::max_age(Duration::from_secs(4)))
            .unwrap(),
        None,
        "older than max_age"
    );
    assert_eq!(
        cache
            .get_with::<i32>(&default_ttl, &GetOptions::max_age(Duration::from_secs(5)))
            .unwrap(),
        Some(1)
    );
    clock.advance(Duration::from_secs(55));
    assert!(!cache.contains(&default_ttl).unwrap());
    assert_eq!(cache.get::<i32>(&default_ttl).unwrap(), None);
    assert_eq!(cache.get::<i32>(&never).unwrap(), Some(3));
    cache
        .put_with(&short, &4, &PutOptions::new().ttl(Duration::from_secs(1)))
        .unwrap();
    clock.advance(Duration::from_secs(2));
    assert_eq!(cache.cleanup_expired().unwrap(), 1);
    assert_eq!(cache.stats().unwrap().entries, 1);
}

/// A way of damaging a blob file.
type Damage = fn(&Path);

/// A blob that is damaged, truncated or deleted makes its entry a miss; the entry
/// and its file are removed and the cache goes on.
pub fn engine_recovers_from_corrupted_blobs<B: MetadataBackend + 'static>(
    open: impl Fn(&Path) -> B,
) {
    let dir = temp_dir();
    let (cache, _clock, cache_dir) = engine(&open, dir.path(), |builder| builder);
    let damages: [(&str, Damage); 4] = [
        ("flipped", |path| {
            let mut bytes = fs::read(path).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x40;
            fs::write(path, bytes).unwrap();
        }),
        ("truncated", |path| {
            let bytes = fs::read(path).unwrap();
            fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
        }),
        ("header", |path| {
            let mut bytes = fs::read(path).unwrap();
            bytes[0] = b'X';
            fs::write(path, bytes).unwrap();
        }),
        ("deleted", |path| fs::remove_file(path).unwrap()),
    ];
    for (index, (damage, apply)) in damages.iter().enumerate() {
        let key = crate::key!(damage = *damage);
        cache.put_bytes(&key, &noise(5_000, index as u64)).unwrap();
        let entry = cache.entry(&key).unwrap().unwrap();
        let path = cache
            .blob_path(&entry)
            .expect("large values have a blob file");
        apply(&path);
        assert_eq!(
            cache.get_bytes(&key).unwrap(),
            None,
            "{damage} blob is a miss"
        );
        assert!(
            cache.entry(&key).unwrap().is_none(),
            "{damage} entry is removed"
        );
        assert!(!path.exists(), "{damage} blob file is removed");
        cache.put_bytes(&key, b"fresh").unwrap();
        assert_eq!(
            cache.get_bytes(&key).unwrap().as_deref(),
            Some(&b"fresh"[..]),
            "{damage} key is usable again"
        );
    }
    // Backends without inline values keep the fresh values in blob files too.
    let mut live: Vec<PathBuf> = cache
        .list(&ListOptions::default())
        .unwrap()
        .iter()
        .filter_map(|entry| cache.blob_path(entry))
        .collect();
    live.sort();
    let kept = blob_files(&cache_dir);
    assert_eq!(kept, live, "no blob left behind but the live entries'");
}

/// A value that does not decode as the requested type is an error, and the entry stays.
pub fn engine_keeps_entries_that_fail_to_decode<B: MetadataBackend + 'static>(
    open: impl Fn(&Path) -> B,
) {
    let dir = temp_dir();
    let (cache, _clock, _) = engine(&open, dir.path(), |builder| builder);
    let key = crate::key!(kind = "text");
    cache.put(&key, &"not a number").unwrap();
    let error = cache.get::<u64>(&key).unwrap_err();
    assert!(matches!(error, crate::Error::Decode { .. }), "{error}");
    assert!(
        error.to_string().contains(&key.key().to_hex()),
        "the error names the key: {error}"
    );
    assert_eq!(
        cache.get::<String>(&key).unwrap().as_deref(),
        Some("not a number")
    );
    // Raw bytes read as types made of bytes (a String when they are UTF-8),
    // and as nothing else; the entry stays either way.
    cache.put_bytes(&key, b"raw").unwrap();
    assert!(matches!(
        cache.get::<u64>(&key).unwrap_err(),
        crate::Error::Decode { .. }
    ));
    assert_eq!(cache.get::<String>(&key).unwrap().as_deref(), Some("raw"));
}

/// Past the size limit, the least recently accessed entries are evicted down to
/// the low watermark; recently read ones stay.
pub fn engine_evicts_least_recently_used_to_the_low_watermark<B: MetadataBackend + 'static>(
    open: impl Fn(&Path) -> B,
) {
    let dir = temp_dir();
    let (cache, clock, cache_dir) = engine(&open, dir.path(), |builder| builder.max_size(10_000));
    for index in 0..10u64 {
        cache
            .put_bytes(&crate::key!(index = index), &noise(1_000, index))
            .unwrap();
        clock.advance(Duration::from_millis(10));
    }
    // Reading the oldest makes it the most recently used.
    assert!(
        cache
            .get_bytes(&crate::key!(index = 0u64))
            .unwrap()
            .is_some()
    );
    clock.advance(Duration::from_millis(10));
    cache
        .put_bytes(&crate::key!(index = 10u64), &noise(1_000, 10))
        .unwrap();
    let stats = cache.stats().unwrap();
    assert!(
        stats.total_size <= 8_000,
        "down to the low watermark: {stats:?}"
    );
    assert!(stats.evictions >= 3, "{stats:?}");
    assert!(
        cache.contains(&crate::key!(index = 0u64)).unwrap(),
        "a recently read entry stays"
    );
    assert!(
        cache.contains(&crate::key!(index = 10u64)).unwrap(),
        "the new entry stays"
    );
    assert!(
        !cache.contains(&crate::key!(index = 1u64)).unwrap(),
        "the coldest entry goes"
    );
    assert_eq!(
        blob_files(&cache_dir).len() as u64,
        stats.entries,
        "evicted blobs are deleted"
    );
    let too_large = cache.put_bytes(&crate::key!(index = 11u64), &noise(20_000, 11));
    assert!(matches!(too_large, Err(crate::Error::TooLarge { .. })));
    assert!(!cache.contains(&crate::key!(index = 11u64)).unwrap());
}

/// The size limit evicts in the order of the policy the cache is configured
/// with: least recently used, least recently stored or least frequently used.
pub fn engine_evicts_in_the_configured_policys_order<B: MetadataBackend + 'static>(
    open: impl Fn(&Path) -> B,
) {
    // Keys 0 to 9 are put 10 ms apart; then key 9 is read three times, and keys
    // 8 down to 0 once each. The put of key 10 passes the limit by 1 000 bytes
    // and three entries go, down to the low watermark.
    for (policy, evicted) in [
        (EvictionPolicy::Lru, [9, 8, 7]),
        (EvictionPolicy::Lrs, [0, 1, 2]),
        (EvictionPolicy::Lfu, [8, 7, 6]),
    ] {
        let dir = temp_dir();
        let (cache, clock, cache_dir) = engine(&open, dir.path(), |builder| {
            builder.max_size(10_000).eviction(policy)
        });
        let key = |index: u64| crate::key!(index = index);
        for index in 0..10u64 {
            cache.put_bytes(&key(index), &noise(1_000, index)).unwrap();
            clock.advance(Duration::from_millis(10));
        }
        for index in [9, 9, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0] {
            assert!(cache.get_bytes(&key(index)).unwrap().is_some());
            clock.advance(Duration::from_millis(10));
        }
        cache.put_bytes(&key(10), &noise(1_000, 10)).unwrap();
        let gone: Vec<u64> = (0..=10u64)
            .filter(|index| !cache.contains(&key(*index)).unwrap())
            .collect();
        let mut expected = evicted.to_vec();
        expected.sort();
        assert_eq!(gone, expected, "{policy} evicts these");
        assert_eq!(cache.stats().unwrap().total_size, 8_000, "{policy}");
        assert_eq!(
            blob_files(&cache_dir).len(),
            8,
            "{policy}: evicted blobs are deleted"
        );
    }
}

/// Replacing, removing, removing a prefix and clearing delete exactly the blobs
/// they orphan.
pub fn engine_removals_leave_no_blob_behind<B: MetadataBackend + 'static>(
    open: impl Fn(&Path) -> B,
) {
    let dir = temp_dir();
    let (cache, _clock, cache_dir) = engine(&open, dir.path(), |builder| builder);
    for index in 0..6u64 {
        let prefix = if index % 2 == 0 { "even" } else { "odd" };
        cache
            .put_bytes_with(
                &crate::key!(index = index),
                &noise(2_000, index),
                &PutOptions::new().prefix(prefix),
            )
            .unwrap();
    }
    cache
        .put_bytes(&crate::key!(index = 0u64), &noise(2_000, 100))
        .unwrap();
    assert_eq!(
        blob_files(&cache_dir).len(),
        6,
        "a replaced value's blob is deleted"
    );
    assert!(cache.remove(&crate::key!(index = 1u64)).unwrap());
    assert!(!cache.remove(&crate::key!(index = 1u64)).unwrap());
    assert_eq!(blob_files(&cache_dir).len(), 5);
    assert_eq!(cache.remove_prefix("odd").unwrap(), 2);
    assert_eq!(blob_files(&cache_dir).len(), 3);
    assert!(
        cache.remove_prefix("a/b").is_err(),
        "a prefix that is a path is rejected"
    );
    assert!(
        cache
            .put_with(
                &crate::key!(index = 9u64),
                &1,
                &PutOptions::new().prefix("../x")
            )
            .is_err(),
        "put rejects a path as prefix"
    );
    assert_eq!(cache.clear().unwrap(), 3);
    assert!(blob_files(&cache_dir).is_empty());
    assert_eq!(cache.stats().unwrap().entries, 0);
}

/// Lists page in key order and skip expired entries; stats count hits and misses.
pub fn engine_lists_pages_and_counts<B: MetadataBackend + 'static>(open: impl Fn(&Path) -> B) {
    let dir = temp_dir();
    let (cache, clock, _) = engine(&open, dir.path(), |builder| builder);
    for index in 0..30u64 {
        let options = PutOptions::new()
            .prefix(if index < 10 { "ten" } else { "rest" })
            .description(format!("#{index}"));
        cache
            .put_with(&crate::key!(index = index), &index, &options)
            .unwrap();
    }
    cache
        .put_with(
            &crate::key!(index = "short-lived"),
            &0,
            &PutOptions::new().ttl(Duration::from_secs(1)),
        )
        .unwrap();
    clock.advance(Duration::from_secs(2));
    let all = cache.list(&ListOptions::default()).unwrap();
    assert_eq!(all.len(), 30, "expired entries are not listed");
    let with_expired = cache
        .list(&ListOptions {
            include_expired: true,
            ..ListOptions::default()
        })
        .unwrap();
    assert_eq!(with_expired.len(), 31);
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = cache
            .list(&ListOptions {
                after,
                limit: Some(7),
                ..ListOptions::default()
            })
            .unwrap();
        after = page.last().map(|entry| entry.key);
        let done = page.len() < 7;
        paged.extend(page);
        if done {
            break;
        }
    }
    assert_eq!(paged, all, "pages add up to the whole list");
    let ten = cache
        .list(&ListOptions {
            prefix: Some("ten".into()),
            ..ListOptions::default()
        })
        .unwrap();
    assert_eq!(ten.len(), 10);

    let before = cache.stats().unwrap();
    assert_eq!(
        cache.get::<u64>(&crate::key!(index = 3u64)).unwrap(),
        Some(3)
    );
    assert_eq!(
        cache.get::<u64>(&crate::key!(index = 3u64)).unwrap(),
        Some(3)
    );
    assert_eq!(cache.get::<u64>(&crate::key!(index = 99u64)).unwrap(), None);
    let after_gets = cache.stats().unwrap();
    assert_eq!(after_gets.hits - before.hits, 2);
    assert_eq!(after_gets.misses - before.misses, 1);
    cache.flush().unwrap();
    let entry = cache.entry(&crate::key!(index = 3u64)).unwrap().unwrap();
    assert_eq!(entry.access_count, 2, "reads are recorded once flushed");
    assert_eq!(entry.accessed_at, clock.now_ms());
    assert_eq!(
        cache.stats().unwrap().hits,
        after_gets.hits,
        "flushing does not double count"
    );
}

/// With an access granularity, reads closer together than it write nothing; the
/// first read after it records the access.
pub fn engine_records_reads_at_most_once_per_granularity<B: MetadataBackend + 'static>(
    open: impl Fn(&Path) -> B,
) {
    let dir = temp_dir();
    let (cache, clock, _) = engine(&open, dir.path(), |builder| {
        builder.access_granularity(Duration::from_secs(60))
    });
    let key = crate::key!(granularity = true);
    cache.put(&key, &1).unwrap();
    let stored_at = clock.now_ms();
    clock.advance(Duration::from_secs(30));
    for _ in 0..5 {
        assert_eq!(cache.get::<i32>(&key).unwrap(), Some(1));
    }
    cache.flush().unwrap();
    let entry = cache.entry(&key).unwrap().unwrap();
    assert_eq!(
        (entry.accessed_at, entry.access_count),
        (stored_at, 0),
        "recent reads write nothing"
    );
    assert_eq!(cache.stats().unwrap().hits, 5, "but they are hits");
    clock.advance(Duration::from_secs(31));
    assert_eq!(cache.get::<i32>(&key).unwrap(), Some(1));
    cache.flush().unwrap();
    let entry = cache.entry(&key).unwrap().unwrap();
    assert_eq!((entry.accessed_at, entry.access_count), (clock.now_ms(), 1));
}

/// For persistent backends, a cache reopened on the same directory serves the
/// values stored before, inline and in blobs.
pub fn engine_reopen_serves_stored_values<B: MetadataBackend + 'static>(open: impl Fn(&Path) -> B) {
    let dir = temp_dir();
    let (cache, _clock, cache_dir) = engine(&open, dir.path(), |builder| builder);
    if !cache.backend().capabilities().persistent {
        return;
    }
    cache.put(&crate::key!(size = "small"), &"small").unwrap();
    cache
        .put_bytes(&crate::key!(size = "large"), &noise(8_000, 3))
        .unwrap();
    drop(cache);
    let reopened = Cache::builder()
        .dir(&cache_dir)
        .open(open(&cache_dir))
        .unwrap();
    assert_eq!(
        reopened
            .get::<String>(&crate::key!(size = "small"))
            .unwrap()
            .as_deref(),
        Some("small")
    );
    assert_eq!(
        reopened.get_bytes(&crate::key!(size = "large")).unwrap(),
        Some(noise(8_000, 3))
    );
}
