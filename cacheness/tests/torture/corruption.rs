//! Corruption torture: bit flips, truncation, deletion and garbage appended to
//! blob files, to `metadata.json`, to the journal and to the SQLite file. Each
//! must end in a clear error, a rebuild, or the entry dropped as corrupted:
//! never wrong bytes, never a panic. Plus proptest feeding arbitrary bytes to the
//! parsers of data read from disk that the backend crates do not already fuzz
//! (the blob header, stored entries, SQLite rows).
//!
//! Default: 40 damaged copies per file kind and backend; with
//! `CACHENESS_TORTURE_LONG=1`: 400.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{Rng, scale};
use cacheness::{
    Cache, CacheKey, Entry, ListOptions, ToKey, backend::BlobHeader, key, ops::no_progress,
};
use proptest::prelude::*;

const ENTRIES: u64 = 24;

fn key_of(id: u64) -> cacheness::Params {
    key!(torture = "corruption", id = id)
}

/// Values of every kind: small (inline where the backend allows), large random
/// (blob), large compressible (blob with lz4).
fn value_of(id: u64) -> Vec<u8> {
    let mut rng = Rng::new(id);
    match id % 3 {
        0 => format!("small {id}").into_bytes(),
        1 => (0..1_000 + rng.below(2_000))
            .map(|_| rng.next_u64() as u8)
            .collect(),
        _ => format!("compressible {id} ").repeat(200).into_bytes(),
    }
}

/// A pristine cache dir: entries in the snapshot and in the journal (json),
/// in the database (sqlite).
fn pristine(backend: &str, dir: &Path) -> BTreeMap<CacheKey, Vec<u8>> {
    let cache = crate::support::open(backend, dir);
    let mut expected = BTreeMap::new();
    for id in 0..ENTRIES {
        cache.put_bytes(&key_of(id), &value_of(id)).unwrap();
        expected.insert(key_of(id).to_key(), value_of(id));
    }
    expected
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for item in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            fs::copy(item.path(), &target).unwrap();
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    FlipBits,
    Truncate,
    Delete,
    AppendGarbage,
    ZeroRange,
}

/// Damages `path` in a random way; returns a description.
fn damage(path: &Path, rng: &mut Rng) -> String {
    let mut bytes = fs::read(path).unwrap();
    let kind = [
        Damage::FlipBits,
        Damage::FlipBits,
        Damage::FlipBits,
        Damage::Truncate,
        Damage::Delete,
        Damage::AppendGarbage,
        Damage::ZeroRange,
    ][rng.below(7) as usize];
    let len = bytes.len() as u64;
    let description = match kind {
        Damage::FlipBits if len > 0 => {
            let flips = 1 + rng.below(4);
            let mut at = Vec::new();
            for _ in 0..flips {
                let offset = rng.below(len) as usize;
                bytes[offset] ^= 1 << rng.below(8);
                at.push(offset);
            }
            format!("bits flipped at {at:?}")
        }
        Damage::Truncate | Damage::FlipBits => {
            let keep = rng.below(len.max(1)) as usize;
            bytes.truncate(keep);
            format!("truncated to {keep} of {len}")
        }
        Damage::Delete => {
            fs::remove_file(path).unwrap();
            return format!("{} deleted", path.display());
        }
        Damage::AppendGarbage => {
            let extra = 1 + rng.below(64);
            bytes.extend((0..extra).map(|_| rng.next_u64() as u8));
            format!("{extra} garbage bytes appended")
        }
        Damage::ZeroRange => {
            let start = rng.below(len.max(1)) as usize;
            let end = (start + 1 + rng.below(4096) as usize).min(bytes.len());
            bytes[start..end].fill(0);
            format!("zeroed {start}..{end}")
        }
    };
    fs::write(path, bytes).unwrap();
    format!("{}: {description}", path.display())
}

/// What reading a damaged cache gave, summed over the cases.
#[derive(Debug, Default)]
struct Outcomes {
    cases: u64,
    open_errors: u64,
    intact: u64,
    dropped: u64,
    errors: u64,
    restored_by_rebuild: u64,
    verify_errors: u64,
    gc_errors: u64,
    inline_key_damage: u64,
}

/// Reads every key (and every listed entry) of a damaged cache: each read is the
/// right bytes, a miss or an error, never other bytes.
fn check_reads(
    cache: &Cache,
    expected: &BTreeMap<CacheKey, Vec<u8>>,
    outcomes: &mut Outcomes,
    context: &str,
) {
    let mut keys: Vec<CacheKey> = expected.keys().copied().collect();
    // A flipped key in the metadata makes an entry nobody wrote: it must not serve.
    if let Ok(listed) = cache.list(&ListOptions::default()) {
        keys.extend(
            listed
                .iter()
                .map(|entry| entry.key)
                .filter(|key| !expected.contains_key(key)),
        );
    }
    for key in keys {
        match cache.get_bytes(&key) {
            Ok(Some(bytes)) if expected.get(&key) == Some(&bytes) => outcomes.intact += 1,
            Ok(Some(bytes)) => {
                let entry = cache.entry(&key).ok().flatten();
                let inline = entry
                    .as_ref()
                    .is_some_and(|entry| entry.blob_name().is_none());
                let served_other_key = expected.values().any(|value| *value == bytes);
                if !expected.contains_key(&key) && inline && served_other_key {
                    // A damaged key of an inline value: the content hash covers the
                    // bytes, not the key, so only entry signing can tell (see
                    // docs/RELIABILITY.md). Counted, and reported by the test.
                    outcomes.inline_key_damage += 1;
                } else {
                    panic!(
                        "{context}: key {key} returned wrong bytes ({} bytes, expected {:?} bytes; entry {entry:?})",
                        bytes.len(),
                        expected.get(&key).map(Vec::len)
                    );
                }
            }
            Ok(None) => outcomes.dropped += 1,
            Err(_) => outcomes.errors += 1,
        }
    }
}

/// Damages a copy of the pristine dir `cases` times, in the file(s) `pick`
/// chooses, and checks every read of the reopened cache; then that a rebuild
/// restores nothing wrong.
fn torture(backend: &str, what: &str, pick: impl Fn(&Path, &mut Rng) -> Vec<PathBuf>) -> Outcomes {
    let seed = crate::support::seed(&format!("corruption {backend} {what}"));
    let mut rng = Rng::new(seed);
    let root = tempfile::tempdir().unwrap();
    let clean = root.path().join("clean");
    let expected = pristine(backend, &clean);
    let mut outcomes = Outcomes::default();
    for case in 0..scale(40, 400) {
        let dir = root.path().join(format!("case-{case}"));
        copy_dir(&clean, &dir);
        let damaged: Vec<String> = pick(&dir, &mut rng)
            .iter()
            .map(|path| damage(path, &mut rng))
            .collect();
        let context = format!("{backend} {what} case {case} (seed {seed}): {damaged:?}");
        outcomes.cases += 1;
        let cache = match crate::support::config(backend, &dir).open() {
            Ok(cache) => cache,
            Err(error) => {
                // A clear error names what failed.
                let message = error.to_string();
                assert!(!message.is_empty(), "{context}");
                outcomes.open_errors += 1;
                fs::remove_dir_all(&dir).unwrap();
                continue;
            }
        };
        check_reads(&cache, &expected, &mut outcomes, &context);
        // Repair and rebuild from the blob files: still nothing wrong, nothing panics.
        outcomes.verify_errors += u64::from(cache.verify(true, &mut no_progress).is_err());
        let before = cache
            .list(&ListOptions::default())
            .map_or(0, |listed| listed.len());
        if cache.rebuild(&mut no_progress).is_ok() {
            let after = cache
                .list(&ListOptions::default())
                .map_or(0, |listed| listed.len());
            outcomes.restored_by_rebuild += after.saturating_sub(before) as u64;
        }
        check_reads(
            &cache,
            &expected,
            &mut outcomes,
            &format!("{context}, after verify + rebuild"),
        );
        outcomes.gc_errors += u64::from(cache.gc(&mut no_progress).is_err());
        drop(cache);
        fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("corruption {backend} {what}: {outcomes:?}");
    outcomes
}

fn random_blob(dir: &Path, rng: &mut Rng) -> Vec<PathBuf> {
    let blobs = crate::support::blob_files(dir);
    let count = 1 + rng.below(3);
    (0..count)
        .map(|_| blobs[rng.below(blobs.len() as u64) as usize].clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn damaged_blob_files_never_serve_wrong_bytes() {
    for backend in crate::support::DISK_BACKENDS {
        let outcomes = torture(backend, "blobs", random_blob);
        assert!(
            outcomes.dropped > 0,
            "{backend}: damage was never noticed: {outcomes:?}"
        );
    }
}

#[test]
fn damaged_json_snapshot_never_serves_wrong_bytes() {
    torture("json", "metadata.json", |dir, _| {
        vec![dir.join("metadata.json")]
    });
}

#[test]
fn damaged_json_journal_never_serves_wrong_bytes() {
    torture("json", "metadata.journal", |dir, _| {
        vec![dir.join("metadata.journal")]
    });
}

#[test]
fn damaged_sqlite_file_never_serves_wrong_bytes() {
    let outcomes = torture("sqlite", "cache_metadata.db", |dir, _| {
        vec![dir.join("cache_metadata.db")]
    });
    assert!(outcomes.cases > 0);
}

#[test]
fn a_deleted_sqlite_file_is_rebuilt_from_the_blobs() {
    let root = tempfile::tempdir().unwrap();
    let expected = pristine("sqlite", root.path());
    let inline: Vec<CacheKey> = crate::support::open("sqlite", root.path())
        .list(&ListOptions::default())
        .unwrap()
        .into_iter()
        .filter(|entry| entry.blob_name().is_none())
        .map(|entry| entry.key)
        .collect();
    fs::remove_file(root.path().join("cache_metadata.db")).unwrap();
    // The open rebuilds a missing database from the blobs, as json does; an
    // explicit rebuild afterwards finds every entry already there.
    let cache = crate::support::open("sqlite", root.path());
    let report = cache.rebuild(&mut no_progress).unwrap();
    assert_eq!(report.restored, 0, "{report:?}");
    let mut restored = 0;
    for (key, bytes) in &expected {
        match cache.get_bytes(key).unwrap() {
            Some(read) => {
                assert_eq!(&read, bytes);
                restored += 1;
            }
            // Values that lived inline in the database had no file.
            None => assert!(inline.contains(key), "a blob-backed entry was not rebuilt"),
        }
    }
    assert_eq!(restored, report.present);
    assert_eq!(restored + inline.len() as u64, ENTRIES);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if crate::support::long_run() { 5_000 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The blob header parser never panics and never accepts a header that
    /// claims a payload beyond the file.
    #[test]
    fn blob_header_decode_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok((_, offset)) = BlobHeader::decode(&bytes) {
            prop_assert!(offset <= bytes.len());
        }
    }

    /// A valid preamble with arbitrary lengths and header text.
    #[test]
    fn blob_header_decode_takes_any_header(
        claimed_len in any::<u32>(),
        header in proptest::collection::vec(any::<u8>(), 0..300),
        json_like in "[{}\":,a-z0-9 \\[\\]]{0,200}",
        use_json in any::<bool>(),
    ) {
        let mut file = b"CNBLOB\x01\x00".to_vec();
        file.extend_from_slice(&claimed_len.to_le_bytes());
        file.extend_from_slice(if use_json { json_like.as_bytes() } else { &header });
        if let Ok((_, offset)) = BlobHeader::decode(&file) {
            prop_assert!(offset <= file.len());
        }
    }

    /// The stored entry form (the JSON of `Entry`, as in the json backend and
    /// blob headers) takes any bytes without panicking.
    #[test]
    fn stored_entry_parser_takes_any_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        json_like in "\\{\"key\":\"[0-9a-f]{32}\",[{}\":,a-z0-9_ \\[\\]]{0,300}",
    ) {
        let _ = serde_json::from_slice::<Entry>(&bytes);
        let _ = serde_json::from_str::<Entry>(&json_like);
    }
}

/// Each column of a SQLite row set to arbitrary values: reading it is an entry,
/// a miss or an error, never a panic, and never wrong bytes.
#[test]
fn arbitrary_sqlite_row_values_never_panic() {
    let root = tempfile::tempdir().unwrap();
    let clean = root.path().join("clean");
    let expected = pristine("sqlite", &clean);
    let columns = [
        "key",
        "prefix",
        "description",
        "type_tag",
        "codec",
        "params",
        "created_at",
        "accessed_at",
        "expires_at",
        "access_count",
        "stored_size",
        "raw_size",
        "compression",
        "content_hash",
        "inline_value",
        "blob_name",
        "signature",
        "user_metadata",
    ];
    let mut rng = Rng::new(crate::support::seed("sqlite rows"));
    let mut outcomes = Outcomes::default();
    for case in 0..scale(60, 600) {
        let dir = root.path().join(format!("case-{case}"));
        copy_dir(&clean, &dir);
        let column = columns[rng.below(columns.len() as u64) as usize];
        let id = rng.below(ENTRIES);
        let value: rusqlite::types::Value = match rng.below(6) {
            0 => rusqlite::types::Value::Null,
            1 => rusqlite::types::Value::Integer(rng.next_u64() as i64),
            2 => rusqlite::types::Value::Integer(-1),
            3 => rusqlite::types::Value::Real(f64::from_bits(rng.next_u64())),
            4 => rusqlite::types::Value::Text(
                String::from_utf8_lossy(
                    &(0..rng.below(40))
                        .map(|_| rng.next_u64() as u8)
                        .collect::<Vec<_>>(),
                )
                .into_owned(),
            ),
            _ => rusqlite::types::Value::Blob(
                (0..rng.below(40)).map(|_| rng.next_u64() as u8).collect(),
            ),
        };
        {
            let conn = rusqlite::Connection::open(dir.join("cache_metadata.db")).unwrap();
            // Constraints (NOT NULL, the inline/blob CHECK) may refuse a value: that
            // damage cannot happen through SQLite, so the case is skipped.
            let sql = format!("UPDATE entries SET {column} = ?1 WHERE key = ?2");
            let key = key_of(id).to_key();
            if conn
                .execute(&sql, rusqlite::params![value, key.as_bytes().as_slice()])
                .is_err()
            {
                fs::remove_dir_all(&dir).unwrap();
                continue;
            }
        }
        outcomes.cases += 1;
        let context = format!("sqlite row {id} column {column} = {value:?}");
        let cache = crate::support::open("sqlite", &dir);
        check_reads(&cache, &expected, &mut outcomes, &context);
        outcomes.verify_errors += u64::from(cache.verify(true, &mut no_progress).is_err());
        outcomes.gc_errors += u64::from(cache.gc(&mut no_progress).is_err());
        check_reads(&cache, &expected, &mut outcomes, &context);
        drop(cache);
        fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("corruption sqlite rows: {outcomes:?}");
}
