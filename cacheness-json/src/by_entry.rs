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

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::ops::Range;

use cacheness_core::{CacheKey, Entry};
use memchr::memmem;
use serde::Deserialize;
use serde::de::IgnoredAny;
use simd_json::{Buffers, DEFAULT_MAX_DEPTH, Deserializer, INPUT_PADDING, Tape, fill_tape_padded};

use crate::format::{
    FORMAT_VERSION, Refusal, Snapshot, SnapshotEntries, VERSION_PROBE_LEN, check_version,
    probe_version,
};

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
    let mut snapshot = parse_outline(&mut outline)?;
    snapshot.entries = parse_entries(document, &layout.entries)?;
    Some(snapshot)
}

/// Which JSON parser reads the snapshot: simd-json; the tests also parse
/// with serde_json, the reference the simd-json reader must agree with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parser {
    /// simd-json: one entry at a time when the snapshot has the layout this
    /// crate writes, else the whole document at once.
    SimdJson,
    /// serde_json, the tests' reference.
    #[cfg(test)]
    SerdeJson,
}

/// Parses a snapshot; `bytes` is used as scratch space by simd-json.
pub(crate) fn parse_snapshot(bytes: &mut [u8], parser: Parser) -> Result<Snapshot, Refusal> {
    if let Some(version) = probe_version(bytes).filter(|&version| version > FORMAT_VERSION) {
        return Err(Refusal::Newer(version));
    }
    let parsed = match parser {
        Parser::SimdJson => match parse_by_entry(bytes) {
            Some(snapshot) => Ok(snapshot),
            None => {
                simd_json::serde::from_slice::<Snapshot>(bytes).map_err(|error| error.to_string())
            }
        },
        #[cfg(test)]
        Parser::SerdeJson => {
            serde_json::from_slice::<Snapshot>(bytes).map_err(|error| error.to_string())
        }
    };
    check_version(parsed.map_err(Refusal::Malformed)?)
}

/// Bytes read from the snapshot file at a time by [`parse_by_entry_from`].
pub(crate) const READ_CHUNK: usize = 1 << 20;
/// The text before the entries array is a few lines; a longer one is not the
/// writer's layout.
const HEAD_LIMIT: usize = 1 << 20;

/// A file read a chunk at a time into one buffer, from which the consumed
/// front is dropped.
struct Chunks<R> {
    reader: R,
    chunk: usize,
    buf: Vec<u8>,
    eof: bool,
    total: u64,
}

impl<R: Read> Chunks<R> {
    /// Drops `buf[..consumed]` and reads one more chunk; `false` at the end.
    fn refill(&mut self, consumed: usize) -> io::Result<bool> {
        self.buf.drain(..consumed);
        if self.eof {
            return Ok(false);
        }
        let before = self.buf.len();
        let read = (&mut self.reader)
            .take(self.chunk as u64)
            .read_to_end(&mut self.buf)?;
        self.total += read as u64;
        self.eof = read == 0;
        Ok(before < self.buf.len())
    }

    /// Reads until `buf` holds at least `len` bytes from `*from` on, or the
    /// file ends; the bytes before `*from` may be dropped (`*from` follows).
    fn want(&mut self, from: &mut usize, len: usize) -> io::Result<()> {
        while self.buf.len() < *from + len {
            let more = self.refill(*from)?;
            *from = 0;
            if !more {
                break;
            }
        }
        Ok(())
    }
}

/// [`parse_by_entry`] on a file read a chunk of `chunk` bytes at a time: the
/// same checks on the same bytes, giving the same verdict, without holding
/// the whole file (whose fresh pages cost as much as a tenth of an open).
/// Returns the snapshot and the file's length, or `None` when the caller must
/// read the whole file and parse it as before (another layout, damage, or a
/// newer format version near the start).
pub(crate) fn parse_by_entry_from(
    reader: impl Read,
    chunk: usize,
) -> io::Result<Option<(Snapshot, u64)>> {
    let mut file = Chunks {
        reader,
        chunk: chunk.max(1),
        buf: Vec::with_capacity(chunk.max(1) * 2),
        eof: false,
        total: 0,
    };
    file.want(&mut 0, VERSION_PROBE_LEN)?;
    if probe_version(&file.buf).is_some_and(|version| version > FORMAT_VERSION) {
        return Ok(None);
    }
    let array_open = loop {
        if let Some(at) = memmem::find(&file.buf, ENTRIES_KEY) {
            break at + ENTRIES_KEY.len() - 1;
        }
        if file.buf.len() > HEAD_LIMIT || !file.refill(0)? {
            return Ok(None);
        }
    };
    while file.buf.len() < array_open + 1 + ENTRY_OPEN.len() && file.refill(0)? {}
    if !file.buf[array_open + 1..].starts_with(ENTRY_OPEN)
        || !opens_top_level_value(&file.buf[..array_open])
    {
        return Ok(None);
    }
    let mut outline = file.buf[..=array_open].to_vec();
    let entry_close = memmem::Finder::new(ENTRY_CLOSE);
    let mut parser = EntryParser::new();
    let mut entries = SnapshotEntries::default();
    let mut start = array_open + ENTRY_OPEN.len();
    loop {
        let end = loop {
            if let Some(at) = entry_close.find(&file.buf[start..]) {
                break start + at + ENTRY_CLOSE.len();
            }
            if !file.refill(start)? {
                return Ok(None);
            }
            start = 0;
        };
        match parser.parse(&file.buf[start..end]) {
            Some(entry) => entries.add(entry),
            None => return Ok(None),
        }
        // Enough bytes after `end` to tell what follows.
        let mut end = end;
        file.want(&mut end, NEXT_ENTRY.len().max(ENTRIES_END.len()))?;
        let rest = &file.buf[end..];
        if rest.starts_with(NEXT_ENTRY) {
            start = end + NEXT_ENTRY.len() - 1;
        } else if rest.starts_with(ENTRIES_END) {
            let mut array_close = end + ENTRIES_END.len() - 1;
            while file.refill(array_close)? {
                array_close = 0;
            }
            // The last refill dropped the front too.
            outline.extend_from_slice(&file.buf);
            break;
        } else {
            return Ok(None);
        }
    }
    let Some(mut snapshot) = parse_outline(&mut outline) else {
        return Ok(None);
    };
    snapshot.entries = entries;
    Ok(Some((snapshot, file.total)))
}

/// Parses the snapshot around an empty entries array; `None` unless it is
/// one whose entries array is indeed empty.
fn parse_outline(outline: &mut [u8]) -> Option<Snapshot> {
    let snapshot: Snapshot = simd_json::serde::from_slice(outline).ok()?;
    (snapshot.entries.by_key.is_empty() && snapshot.entries.rejected.is_empty()).then_some(snapshot)
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

/// What metadata that was lost or could not be parsed still tells of the
/// entries that held their value inline (so that no blob file holds it).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct InlineNamed {
    /// The keys of the entries it names whose value was inline.
    pub keys: BTreeSet<CacheKey>,
    /// Whether all of it was read: else entries may have held values inline
    /// in the parts that could not be.
    pub read_whole: bool,
}

impl InlineNamed {
    /// Nothing could be read of it.
    pub(crate) fn unread() -> InlineNamed {
        InlineNamed::default()
    }

    /// The entries held inline in a snapshot that was read.
    pub(crate) fn of_snapshot(snapshot: &Snapshot) -> InlineNamed {
        InlineNamed {
            keys: snapshot
                .entries
                .by_key
                .values()
                .filter(|shared| shared.blob_name().is_none())
                .map(|shared| shared.key)
                .collect(),
            read_whole: snapshot.entries.unreadable.is_empty(),
        }
    }
}

/// The inline entries of a snapshot that cannot be parsed, from the pieces of
/// the writer's layout that still can, each alone (only its key and where its
/// value is are decoded; the inline bytes are skipped). A piece that does not
/// parse, text between pieces that is not the writer's separator, an array
/// without its end, or another layout (edited by hand) makes the count
/// partial.
pub(crate) fn inline_named_in_damaged(document: &[u8]) -> InlineNamed {
    #[derive(Deserialize)]
    struct Named {
        key: CacheKey,
        location: Place,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Place {
        Inline(IgnoredAny),
        Blob(IgnoredAny),
    }
    let mut named = InlineNamed::unread();
    let Some(found) = memmem::find(document, ENTRIES_KEY) else {
        return named;
    };
    let entry_open = memmem::Finder::new(ENTRY_OPEN);
    let entry_close = memmem::Finder::new(ENTRY_CLOSE);
    let mut read_whole = true;
    let array_start = found + ENTRIES_KEY.len();
    // Where the next entry's opening line (or the array's end) should be.
    let mut at = array_start;
    loop {
        let rest = &document[at..];
        if rest.starts_with(ENTRIES_END) || (at == array_start && rest.starts_with(b"]")) {
            break;
        }
        let open_line = match rest.starts_with(ENTRY_OPEN) {
            true => at,
            false => {
                read_whole = false;
                match entry_open.find(rest) {
                    Some(skipped) => at + skipped,
                    None => break,
                }
            }
        };
        // At the entry's `{`.
        let start = open_line + ENTRY_OPEN.len() - 1;
        let Some(close) = entry_close.find(&document[start..]) else {
            read_whole = false;
            break;
        };
        let end = start + close + ENTRY_CLOSE.len();
        match serde_json::from_slice::<Named>(&document[start..end]) {
            Ok(Named {
                key,
                location: Place::Inline(_),
            }) => {
                named.keys.insert(key);
            }
            Ok(Named {
                location: Place::Blob(_),
                ..
            }) => {}
            Err(_) => read_whole = false,
        }
        at = match document[end..].starts_with(NEXT_ENTRY) {
            true => end + 1,
            false => end,
        };
    }
    named.read_whole = read_whole;
    named
}

/// Parses each span of `document` as one entry.
fn parse_entries(document: &[u8], spans: &[Range<usize>]) -> Option<SnapshotEntries> {
    let mut parser = EntryParser::new();
    let mut entries = SnapshotEntries::default();
    for span in spans {
        entries.add(parser.parse(&document[span.clone()])?);
    }
    Some(entries)
}

/// Parses pieces as entries, reusing one set of buffers and one tape. Each
/// piece is copied out first because simd-json unescapes strings in place:
/// the document stays intact for a whole-document parse after a failure.
struct EntryParser {
    buffers: Buffers,
    piece: Vec<u8>,
    tape: Option<Tape<'static>>,
}

impl EntryParser {
    fn new() -> Self {
        EntryParser {
            buffers: Buffers::with_max_depth(TYPICAL_ENTRY_LEN, ENTRY_MAX_DEPTH),
            piece: Vec::with_capacity(TYPICAL_ENTRY_LEN + INPUT_PADDING),
            tape: Some(Tape::null()),
        }
    }

    /// The entry `text` holds, if it is exactly one complete entry.
    fn parse(&mut self, text: &[u8]) -> Option<Entry> {
        self.piece.clear();
        self.piece.extend_from_slice(text);
        self.piece.resize(text.len() + INPUT_PADDING, b' ');
        let mut filled = self.tape.take().unwrap_or_else(Tape::null).reset();
        fill_tape_padded(&mut self.piece, text.len(), &mut self.buffers, &mut filled).ok()?;
        let mut deserializer = Deserializer::from_tape(filled);
        let entry = Entry::deserialize(&mut deserializer).ok();
        self.tape = Some(deserializer.into_tape().reset());
        entry
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cacheness_core::conformance::{arb_entry, key_of, sample_entry};
    use cacheness_core::{Counters, SharedEntry};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::format::{Entries, encode_snapshot};

    fn document_of(entries: impl IntoIterator<Item = Entry>) -> Vec<u8> {
        let entries: Entries = entries
            .into_iter()
            .map(|entry| (entry.key, Arc::new(SharedEntry::new(entry))))
            .collect();
        encode_snapshot(&entries, &Default::default(), Counters::default(), 3).unwrap()
    }

    /// Applies each `(where, kind, byte)`: kind 0 removes a byte, 1 inserts
    /// `byte`, 2 overwrites with it, 3 cuts the document there.
    fn apply_edits(document: &mut Vec<u8>, edits: Vec<(prop::sample::Index, u8, u8)>) {
        for (at, kind, byte) in edits {
            // A truncation can empty the document; `Index` needs a non-empty
            // range, and an empty document only has room for an insert.
            if document.is_empty() {
                if kind == 1 {
                    document.push(byte);
                }
                continue;
            }
            let position = at.index(document.len());
            match kind {
                0 => {
                    document.remove(position);
                }
                1 => document.insert(position, byte),
                2 => document[position] = byte,
                _ => document.truncate(position),
            }
        }
    }

    /// Everything a snapshot holds, comparable even with NaN parameters.
    fn summary(snapshot: &Snapshot) -> serde_json::Value {
        json!({
            "format_version": snapshot.format_version,
            "generation": snapshot.generation,
            "counters": snapshot.counters,
            "entries": snapshot
                .entries
                .by_key
                .values()
                .map(|shared| shared.entry())
                .collect::<Vec<_>>(),
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
            apply_edits(&mut document, edits);
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

    /// What reading `document` a chunk at a time gives, in the form of
    /// [`summary`]; its length must be the document's.
    fn streamed(document: &[u8], chunk: usize) -> Option<serde_json::Value> {
        let (snapshot, len) = parse_by_entry_from(document, chunk).unwrap()?;
        assert_eq!(len, document.len() as u64);
        Some(summary(&snapshot))
    }

    /// What [`parse_by_entry_from`] must give: the in-memory verdict, except
    /// that a newer version near the start is left to the whole-file read.
    fn expected_stream(document: &[u8]) -> Option<serde_json::Value> {
        let newer =
            crate::format::probe_version(document).is_some_and(|version| version > FORMAT_VERSION);
        parse_by_entry(document)
            .filter(|_| !newer)
            .map(|snapshot| summary(&snapshot))
    }

    proptest! {
        #[test]
        fn reading_in_chunks_gives_the_in_memory_verdict(
            entries in proptest::collection::vec(arb_entry(), 1..5),
            edits in proptest::collection::vec(
                (any::<prop::sample::Index>(), 0..4u8, prop::sample::select(b"{}[]\",:\\ \n0a".to_vec())),
                0..3,
            ),
            chunk in prop_oneof![1..16usize, 16..700usize, Just(READ_CHUNK)],
        ) {
            let mut document = document_of(entries);
            apply_edits(&mut document, edits);
            prop_assert_eq!(streamed(&document, chunk), expected_stream(&document));
        }
    }

    #[test]
    fn an_empty_or_one_byte_document_is_read_in_chunks_like_in_memory() {
        for document in [&b""[..], b"{", b"}", b" ", b"0"] {
            for chunk in [1, 2, READ_CHUNK] {
                assert_eq!(streamed(document, chunk), expected_stream(document));
            }
        }
    }

    #[test]
    fn a_large_snapshot_is_read_in_chunks_like_in_memory() {
        let entries = (0..500).map(|index| sample_entry(key_of(index), index));
        let document = document_of(entries);
        assert!(document.len() > 4 * 4096);
        for chunk in [7, 4096, READ_CHUNK] {
            let read = streamed(&document, chunk);
            assert!(read.is_some());
            assert_eq!(read, whole_document(&document));
        }
        let mut newer = document.clone();
        newer[22] = b'7';
        assert!(newer.starts_with(b"{\n  \"format_version\": 7"));
        assert_eq!(streamed(&newer, 4096), None);
    }

    /// The keys of the inline entries among `entries`.
    fn inline_keys(entries: &[Entry]) -> BTreeSet<CacheKey> {
        entries
            .iter()
            .filter(|entry| entry.blob_name().is_none())
            .map(|entry| entry.key)
            .collect()
    }

    proptest! {
        #[test]
        fn an_intact_snapshot_names_every_inline_entry(
            entries in proptest::collection::vec(arb_entry(), 0..6),
        ) {
            let document = document_of(entries.clone());
            let named = inline_named_in_damaged(&document);
            prop_assert!(named.read_whole);
            // The document holds the last entry of each key.
            let kept: Vec<Entry> = entries
                .into_iter()
                .map(|entry| (entry.key, entry))
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_values()
                .collect();
            prop_assert_eq!(named.keys, inline_keys(&kept));
        }

        #[test]
        fn a_damaged_snapshot_names_only_inline_entries_it_holds_and_never_panics(
            entries in proptest::collection::vec(arb_entry(), 1..5),
            edits in proptest::collection::vec(
                (any::<prop::sample::Index>(), 0..4u8, prop::sample::select(b"{}[]\",:\\ \n0a".to_vec())),
                1..4,
            ),
        ) {
            let mut document = document_of(entries.clone());
            apply_edits(&mut document, edits);
            let named = inline_named_in_damaged(&document);
            prop_assert!(named.keys.is_subset(&inline_keys(&entries)));
        }
    }

    /// Counted in a truncated snapshot: the inline entries whose piece is
    /// whole, not a blob entry whose text mentions `"inline"`, not the cut one.
    #[test]
    fn a_cut_snapshot_names_the_inline_entries_before_the_cut() {
        let entries: Vec<Entry> = (0..6)
            .map(|index| {
                let mut entry = sample_entry(key_of(index), index);
                if index % 2 == 1 {
                    entry.location = cacheness_core::Location::Blob(
                        cacheness_core::conformance::blob_name_for(&entry.key, 1),
                    );
                    entry.description = r#"{"location": {"inline": "AAE="}}"#.into();
                }
                entry
            })
            .collect();
        let document = document_of(entries);
        let whole = inline_named_in_damaged(&document);
        assert!(whole.read_whole);
        assert_eq!(whole.keys.len(), 3);
        let fourth = memmem::find_iter(&document, ENTRY_OPEN).nth(3).unwrap();
        let cut = inline_named_in_damaged(&document[..fourth + 20]);
        assert!(!cut.read_whole);
        assert!(cut.keys.is_subset(&whole.keys));
        assert!(!cut.keys.is_empty() && cut.keys.len() < 3, "{cut:?}");
        assert_eq!(inline_named_in_damaged(b"{}"), InlineNamed::unread());
        let empty = document_of([]);
        assert_eq!(
            inline_named_in_damaged(&empty),
            InlineNamed {
                keys: BTreeSet::new(),
                read_whole: true
            }
        );
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
