//! The cost of inline values, the json backend's default (release mode):
//!
//! 1. opening a cache of 100 000 entries whose 1 KiB values are inline (the
//!    snapshot carries them, base64), and the first GET through the engine
//!    (target of the blob-valued cache: open + first GET under 300 ms), with
//!    the same entries valued in blob files as the peer, opened alternately;
//! 2. filling a cache with 100 000 such values through the engine, the
//!    journal compacted as it outgrows the snapshot: PUT/s per window of
//!    1 000 puts, how many compactions, and the bytes they wrote against the
//!    bytes appended to the journal (compaction keeps the work amortized if
//!    that ratio stays bounded as the cache grows).
//!
//! `cargo run --release -p cacheness-json --example inline_load -- [--entries N]
//! [--value-bytes B] [--dir BASE]`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cacheness_core::blob::BlobName;
use cacheness_core::{Cache, ContentHash, Location, MetadataBackend, key};
use cacheness_json::{JsonBackend, SNAPSHOT_FILE};

const REPETITIONS: usize = 5;
const WINDOW: u64 = 1_000;

/// Incompressible bytes: hashes of the index and a counter.
fn value(index: u64, len: usize) -> Vec<u8> {
    (0u64..)
        .flat_map(|block| ContentHash::of(&[index.to_le_bytes(), block.to_le_bytes()].concat()).0)
        .take(len)
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

/// Fills `dir` with `entries` inline values of `len` bytes through the
/// engine, printing PUT/s per window and what compaction wrote.
fn fill(dir: &Path, entries: u64, len: usize) {
    let cache = Cache::builder()
        .dir(dir)
        .open(JsonBackend::open(dir).unwrap())
        .unwrap();
    let snapshot = dir.join(SNAPSHOT_FILE);
    let journal = dir.join(cacheness_json::JOURNAL_FILE);
    let values: Vec<Vec<u8>> = (0..WINDOW).map(|index| value(index, len)).collect();
    let (mut compactions, mut snapshot_bytes, mut journal_bytes) = (0u64, 0u64, 0u64);
    let mut journal_len = file_len(&journal);
    let mut rates = Vec::new();
    let (mut slowest, mut putting) = (Duration::ZERO, Duration::ZERO);
    for window in 0..entries / WINDOW {
        let mut in_window = Duration::ZERO;
        for offset in 0..WINDOW {
            let index = window * WINDOW + offset;
            let started = Instant::now();
            cache
                .put_bytes(&key!(inline_load = index), &values[offset as usize])
                .unwrap();
            let took = started.elapsed();
            in_window += took;
            slowest = slowest.max(took);
            // Outside the timed put: a shorter journal means a compaction
            // folded it (with this put's line) into a new snapshot.
            let now = file_len(&journal);
            if now < journal_len {
                compactions += 1;
                snapshot_bytes += file_len(&snapshot);
                journal_bytes += journal_len;
            }
            journal_len = now;
        }
        putting += in_window;
        rates.push(WINDOW as f64 / in_window.as_secs_f64());
    }
    journal_bytes += journal_len;
    let entry = cache.entry(&key!(inline_load = 0u64)).unwrap().unwrap();
    assert!(matches!(entry.location, Location::Inline(_)), "inline");
    drop(cache);
    let first = rates.first().copied().unwrap_or(0.0);
    let last = rates.last().copied().unwrap_or(0.0);
    println!(
        "fill {entries} x {len} B inline: {:.0} PUT/s overall; first window {first:.0}/s, last {last:.0}/s ({:.0} %); slowest put {:.0} ms",
        entries as f64 / putting.as_secs_f64(),
        100.0 * last / first,
        slowest.as_secs_f64() * 1e3,
    );
    println!(
        "  {compactions} compactions wrote {:.0} MB of snapshots for {:.0} MB of journal lines ({:.2} bytes per byte appended); final snapshot {:.0} MB",
        snapshot_bytes as f64 / 1e6,
        journal_bytes as f64 / 1e6,
        snapshot_bytes as f64 / journal_bytes.max(1) as f64,
        file_len(&snapshot) as f64 / 1e6,
    );
}

/// Builds in `dir` a snapshot of `entries` values of `len` bytes, inline
/// or (for the peer) named as blob files, directly through the backend (the
/// blob files themselves are not needed to open it).
fn build(dir: &Path, entries: u64, len: usize, inline: bool) {
    let backend = JsonBackend::open(dir).unwrap();
    let cache = Cache::builder()
        .dir(dir)
        .open(JsonBackend::open(dir).unwrap())
        .unwrap();
    // One real entry through the engine, the template of the others.
    cache.put_bytes(&key!(open = 0u64), &value(0, len)).unwrap();
    let template = cache.entry(&key!(open = 0u64)).unwrap().unwrap();
    drop(cache);
    for index in 1..entries {
        let params = key!(open = index);
        let bytes = value(index, len);
        let mut entry = template.clone();
        entry.key = params.key();
        entry.params = Some(params);
        entry.content_hash = ContentHash::of(&bytes);
        entry.location = match inline {
            true => Location::Inline(bytes),
            false => Location::Blob(BlobName::new(&entry.key).into_string()),
        };
        backend.put(entry).unwrap();
    }
    backend.compact().unwrap();
}

/// The time `JsonBackend::open` of `dir` takes, and with the first GET
/// through the engine of an inline value.
fn open_once(dir: &Path, entries: u64, len: usize, inline: bool) -> (Duration, Duration) {
    let started = Instant::now();
    let backend = JsonBackend::open(dir).unwrap();
    let opened = started.elapsed();
    assert_eq!(backend.len().unwrap(), entries);
    if !inline {
        return (opened, opened);
    }
    let cache = Cache::builder().dir(dir).open(backend).unwrap();
    let got = cache.get_bytes(&key!(open = entries / 2)).unwrap();
    let with_get = started.elapsed();
    assert_eq!(got.map(|bytes| bytes.len()), Some(len));
    (opened, with_get)
}

/// Opens a cache of `entries` inline values of `len` bytes, and the same
/// entries with their values in blob files (the peer), alternately.
fn open_time(base: &Path, entries: u64, len: usize) {
    let (inline_dir, blob_dir) = (base.join("inline"), base.join("blobs"));
    build(&inline_dir, entries, len, true);
    build(&blob_dir, entries, len, false);
    let (mut opens, mut with_get, mut peer) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPETITIONS {
        let (opened, got) = open_once(&inline_dir, entries, len, true);
        opens.push(opened);
        with_get.push(got);
        peer.push(open_once(&blob_dir, entries, len, false).0);
    }
    let (open, with_get, peer) = (median(opens), median(with_get), median(peer));
    println!(
        "open {entries} entries x {len} B inline (snapshot {:.0} MB): open {:.0} ms, open + first GET {:.0} ms (median of {REPETITIONS}; target 300 ms)",
        file_len(&inline_dir.join(SNAPSHOT_FILE)) as f64 / 1e6,
        open.as_secs_f64() * 1e3,
        with_get.as_secs_f64() * 1e3,
    );
    println!(
        "  peer, the same entries with their values in blob files (snapshot {:.0} MB): open {:.0} ms; inline / peer {:.2}",
        file_len(&blob_dir.join(SNAPSHOT_FILE)) as f64 / 1e6,
        peer.as_secs_f64() * 1e3,
        open.as_secs_f64() / peer.as_secs_f64(),
    );
}

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let value_of = |name: &str| {
        arguments
            .iter()
            .position(|argument| argument == name)
            .and_then(|at| arguments.get(at + 1))
            .cloned()
    };
    let entries: u64 = value_of("--entries").map_or(100_000, |text| text.parse().unwrap());
    let len: usize = value_of("--value-bytes").map_or(1024, |text| text.parse().unwrap());
    let base = value_of("--dir").map_or_else(std::env::temp_dir, PathBuf::from);
    let scratch = tempfile::tempdir_in(base).unwrap();
    open_time(&scratch.path().join("open"), entries, len);
    fill(&scratch.path().join("fill"), entries, len);
}
