//! The on-disk formats: the snapshot (`metadata.json`) and the journal
//! (`metadata.journal`), and their parsers. Parsers never panic on bad bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use cacheness_core::blob::BlobName;
use cacheness_core::{CacheKey, Counters, Entry, SharedEntry};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// The metadata format this build writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// The in-memory index, in key order. Entries are shared: a read or a listing
/// takes a reference count, not a copy, and a change to an entry someone holds
/// copies it first ([`SharedEntry::make_mut`]).
pub(crate) type Entries = BTreeMap<CacheKey, Arc<SharedEntry>>;

/// An entry on disk that cannot be decoded (nested past the parser's depth
/// limit, a field of the wrong type): kept as written, so that compaction
/// carries it over unchanged until it is removed.
#[derive(Debug, Clone)]
pub(crate) struct Unreadable {
    /// The entry's JSON text, as found (valid JSON: it was parsed as a value).
    pub raw: Box<RawValue>,
    /// Why it cannot be decoded.
    pub reason: String,
}

impl PartialEq for Unreadable {
    fn eq(&self, other: &Self) -> bool {
        self.raw.get() == other.raw.get() && self.reason == other.reason
    }
}

/// The unreadable entries, by the key each names.
pub(crate) type UnreadableEntries = BTreeMap<CacheKey, Unreadable>;

/// Hit, miss and eviction totals as stored in the snapshot and in touch records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct StoredCounters {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

impl From<Counters> for StoredCounters {
    fn from(counters: Counters) -> Self {
        StoredCounters {
            hits: counters.hits,
            misses: counters.misses,
            evictions: counters.evictions,
        }
    }
}

impl From<StoredCounters> for Counters {
    fn from(counters: StoredCounters) -> Self {
        Counters {
            hits: counters.hits,
            misses: counters.misses,
            evictions: counters.evictions,
        }
    }
}

/// One read of a key, as a touch record stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredTouch {
    pub key: CacheKey,
    pub accessed_at: u64,
    pub count: u64,
}

/// One line of the journal: `{"put":{..entry..}}`, `{"remove":{"key":".."}}`,
/// `{"touch":{..}}`, `{"clear":{}}`, and first of all `{"header":{..}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Record {
    /// The first line: which snapshot generation the journal continues.
    Header {
        format_version: u64,
        generation: u64,
    },
    /// An entry stored (replacing any previous one).
    Put(Box<Entry>),
    /// An entry removed.
    Remove { key: CacheKey },
    /// Reads recorded in one batch.
    Touch {
        touches: Vec<StoredTouch>,
        #[serde(default, skip_serializing_if = "is_zero")]
        counters: StoredCounters,
    },
    /// Every entry removed.
    Clear {},
    /// A `put` whose entry names a key but cannot be decoded. Only ever parsed
    /// (by [`parse_record`]), never written as such.
    #[serde(skip)]
    Unreadable { key: CacheKey, entry: Unreadable },
}

fn is_zero(counters: &StoredCounters) -> bool {
    *counters == StoredCounters::default()
}

/// A journal line: the record followed by a newline.
pub(crate) fn encode_record(record: &Record) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(record)?;
    line.push(b'\n');
    Ok(line)
}

/// Why a record or snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not valid JSON of the expected shape.
    Malformed(String),
    /// Written by a newer format version.
    Newer(u64),
}

/// Parses one journal line (without its newline). Entries whose blob name could
/// point outside the cache dir are refused. A `put` whose entry names a key but
/// cannot be decoded is [`Record::Unreadable`].
///
/// serde_json reads lines (fast on small ones); a line it refuses is read
/// again with simd-json, which reads what the snapshot reader reads (its depth
/// limit is 1024, serde_json's 128), so an entry is readable in the journal
/// exactly when it is in the snapshot.
pub(crate) fn parse_record(line: &[u8]) -> Result<Record, Refusal> {
    let record: Record = match serde_json::from_slice(line) {
        Ok(record) => record,
        Err(error) => match simd_json::serde::from_slice::<Record>(&mut line.to_vec()) {
            Ok(record) => record,
            Err(deep_error) => {
                return salvage_put(line, deep_error.to_string())
                    .ok_or_else(|| Refusal::Malformed(error.to_string()));
            }
        },
    };
    match &record {
        Record::Put(entry) => check_entry(entry).map_err(Refusal::Malformed)?,
        Record::Header { format_version, .. } if *format_version > FORMAT_VERSION => {
            return Err(Refusal::Newer(*format_version));
        }
        _ => {}
    }
    Ok(record)
}

/// A `put` line whose entry cannot be decoded, as [`Record::Unreadable`], if
/// the line is a `put` of one JSON value that names a key.
fn salvage_put(line: &[u8], reason: String) -> Option<Record> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PutLine {
        put: Box<RawValue>,
    }
    let line: PutLine = serde_json::from_slice(line).ok()?;
    let key = key_of_raw(&line.put)?;
    Some(Record::Unreadable {
        key,
        entry: Unreadable {
            raw: line.put,
            reason,
        },
    })
}

/// The key an entry's JSON names, found without decoding the rest of it:
/// serde_json skips the other fields without a depth limit.
fn key_of_raw(raw: &RawValue) -> Option<CacheKey> {
    #[derive(Deserialize)]
    struct KeyOnly {
        key: CacheKey,
    }
    serde_json::from_str::<KeyOnly>(raw.get())
        .ok()
        .map(|found| found.key)
}

/// Refuses an entry whose blob name is not one the blob store makes (`..`,
/// absolute paths, separators).
pub(crate) fn check_entry(entry: &Entry) -> Result<(), String> {
    match entry.blob_name() {
        Some(name) if BlobName::parse(name).is_err() => Err(format!(
            "entry {} names blob `{}`, which is not a blob store name",
            entry.key,
            name.escape_debug()
        )),
        _ => Ok(()),
    }
}

/// The complete lines of `bytes` (the last one may lack its newline: then it is
/// torn and left out) and how many bytes they span, newlines included.
pub(crate) fn complete_lines(bytes: &[u8]) -> (impl Iterator<Item = &[u8]>, usize) {
    let complete = bytes
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |last_newline| last_newline + 1);
    let lines = bytes[..complete]
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty());
    (lines, complete)
}

/// The snapshot as written: pretty-printed, entries in ascending key order.
#[derive(Serialize)]
struct SnapshotOut<'a> {
    format_version: u64,
    generation: u64,
    counters: StoredCounters,
    entries: AllEntries<'a>,
}

/// The readable entries and the unreadable ones (as written), merged in key
/// order.
struct AllEntries<'a> {
    readable: &'a Entries,
    unreadable: &'a UnreadableEntries,
}

impl Serialize for AllEntries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq =
            serializer.serialize_seq(Some(self.readable.len() + self.unreadable.len()))?;
        let mut readable = self.readable.iter().peekable();
        let mut unreadable = self.unreadable.iter().peekable();
        loop {
            let raw_first = match (readable.peek(), unreadable.peek()) {
                (None, None) => break,
                (Some((key, _)), Some((raw_key, _))) => raw_key < key,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            if raw_first {
                if let Some((_, entry)) = unreadable.next() {
                    seq.serialize_element(&*entry.raw)?;
                }
            } else if let Some((_, shared)) = readable.next() {
                seq.serialize_element(shared.entry())?;
            }
        }
        seq.end()
    }
}

/// The bytes of a snapshot of `entries` and `unreadable`.
pub(crate) fn encode_snapshot(
    entries: &Entries,
    unreadable: &UnreadableEntries,
    counters: Counters,
    generation: u64,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(64 + entries.len() * 640);
    serde_json::to_writer_pretty(
        &mut out,
        &SnapshotOut {
            format_version: FORMAT_VERSION,
            generation,
            counters: counters.into(),
            entries: AllEntries {
                readable: entries,
                unreadable,
            },
        },
    )?;
    out.push(b'\n');
    Ok(out)
}

/// A parsed snapshot.
#[derive(Debug, Deserialize)]
pub(crate) struct Snapshot {
    pub format_version: u64,
    pub generation: u64,
    #[serde(default)]
    pub counters: StoredCounters,
    pub entries: SnapshotEntries,
}

/// A snapshot's entries, put in the map as they are parsed: building it entry
/// by entry costs less than collecting them in a list and then in a map. A
/// repeated key keeps its last (acceptable) entry.
#[derive(Debug, Default)]
pub(crate) struct SnapshotEntries {
    pub by_key: Entries,
    /// Entries that name a key but cannot be decoded (only found by
    /// [`parse_snapshot_tolerant`]).
    pub unreadable: UnreadableEntries,
    /// Why each entry [`check_entry`] refused was left out.
    pub rejected: Vec<String>,
}

impl SnapshotEntries {
    pub(crate) fn add(&mut self, entry: Entry) {
        match check_entry(&entry) {
            Ok(()) => {
                self.unreadable.remove(&entry.key);
                self.by_key
                    .insert(entry.key, Arc::new(SharedEntry::new(entry)));
            }
            Err(reason) => self.rejected.push(reason),
        }
    }

    /// Adds the entry `raw` as the snapshot reader reads one (simd-json), or
    /// as unreadable if it cannot be decoded but names a key.
    fn add_raw(&mut self, raw: Box<RawValue>) {
        let decoded = simd_json::serde::from_slice::<Entry>(&mut raw.get().as_bytes().to_vec());
        match decoded {
            Ok(entry) => self.add(entry),
            Err(error) => match key_of_raw(&raw) {
                Some(key) => {
                    self.by_key.remove(&key);
                    self.unreadable.insert(
                        key,
                        Unreadable {
                            raw,
                            reason: error.to_string(),
                        },
                    );
                }
                None => self.rejected.push(format!(
                    "an entry that names no key cannot be read: {error}"
                )),
            },
        }
    }
}

impl<'de> Deserialize<'de> for SnapshotEntries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(SnapshotEntriesVisitor)
    }
}

struct SnapshotEntriesVisitor;

impl<'de> serde::de::Visitor<'de> for SnapshotEntriesVisitor {
    type Value = SnapshotEntries;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of entries")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = SnapshotEntries::default();
        while let Some(entry) = seq.next_element::<Entry>()? {
            entries.add(entry);
        }
        Ok(entries)
    }
}

/// How far into a snapshot the version field is looked for before parsing.
pub(crate) const VERSION_PROBE_LEN: usize = 4096;

/// The `format_version` near the start of a snapshot, found without parsing the
/// whole file, so a newer format is told apart from damage even when its shape is
/// unknown. Every version writes that field first.
pub(crate) fn probe_version(bytes: &[u8]) -> Option<u64> {
    let head = &bytes[..bytes.len().min(VERSION_PROBE_LEN)];
    let field = b"\"format_version\"";
    let at = head
        .windows(field.len())
        .position(|window| window == field)?;
    let rest = &head[at + field.len()..];
    let rest = &rest[rest.iter().position(|byte| !byte.is_ascii_whitespace())?..];
    let rest = rest.strip_prefix(b":")?;
    let rest = &rest[rest.iter().position(|byte| !byte.is_ascii_whitespace())?..];
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Parses a snapshot that [`parse_snapshot`](crate::by_entry::parse_snapshot)
/// refused, one entry at a time: the document must be valid JSON of the
/// snapshot's shape, but an entry that cannot be decoded (nested deeper than
/// simd-json's limit, a field of the wrong type) is kept aside as unreadable
/// instead of failing the whole. serde_json checks each entry's syntax and
/// finds its key at any depth.
pub(crate) fn parse_snapshot_tolerant(bytes: &[u8]) -> Result<Snapshot, Refusal> {
    #[derive(Deserialize)]
    struct Tolerant {
        format_version: u64,
        generation: u64,
        #[serde(default)]
        counters: StoredCounters,
        entries: Vec<Box<RawValue>>,
    }
    if let Some(version) = probe_version(bytes).filter(|&version| version > FORMAT_VERSION) {
        return Err(Refusal::Newer(version));
    }
    let tolerant: Tolerant =
        serde_json::from_slice(bytes).map_err(|error| Refusal::Malformed(error.to_string()))?;
    let mut entries = SnapshotEntries::default();
    for raw in tolerant.entries {
        entries.add_raw(raw);
    }
    check_version(Snapshot {
        format_version: tolerant.format_version,
        generation: tolerant.generation,
        counters: tolerant.counters,
        entries,
    })
}

/// Refuses a parsed snapshot of a newer or impossible format version.
pub(crate) fn check_version(snapshot: Snapshot) -> Result<Snapshot, Refusal> {
    if snapshot.format_version > FORMAT_VERSION {
        return Err(Refusal::Newer(snapshot.format_version));
    }
    if snapshot.format_version == 0 {
        return Err(Refusal::Malformed("format version 0 does not exist".into()));
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::by_entry::{Parser, parse_snapshot};
    use cacheness_core::conformance::{arb_entry, key_of, sample_entry};
    use proptest::prelude::*;

    #[test]
    fn snapshot_round_trips_with_both_parsers_in_key_order() {
        let mut entries = Entries::new();
        for index in 0..20 {
            let entry = sample_entry(key_of(index), 1_000 + index);
            entries.insert(entry.key, Arc::new(SharedEntry::new(entry)));
        }
        let plain = |entries: &Entries| -> Vec<Entry> {
            entries
                .values()
                .map(|shared| shared.entry().clone())
                .collect()
        };
        let counters = Counters {
            hits: 3,
            misses: 2,
            evictions: 1,
        };
        let bytes = encode_snapshot(&entries, &UnreadableEntries::new(), counters, 7).unwrap();
        assert!(bytes.starts_with(b"{\n  \"format_version\": 1,\n  \"generation\": 7"));
        for parser in [Parser::SimdJson, Parser::SerdeJson] {
            let snapshot = parse_snapshot(&mut bytes.clone(), parser).unwrap();
            assert_eq!(snapshot.generation, 7);
            assert_eq!(Counters::from(snapshot.counters), counters);
            assert_eq!(plain(&snapshot.entries.by_key), plain(&entries));
            assert!(snapshot.entries.rejected.is_empty());
        }
    }

    #[test]
    fn newer_versions_are_told_from_damage() {
        let newer = br#"{"format_version": 9, "generation": 1, "shards": {}}"#;
        let same_shape = br#"{"format_version": 2, "generation": 1, "entries": []}"#;
        for parser in [Parser::SimdJson, Parser::SerdeJson] {
            assert_eq!(
                parse_snapshot(&mut newer.to_vec(), parser).unwrap_err(),
                Refusal::Newer(9)
            );
            assert_eq!(
                parse_snapshot(&mut same_shape.to_vec(), parser).unwrap_err(),
                Refusal::Newer(2)
            );
            assert!(matches!(
                parse_snapshot(&mut b"{\"format_ver".to_vec(), parser),
                Err(Refusal::Malformed(_))
            ));
        }
        let header = br#"{"header":{"format_version":3,"generation":1}}"#;
        assert_eq!(parse_record(header).unwrap_err(), Refusal::Newer(3));
    }

    #[test]
    fn records_refuse_blob_names_outside_the_store() {
        let mut entry = sample_entry(key_of(1), 5);
        for bad in ["../../etc/passwd", "/etc/passwd", "ab/../../x"] {
            entry.location = cacheness_core::Location::Blob(bad.into());
            let line = serde_json::to_vec(&Record::Put(Box::new(entry.clone()))).unwrap();
            assert!(
                matches!(parse_record(&line), Err(Refusal::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn torn_last_line_is_left_out() {
        let (lines, complete) = complete_lines(b"{\"a\":1}\n\n{\"b\":2}\n{\"c\":");
        assert_eq!(
            lines.collect::<Vec<_>>(),
            vec![&b"{\"a\":1}"[..], b"{\"b\":2}"]
        );
        assert_eq!(complete, 17);
        let (lines, complete) = complete_lines(b"no newline");
        assert_eq!((lines.count(), complete), (0, 0));
    }

    proptest! {
        #[test]
        fn records_round_trip(entry in arb_entry()) {
            let record = Record::Put(Box::new(entry));
            let line = encode_record(&record).unwrap();
            prop_assert_eq!(line.iter().filter(|&&byte| byte == b'\n').count(), 1);
            let parsed = parse_record(&line[..line.len() - 1]).unwrap();
            // Compare JSON forms: a NaN parameter is not equal to itself.
            prop_assert_eq!(serde_json::to_value(&parsed).unwrap(), serde_json::to_value(&record).unwrap());
        }

        #[test]
        fn the_tolerant_parse_of_a_readable_snapshot_is_the_strict_one(
            entries in proptest::collection::vec(arb_entry(), 0..5),
        ) {
            let entries: Entries = entries
                .into_iter()
                .map(|entry| (entry.key, Arc::new(SharedEntry::new(entry))))
                .collect();
            let bytes = encode_snapshot(&entries, &UnreadableEntries::new(), Counters::default(), 2).unwrap();
            let strict = parse_snapshot(&mut bytes.clone(), Parser::SimdJson).unwrap();
            let tolerant = parse_snapshot_tolerant(&bytes).unwrap();
            prop_assert!(tolerant.entries.unreadable.is_empty());
            let json = |snapshot: &Snapshot| -> Vec<serde_json::Value> {
                snapshot.entries.by_key.values().map(|shared| serde_json::to_value(shared.entry()).unwrap()).collect()
            };
            prop_assert_eq!(json(&tolerant), json(&strict));
            prop_assert_eq!(tolerant.generation, strict.generation);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_record(&bytes);
            let _ = complete_lines(&bytes).0.count();
            let _ = parse_snapshot(&mut bytes.clone(), Parser::SimdJson);
            let _ = parse_snapshot(&mut bytes.clone(), Parser::SerdeJson);
            let _ = parse_snapshot_tolerant(&bytes);
        }

        #[test]
        fn json_shaped_garbage_never_panics(
            version in any::<u64>(),
            generation in any::<u64>(),
            body in "[\\[\\]{}\":,a-z0-9 ]{0,200}",
        ) {
            let text = format!("{{\"format_version\":{version},\"generation\":{generation},\"entries\":{body}");
            let _ = parse_snapshot(&mut text.clone().into_bytes(), Parser::SimdJson);
            let _ = parse_record(format!("{{\"put\":{body}").as_bytes());
            let _ = parse_record(format!("{{\"header\":{{\"format_version\":{version},\"generation\":{body}").as_bytes());
        }
    }
}
