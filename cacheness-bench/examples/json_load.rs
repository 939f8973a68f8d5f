//! Measures the JSON backend (release mode):
//!
//! 1. parsing a 100 000-entry `metadata.json` whole with simd-json and with
//!    serde_json, same file, same run (the libraries' costs), and opening that
//!    cache through `JsonBackend::open`, which reads it one entry at a time
//!    (target: under 300 ms);
//! 2. PUT / GET / LIST through `cacheness_core::Cache` on the seed workload
//!    (~200-byte serde struct, keys `experiment = "bench", idx = i`) at 1 000
//!    entries, with the memory backend over the same blob directory and the raw
//!    file system as peers measured in the same run (targets: GET at least
//!    55 000/s, LIST under 1 ms);
//! 3. PUT throughput while filling one cache to 100 000 entries, per window of
//!    1 000 puts, against the raw floor (a temp file + rename per value into the
//!    same sharded layout) filled the same way (target: the rate at 100 000 at
//!    least 70 % of the rate at 1 000).
//!
//! Every figure is a wall-clock median (of 5 unless said). Cache dirs are
//! deleted only at the end: on ext4 without a journal, creating files right
//! after deleting thousands is many times slower for a while, which would
//! skew whichever section came next.
//!
//! `cargo run --release -p cacheness-bench --example json_load -- [--quick]
//! [--load-only] [--no-fill] [--dir <base dir>] [--sizes 1000,10000]`
//! (`--no-fill` skips section 3)

use std::cell::RefCell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cacheness_bench::stores::Record;
use cacheness_core::blob::BlobName;
use cacheness_core::{
    BlobStore, Cache, ContentHash, Durability, Entry, ListOptions, LocalBlobStore, Location,
    MetadataBackend, key,
};
use cacheness_json::{JsonBackend, JsonOptions};
use cacheness_memory::MemoryBackend;
use serde::Deserialize;

const REPETITIONS: usize = 5;
/// A LIST of 1 000 entries takes about a millisecond: each cache lists this
/// many times, and its median is the cache's figure.
const LIST_REPETITIONS: usize = 25;
/// PUT throughput is sampled per window of this many puts.
const PUT_WINDOW: u64 = 1_000;

/// A snapshot as this program reads it to compare the two JSON parsers on the
/// same file: the entries, decoded whole-document. The backend's own reader
/// (simd-json one entry at a time) is timed by the open, through the public
/// API; these two figures are the libraries' costs on the same bytes.
#[derive(Deserialize)]
struct SnapshotEntries {
    entries: Vec<Entry>,
}

/// The JSON parsers compared.
#[derive(Debug, Clone, Copy)]
enum Parser {
    SimdJson,
    SerdeJson,
}

/// The entries of a snapshot, parsed with `parser` (`bytes` is simd-json's
/// scratch space); returned so that freeing them is not timed.
fn parse_snapshot(bytes: &mut [u8], parser: Parser) -> Vec<Entry> {
    let parsed: SnapshotEntries = match parser {
        Parser::SimdJson => simd_json::serde::from_slice(bytes).expect("simd-json parses"),
        Parser::SerdeJson => serde_json::from_slice(bytes).expect("serde_json parses"),
    };
    parsed.entries
}

/// User + system CPU time of this process so far, all threads (Linux, from
/// `/proc/self/stat`, in clock ticks of 10 ms), to tell the work a parse does
/// from the wall time it takes on a machine others load too.
fn process_cpu_time() -> Option<Duration> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // Fields 14 and 15 of the line (utime, stime); the name was field 2.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// Fresh cache dirs, all kept until the end of the run (see the module docs).
struct Dirs {
    base: Option<PathBuf>,
    kept: RefCell<Vec<tempfile::TempDir>>,
}

impl Dirs {
    fn fresh(&self) -> PathBuf {
        let dir = match &self.base {
            Some(base) => tempfile::tempdir_in(base).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let path = dir.path().to_path_buf();
        self.kept.borrow_mut().push(dir);
        path
    }
}

/// An entry like the engine writes for the seed workload, in a blob file.
fn bench_entry(index: u64) -> Entry {
    let params = key!(experiment = "bench", idx = index);
    let key = params.key();
    let name = BlobName::with_nonce(&key, index).into_string();
    let mut entry = Entry::new(
        key,
        ContentHash::of(&index.to_le_bytes()),
        Location::Blob(name),
    );
    entry.type_tag = "json_load::Record".into();
    entry.codec = "json".into();
    entry.params = Some(params);
    entry.created_at = 1_700_000_000_000 + index;
    entry.accessed_at = entry.created_at;
    entry.stored_size = 200;
    entry.raw_size = 200;
    entry
}

fn snapshot_load(dirs: &Dirs, entries: u64) {
    let dir = dirs.fresh();
    let backend = JsonBackend::open(&dir).unwrap();
    for index in 0..entries {
        backend.put(bench_entry(index)).unwrap();
    }
    backend.compact().unwrap();
    drop(backend);
    let bytes = fs::read(dir.join("metadata.json")).unwrap();
    println!(
        "snapshot: {entries} entries, {:.1} MB",
        bytes.len() as f64 / 1e6
    );
    // Alternate the parsers within each repetition, so machine noise hits both.
    let parsers = [
        ("SimdJson", Parser::SimdJson),
        ("SerdeJson", Parser::SerdeJson),
    ];
    let mut samples = vec![Vec::new(); parsers.len()];
    let mut cpu = vec![Vec::new(); parsers.len()];
    for _ in 0..REPETITIONS {
        for (slot, &(_, parser)) in parsers.iter().enumerate() {
            let mut scratch = bytes.clone();
            let cpu_start = process_cpu_time();
            let start = Instant::now();
            let parsed = parse_snapshot(&mut scratch, parser);
            samples[slot].push(start.elapsed());
            if let (Some(before), Some(after)) = (cpu_start, process_cpu_time()) {
                cpu[slot].push(after.saturating_sub(before));
            }
            assert_eq!(parsed.len() as u64, entries);
        }
    }
    let results: Vec<Duration> = samples.into_iter().map(median).collect();
    for (((name, _), parse), cpu) in parsers.iter().zip(&results).zip(cpu) {
        let cpu = if cpu.is_empty() {
            String::new()
        } else {
            format!(", CPU time {:.0} ms", ms(median(cpu)))
        };
        println!(
            "  parse with {name}: {:.1} ms (median of {REPETITIONS}{cpu})",
            ms(*parse)
        );
    }
    println!(
        "  simd-json is {:.2}x as fast as serde_json",
        results[1].as_secs_f64() / results[0].as_secs_f64(),
    );
    // Opens alternate with a bare read of the snapshot file and with a read of
    // the whole file followed by its parse (what an open did before it read
    // the file a chunk at a time).
    let snapshot_path = dir.join("metadata.json");
    let mut reads = Vec::new();
    let mut whole = Vec::new();
    let mut open_cpu = Vec::new();
    let samples: Vec<Duration> = (0..REPETITIONS)
        .map(|_| {
            let start = Instant::now();
            let read = fs::read(&snapshot_path).unwrap();
            reads.push(start.elapsed());
            assert_eq!(read.len(), bytes.len());
            drop(read);
            let start = Instant::now();
            let mut read = fs::read(&snapshot_path).unwrap();
            let parsed = parse_snapshot(&mut read, Parser::SimdJson);
            whole.push(start.elapsed());
            assert_eq!(parsed.len() as u64, entries);
            drop((read, parsed));
            let cpu_start = process_cpu_time();
            let start = Instant::now();
            let backend = JsonBackend::open(&dir).unwrap();
            let elapsed = start.elapsed();
            if let (Some(before), Some(after)) = (cpu_start, process_cpu_time()) {
                open_cpu.push(after.saturating_sub(before));
            }
            assert_eq!(backend.len().unwrap(), entries);
            elapsed
        })
        .collect();
    let whole = median(whole);
    println!(
        "  read the snapshot file alone: {:.1} ms; read it whole then parse it: {:.1} ms (medians of {REPETITIONS})",
        ms(median(reads)),
        ms(whole),
    );
    let open = median(samples);
    if !open_cpu.is_empty() {
        println!(
            "  open: CPU time {:.0} ms; open / (whole read + parse) {:.2}",
            ms(median(open_cpu)),
            open.as_secs_f64() / whole.as_secs_f64()
        );
    }
    println!(
        "  open the {entries}-entry cache: {:.1} ms (median of {REPETITIONS}; target < 300 ms: {})",
        ms(open),
        verdict(open < Duration::from_millis(300))
    );
}

struct Figures {
    put: f64,
    get: f64,
    list_ms: f64,
}

fn workload(cache: &Cache, entries: u64) -> Figures {
    let start = Instant::now();
    for index in 0..entries {
        cache
            .put(
                &key!(experiment = "bench", idx = index),
                &Record::new(index),
            )
            .unwrap();
    }
    let put = entries as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for index in 0..entries {
        let back: Option<Record> = cache.get(&key!(experiment = "bench", idx = index)).unwrap();
        assert_eq!(back.as_ref(), Some(&Record::new(index)));
    }
    let get = entries as f64 / start.elapsed().as_secs_f64();
    let lists: Vec<Duration> = (0..LIST_REPETITIONS)
        .map(|_| {
            let start = Instant::now();
            let listed = cache.list(&ListOptions::default()).unwrap();
            let elapsed = start.elapsed();
            assert_eq!(listed.len() as u64, entries);
            elapsed
        })
        .collect();
    Figures {
        put,
        get,
        list_ms: ms(median(lists)),
    }
}

/// The median of each figure over the runs, printed as a table row.
fn medians(name: &str, entries: u64, runs: &[Figures]) -> Figures {
    let pick = |field: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(field).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let figures = Figures {
        put: pick(|figures| figures.put),
        get: pick(|figures| figures.get),
        list_ms: pick(|figures| figures.list_ms),
    };
    println!(
        "| {name:<28} | {entries:>7} | {:>9.0} | {:>9.0} | {:>8.3} |",
        figures.put, figures.get, figures.list_ms
    );
    figures
}

/// One run of a contender's workload on a fresh store.
type OneRun<'a> = Box<dyn Fn() -> Figures + 'a>;

/// One run of the workload on a fresh cache.
fn run(
    dirs: &Dirs,
    entries: u64,
    inline_threshold: usize,
    open: impl Fn(&Path) -> Box<dyn MetadataBackend>,
) -> Figures {
    let dir = dirs.fresh();
    let cache = Cache::builder()
        .dir(&dir)
        .inline_threshold(inline_threshold)
        .open(open(&dir))
        .unwrap();
    workload(&cache, entries)
}

/// The disk's own cost of a file per value, written the way the blob store
/// writes one: temp file + rename into a sharded directory.
struct RawFloor {
    dir: PathBuf,
    tmp: PathBuf,
}

impl RawFloor {
    fn new(dir: PathBuf) -> RawFloor {
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        RawFloor { dir, tmp }
    }

    fn path_of(&self, index: u64) -> PathBuf {
        let hex = key!(experiment = "bench", idx = index).key().to_hex();
        self.dir.join("blobs").join(&hex[..2]).join(hex)
    }

    fn put(&self, index: u64) {
        let bytes = serde_json::to_vec(&Record::new(index)).unwrap();
        let temp = self.tmp.join(format!("{index}.tmp"));
        fs::File::create(&temp).unwrap().write_all(&bytes).unwrap();
        let target = self.path_of(index);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::rename(&temp, &target).unwrap();
    }
}

/// One run of PUT/GET/LIST on the raw floor; LIST is a directory walk.
fn raw_fs_floor(dirs: &Dirs, entries: u64) -> Figures {
    let floor = RawFloor::new(dirs.fresh());
    let start = Instant::now();
    for index in 0..entries {
        floor.put(index);
    }
    let put = entries as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for index in 0..entries {
        let back: Record =
            serde_json::from_slice(&fs::read(floor.path_of(index)).unwrap()).unwrap();
        assert_eq!(back, Record::new(index));
    }
    let get = entries as f64 / start.elapsed().as_secs_f64();
    let lists: Vec<Duration> = (0..REPETITIONS)
        .map(|_| {
            let start = Instant::now();
            let mut count = 0;
            for shard in fs::read_dir(floor.dir.join("blobs")).unwrap().flatten() {
                count += fs::read_dir(shard.path()).unwrap().count();
            }
            assert_eq!(count as u64, entries);
            start.elapsed()
        })
        .collect();
    Figures {
        put,
        get,
        list_ms: ms(median(lists)),
    }
}

/// PUT rates while filling one store from empty, from the time each window of
/// [`PUT_WINDOW`] puts took.
struct FillRates {
    window_times: Vec<Duration>,
}

impl FillRates {
    fn rate(windows: &[Duration]) -> f64 {
        (windows.len() as u64 * PUT_WINDOW) as f64 / windows.iter().sum::<Duration>().as_secs_f64()
    }

    fn first_window(&self) -> f64 {
        Self::rate(&self.window_times[..1])
    }

    /// The rate over the last tenth of the fill.
    fn last_windows(&self) -> f64 {
        let tail = (self.window_times.len() / 10).max(1);
        Self::rate(&self.window_times[self.window_times.len() - tail..])
    }

    fn overall(&self) -> f64 {
        Self::rate(&self.window_times)
    }

    fn print(&self, name: &str) {
        println!(
            "| {name:<28} | {:>11.0} | {:>14.0} | {:>11.0} | {:>10.2} |",
            self.first_window(),
            self.last_windows(),
            self.overall(),
            self.last_windows() / self.first_window(),
        );
    }
}

/// PUT throughput as the cache grows, against the raw floor filled alongside:
/// the two alternate window by window, so file system slowdowns hit both.
fn put_scaling(dirs: &Dirs, entries: u64) {
    let last_from = entries - (entries / PUT_WINDOW / 10).max(1) * PUT_WINDOW;
    println!(
        "PUT/s while filling one fresh cache to {entries}, alternating windows of {PUT_WINDOW} puts with the raw floor"
    );
    println!(
        "| {:<28} | {:>11} | {:>14} | {:>11} | {:>10} |",
        "store",
        format!("0-{PUT_WINDOW}"),
        format!("{last_from}-{entries}"),
        format!("0-{entries} avg"),
        "last/first"
    );
    println!(
        "|------------------------------|-------------|----------------|-------------|------------|"
    );
    let floor = RawFloor::new(dirs.fresh());
    let dir = dirs.fresh();
    let cache = Cache::builder()
        .dir(&dir)
        .open(JsonBackend::open(&dir).unwrap())
        .unwrap();
    let time_window = |put: &dyn Fn(u64), window: u64| {
        let start = Instant::now();
        for index in window * PUT_WINDOW..(window + 1) * PUT_WINDOW {
            put(index);
        }
        start.elapsed()
    };
    let mut floor_rates = FillRates {
        window_times: Vec::new(),
    };
    let mut json_rates = FillRates {
        window_times: Vec::new(),
    };
    for window in 0..entries / PUT_WINDOW {
        floor_rates
            .window_times
            .push(time_window(&|index| floor.put(index), window));
        json_rates.window_times.push(time_window(
            &|index| {
                cache
                    .put(
                        &key!(experiment = "bench", idx = index),
                        &Record::new(index),
                    )
                    .unwrap();
            },
            window,
        ));
    }
    floor_rates.print("raw fs floor (file/value)");
    json_rates.print("json (values in blobs)");
    println!(
        "  json last/first {:.2} (target >= 0.70: {}); json/floor: first window {:.2}, last {:.2}, average {:.2}",
        json_rates.last_windows() / json_rates.first_window(),
        verdict(json_rates.last_windows() >= 0.7 * json_rates.first_window()),
        json_rates.first_window() / floor_rates.first_window(),
        json_rates.last_windows() / floor_rates.last_windows(),
        json_rates.overall() / floor_rates.overall(),
    );
}

/// Reading 1 000 blob files three ways over the same files, alternating per
/// repetition: the blob store, the check it made before this version (a
/// `symlink_metadata` of the shard, then `fs::read`), and a bare `fs::read`.
fn blob_reads(dirs: &Dirs, entries: u64) {
    const ROUNDS: usize = 15;
    let dir = dirs.fresh();
    let store = LocalBlobStore::open(&dir, Durability::Flush).unwrap();
    let names: Vec<String> = (0..entries)
        .map(|index| {
            let bytes = serde_json::to_vec(&Record::new(index)).unwrap();
            store
                .write(&key!(experiment = "bench", idx = index).key(), &[&bytes])
                .unwrap()
        })
        .collect();
    let paths: Vec<PathBuf> = names
        .iter()
        .map(|name| dir.join("blobs").join(name))
        .collect();
    let ways: [(&str, &dyn Fn(usize) -> usize); 3] = [
        ("LocalBlobStore::read", &|at| {
            store.read(&names[at]).unwrap().unwrap().len()
        }),
        ("shard lstat + fs::read (before)", &|at| {
            let shard = paths[at].parent().unwrap();
            assert!(fs::symlink_metadata(shard).unwrap().is_dir());
            fs::read(&paths[at]).unwrap().len()
        }),
        ("bare fs::read (floor)", &|at| {
            fs::read(&paths[at]).unwrap().len()
        }),
    ];
    let mut samples = vec![Vec::new(); ways.len()];
    for _ in 0..ROUNDS {
        for (slot, (_, read)) in ways.iter().enumerate() {
            let start = Instant::now();
            let total: usize = (0..names.len()).map(read).sum();
            samples[slot].push(start.elapsed());
            assert!(total > 0);
        }
    }
    let results: Vec<Duration> = samples.into_iter().map(median).collect();
    println!(
        "Blob reads of {entries} files (reads/s, median of {ROUNDS} rounds, ways alternating)"
    );
    for ((name, _), elapsed) in ways.iter().zip(&results) {
        println!(
            "  {name:<32} {:>9.0}/s  ({:.2}x the floor)",
            entries as f64 / elapsed.as_secs_f64(),
            results[2].as_secs_f64() / elapsed.as_secs_f64()
        );
    }
    println!(
        "  blob store / the check before: {:.2}x",
        results[1].as_secs_f64() / results[0].as_secs_f64()
    );
}

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let flag = |name: &str| arguments.iter().any(|argument| argument == name);
    let value_of = |name: &str| {
        arguments
            .iter()
            .position(|argument| argument == name)
            .and_then(|at| arguments.get(at + 1))
    };
    let quick = flag("--quick");
    let dirs = Dirs {
        base: value_of("--dir").map(PathBuf::from),
        kept: RefCell::new(Vec::new()),
    };
    println!(
        "cache dirs under {}",
        dirs.base
            .as_deref()
            .unwrap_or(&std::env::temp_dir())
            .display()
    );
    let large = if quick { 10_000 } else { 100_000 };
    snapshot_load(&dirs, large);
    if flag("--load-only") {
        return;
    }
    println!();
    blob_reads(&dirs, 1_000);
    println!();
    println!(
        "Cache PUT/GET ops/s and LIST ms (median of {REPETITIONS} fresh caches; LIST: each cache's median of {LIST_REPETITIONS})"
    );
    println!("| backend                      | entries |     PUT/s |     GET/s |  LIST ms |");
    println!("|------------------------------|---------|-----------|-----------|----------|");
    let sizes: Vec<u64> = match value_of("--sizes") {
        Some(sizes) => sizes.split(',').map(|size| size.parse().unwrap()).collect(),
        None => vec![1_000],
    };
    let inline_options = JsonOptions {
        inline_values: true,
        ..JsonOptions::default()
    };
    for &entries in &sizes {
        // Runs alternate between the contenders, so file system slowdowns
        // (see the module docs) hit them all alike.
        let contenders: [(&str, OneRun<'_>); 5] = [
            (
                "json (values in blobs)",
                Box::new(|| {
                    run(&dirs, entries, 4096, |dir| {
                        let in_files = JsonOptions {
                            inline_values: false,
                            ..JsonOptions::default()
                        };
                        Box::new(JsonBackend::open_with(dir, &in_files).unwrap())
                    })
                }),
            ),
            (
                "json inline_values",
                Box::new(|| {
                    run(&dirs, entries, 4096, |dir| {
                        Box::new(JsonBackend::open_with(dir, &inline_options).unwrap())
                    })
                }),
            ),
            (
                "memory, blobs (peer)",
                Box::new(|| run(&dirs, entries, 0, |_| Box::new(MemoryBackend::new()))),
            ),
            (
                "memory, inline (peer)",
                Box::new(|| run(&dirs, entries, 4096, |_| Box::new(MemoryBackend::new()))),
            ),
            (
                "raw fs floor (file/value)",
                Box::new(|| raw_fs_floor(&dirs, entries)),
            ),
        ];
        let mut runs: Vec<Vec<Figures>> = contenders.iter().map(|_| Vec::new()).collect();
        for _ in 0..REPETITIONS {
            for (slot, (_, one_run)) in contenders.iter().enumerate() {
                runs[slot].push(one_run());
            }
        }
        let [json, inline, memory_blobs, memory_inline, floor] =
            std::array::from_fn(|slot| medians(contenders[slot].0, entries, &runs[slot]));
        // The GET and LIST targets are for 1 000 entries.
        let target = |met: bool| {
            if entries == 1_000 {
                verdict(met)
            } else {
                "no target at this N"
            }
        };
        println!(
            "  N={entries}: json GET {:.0}/s (target >= 55 000: {}), LIST {:.3} ms (target < 1 ms: {}); \
             vs seed (2 700 PUT/s, 1 100 GET/s): json {:.1}x / {:.0}x, json inline {:.0}x / {:.0}x; \
             json / memory-blobs PUT {:.2} GET {:.2} LIST {:.2}; json inline / memory-inline PUT {:.2} GET {:.2}; \
             json / raw-fs floor PUT {:.2} GET {:.2}",
            json.get,
            target(json.get >= 55_000.0),
            json.list_ms,
            target(json.list_ms < 1.0),
            json.put / 2_700.0,
            json.get / 1_100.0,
            inline.put / 2_700.0,
            inline.get / 1_100.0,
            json.put / memory_blobs.put,
            json.get / memory_blobs.get,
            json.list_ms / memory_blobs.list_ms,
            inline.put / memory_inline.put,
            inline.get / memory_inline.get,
            json.put / floor.put,
            json.get / floor.get,
        );
    }
    if !flag("--no-fill") {
        println!();
        put_scaling(&dirs, large);
    }
    let kept = dirs.kept.into_inner().len();
    println!("(deleting the {kept} cache dirs of this run)");
}
