//! The snapshot parsed with simd-json one entry at a time.
//!
//! simd-json parses a document in two passes: the first records the position of
//! every structural character, the second builds a tape of every value, which
//! serde then reads. On a whole 100 000-entry snapshot (~60 MB) the index and
//! the tape take another ~150 MB, and writing then reading that memory costs
//! more than serde_json's single pass. Parsed one entry at a time, index and
//! tape are a few kilobytes, reused for every entry, and stay in the CPU cache.
//!
//! The entries are found from the layout the snapshot writer produces
//! (serde_json's pretty printer): the array opens on the line
//! `  "entries": [`, and each entry is an object whose braces are indented by
//! four spaces. That layout is checked, not trusted:
//!
//! - the text before the first entry and after the last, joined around an
//!   empty array, must parse as a snapshot, and a scan of the text before
//!   proves the array is the value of the top-level `entries` field;
//! - each piece between two separators must parse, alone, as one complete
//!   entry. A cut anywhere but between two elements of that array leaves a
//!   piece with an unclosed string, object or array, which does not parse.
//!
//! So when every piece parses, the document is exactly that snapshot with
//! those entries, and the result is the one a whole-document parse gives.
//! Anything else (a hand-edited layout, damage) returns `None`; the caller then
//! parses the whole document, which gives the verdict it always gave.

use std::ops::Range;

use cacheness_core::Entry;
use memchr::memmem;
use serde::Deserialize;
use simd_json::{Buffers, DEFAULT_MAX_DEPTH, Deserializer, INPUT_PADDING, Tape, fill_tape_padded};

use crate::format::{Snapshot, SnapshotEntries};

/// The line that opens the entries array, up to its `[`.
const ENTRIES_KEY: &[u8] = b"\n  \"entries\": [";
/// The line that opens an entry, up to its `{`.
const ENTRY_OPEN: &[u8] = b"\n    {";
/// The line that closes an entry, up to its `}`.
const ENTRY_CLOSE: &[u8] = b"\n    }";
/// After an entry's `}`: another entry, up to its `{`.
const NEXT_ENTRY: &[u8] = b",\n    {";
/// After the last entry's `}`: the end of the array, up to its `]`.
const ENTRIES_END: &[u8] = b"\n  ]";
/// An entry is nested two levels deep in the document (the snapshot object,
/// the array), so alone it may nest two levels less than the whole document.
const ENTRY_MAX_DEPTH: usize = DEFAULT_MAX_DEPTH - 2;
/// Initial size of the parser's buffers: a typical entry fits.
const TYPICAL_ENTRY_LEN: usize = 2048;

/// Where the entries array and its elements are in a snapshot.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    /// The position of the `[` opening the array.
    array_open: usize,
    /// Each entry, from its `{` to its `}` included.
    entries: Vec<Range<usize>>,
    /// The position of the `]` closing the array.
    array_close: usize,
}

/// Parses `document` one entry at a time; `None` when its layout is not the
/// writer's or any part fails to parse (see the [module docs](self)).
pub(crate) fn parse_by_entry(document: &[u8]) -> Option<Snapshot> {
    let layout = find_layout(document)?;
    if !opens_top_level_value(&document[..layout.array_open]) {
        return None;
    }
    let mut outline = Vec::with_capacity(document.len() - layout.array_close + 256);
    outline.extend_from_slice(&document[..=layout.array_open]);
    outline.extend_from_slice(&document[layout.array_close..]);
    let mut snapshot: Snapshot = simd_json::serde::from_slice(&mut outline).ok()?;
    if !snapshot.entries.by_key.is_empty() || !snapshot.entries.rejected.is_empty() {
        return None;
    }
    snapshot.entries = parse_entries(document, &layout.entries)?;
    Some(snapshot)
}

/// Locates the entries array and each entry by the writer's layout.
fn find_layout(document: &[u8]) -> Option<Layout> {
    let array_open = memmem::find(document, ENTRIES_KEY)? + ENTRIES_KEY.len() - 1;
    if !document[array_open + 1..].starts_with(ENTRY_OPEN) {
        return None;
    }
    let entry_close = memmem::Finder::new(ENTRY_CLOSE);
    let mut entries = Vec::new();
    let mut start = array_open + ENTRY_OPEN.len();
    loop {
        let end = start + entry_close.find(&document[start..])? + ENTRY_CLOSE.len();
        entries.push(start..end);
        let rest = &document[end..];
        if rest.starts_with(NEXT_ENTRY) {
            start = end + NEXT_ENTRY.len() - 1;
        } else if rest.starts_with(ENTRIES_END) {
            let array_close = end + ENTRIES_END.len() - 1;
            return Some(Layout {
                array_open,
                entries,
                array_close,
            });
        } else {
            return None;
        }
    }
}

/// Whether a value placed right after `head` is a member of the top-level
/// object: `head` ends outside any string, one object deep.
fn opens_top_level_value(head: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in head {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => match depth.checked_sub(1) {
                    Some(outer) => depth = outer,
                    None => return false,
                },
                _ => {}
            }
        }
    }
    !in_string && depth == 1
}

/// Parses each span of `document` as one entry, reusing one set of buffers and
/// one tape. Each piece is copied out first because simd-json unescapes strings
/// in place: the document stays intact for a whole-document parse after a
/// failure here.
fn parse_entries(document: &[u8], spans: &[Range<usize>]) -> Option<SnapshotEntries> {
    let mut buffers = Buffers::with_max_depth(TYPICAL_ENTRY_LEN, ENTRY_MAX_DEPTH);
    let mut piece = Vec::with_capacity(TYPICAL_ENTRY_LEN + INPUT_PADDING);
    let mut tape = Tape::null();
    let mut entries = SnapshotEntries::default();
    for span in spans {
        piece.clear();
        piece.extend_from_slice(&document[span.clone()]);
        piece.resize(span.len() + INPUT_PADDING, b' ');
        let mut filled = tape.reset();
        fill_tape_padded(&mut piece, span.len(), &mut buffers, &mut filled).ok()?;
        let mut deserializer = Deserializer::from_tape(filled);
        entries.add(Entry::deserialize(&mut deserializer).ok()?);
        tape = deserializer.into_tape().reset();
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cacheness_core::conformance::{arb_entry, key_of, sample_entry};
    use cacheness_core::{CacheKey, Counters};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::format::encode_snapshot;

    fn document_of(entries: impl IntoIterator<Item = Entry>) -> Vec<u8> {
        let entries: BTreeMap<CacheKey, Entry> = entries
            .into_iter()
            .map(|entry| (entry.key, entry))
            .collect();
        encode_snapshot(&entries, Counters::default(), 3).unwrap()
    }

    /// Everything a snapshot holds, comparable even with NaN parameters.
    fn summary(snapshot: &Snapshot) -> serde_json::Value {
        json!({
            "format_version": snapshot.format_version,
            "generation": snapshot.generation,
            "counters": snapshot.counters,
            "entries": snapshot.entries.by_key.values().collect::<Vec<_>>(),
            "rejected": snapshot.entries.rejected,
        })
    }

    fn whole_document(document: &[u8]) -> Option<serde_json::Value> {
        simd_json::serde::from_slice::<Snapshot>(&mut document.to_vec())
            .ok()
            .map(|snapshot| summary(&snapshot))
    }

    #[test]
    fn a_member_named_entries_deeper_down_is_not_the_entries() {
        let entry = serde_json::to_string_pretty(&sample_entry(key_of(1), 5)).unwrap();
        let entry = entry.replace('\n', "\n    ");
        let document = format!(
            "{{\n  \"format_version\": 1,\n  \"generation\": 1,\n  \"counters\": {{\n  \"entries\": [\n    {}\n  ]\n  }},\n  \"entries\": []\n}}\n",
            &entry[..]
        );
        assert!(find_layout(document.as_bytes()).is_some());
        assert!(parse_by_entry(document.as_bytes()).is_none());
        let whole = whole_document(document.as_bytes()).unwrap();
        assert_eq!(whole["entries"], json!([]));
    }

    #[test]
    fn a_damaged_entry_is_left_to_the_whole_document_parse() {
        let mut entry = sample_entry(key_of(1), 5);
        entry.description = "a \"quoted\" \\ description\n".into();
        let mut document = document_of([entry, sample_entry(key_of(2), 6)]);
        assert!(parse_by_entry(&document).is_some());
        // A trailing comma in the last entry: the layout is intact, the entry is not.
        let last_entry_close = memmem::rfind(&document, ENTRY_CLOSE).unwrap();
        document.insert(last_entry_close, b',');
        assert!(find_layout(&document).is_some());
        assert!(parse_by_entry(&document).is_none());
        assert!(whole_document(&document).is_none());
    }

    proptest! {
        #[test]
        fn the_writers_layout_is_parsed_entry_by_entry(
            entries in proptest::collection::vec(arb_entry(), 1..6),
        ) {
            let document = document_of(entries);
            let snapshot = parse_by_entry(&document);
            prop_assert!(snapshot.is_some());
            prop_assert_eq!(snapshot.map(|snapshot| summary(&snapshot)), whole_document(&document));
        }

        #[test]
        fn an_edited_document_never_parses_to_something_else(
            entries in proptest::collection::vec(arb_entry(), 1..4),
            edits in proptest::collection::vec(
                (any::<prop::sample::Index>(), 0..3u8, prop::sample::select(b"{}[]\",:\\ \n0a".to_vec())),
                1..4,
            ),
        ) {
            let mut document = document_of(entries);
            for (at, kind, byte) in edits {
                let position = at.index(document.len());
                match kind {
                    0 => { document.remove(position); }
                    1 => document.insert(position, byte),
                    _ => document[position] = byte,
                }
            }
            if let Some(snapshot) = parse_by_entry(&document) {
                prop_assert_eq!(Some(summary(&snapshot)), whole_document(&document));
            }
        }
    }

    /// A snapshot in the writer's layout holding `entries` as given, repeated
    /// keys included (the writer never repeats one; a hand edit might).
    fn document_with_repeats(entries: &[Entry]) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            format_version: u64,
            generation: u64,
            counters: crate::format::StoredCounters,
            entries: &'a [Entry],
        }
        let mut out = serde_json::to_vec_pretty(&Out {
            format_version: 1,
            generation: 3,
            counters: Default::default(),
            entries,
        })
        .unwrap();
        out.push(b'\n');
        out
    }

    proptest! {
        #[test]
        fn a_repeated_key_keeps_its_last_entry_as_in_the_whole_document(
            entries in proptest::collection::vec(arb_entry(), 1..6),
            repeats in proptest::collection::vec(any::<prop::sample::Index>(), 1..4),
        ) {
            let mut entries = entries;
            for repeat in repeats {
                let mut again = repeat.get(&entries).clone();
                again.access_count = again.access_count.wrapping_add(1);
                entries.push(again);
            }
            let document = document_with_repeats(&entries);
            let snapshot = parse_by_entry(&document);
            prop_assert!(snapshot.is_some());
            prop_assert_eq!(snapshot.map(|snapshot| summary(&snapshot)), whole_document(&document));
        }
    }

    #[test]
    fn layout_finds_each_entry() {
        let document = b"{\n  \"generation\": 1,\n  \"entries\": [\n    {\n      \"a\": 1\n    },\n    {}\n    }\n  ]\n}\n";
        // `{}` followed by a closing line: the second piece is `{}\n    }`, which
        // fails to parse later; the layout itself is found.
        let layout = find_layout(document).unwrap();
        let pieces: Vec<&[u8]> = layout
            .entries
            .iter()
            .map(|span| &document[span.clone()])
            .collect();
        assert_eq!(pieces, vec![&b"{\n      \"a\": 1\n    }"[..], b"{}\n    }"]);
        assert_eq!(document[layout.array_open], b'[');
        assert_eq!(document[layout.array_close], b']');
        assert!(find_layout(b"{\"entries\":[{}]}").is_none());
        assert!(find_layout(b"{\n  \"entries\": [\n    {\n      \"a\": 1\n    } ]}").is_none());
    }

    #[test]
    fn only_a_member_of_the_top_level_object_counts() {
        assert!(opens_top_level_value(
            b"{\n  \"generation\": 1,\n  \"entries\": "
        ));
        assert!(opens_top_level_value(br#"{"a": "\"{[", "entries": "#));
        assert!(!opens_top_level_value(br#"{"counters": {"entries": "#));
        assert!(!opens_top_level_value(br#"{"a": "x, "entries": "#));
        assert!(!opens_top_level_value(
            br#"{"a": "\\", "b": [], "c": "\", "entries": "#
        ));
        assert!(!opens_top_level_value(b"}{"));
    }
}
