//! Measures the JSON backend (release mode):
//!
//! 1. parsing a 100 000-entry `metadata.json` with simd-json and with serde_json,
//!    same file, same run, and opening that cache;
//! 2. PUT / GET / LIST through `cacheness_core::Cache` on the seed workload
//!    (~200-byte serde struct, keys `experiment = "bench", idx = i`) at 1 000,
//!    10 000 and 100 000 entries, with the memory backend over the same blob
//!    directory as the peer measured in the same run.
//!
//! `cargo run --release -p cacheness-json --example json_load -- [--quick]
//! [--dir <base dir>] [--sizes 1000,10000]`

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cacheness_core::{
    Cache, ContentHash, Entry, ListOptions, Location, MetadataBackend, UserMetadata, key,
};
use cacheness_json::{JsonBackend, JsonOptions, Parser, parse_snapshot_for_bench};
use cacheness_memory::MemoryBackend;
use serde::{Deserialize, Serialize};

const REPETITIONS: usize = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    values: Vec<i64>,
}

fn record(index: u64) -> Record {
    Record {
        id: index,
        name: format!("record-{index}"),
        values: (0..20).map(|offset| (index as i64) * 31 + offset).collect(),
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// An entry like the engine writes for the seed workload, in a blob file.
fn bench_entry(index: u64) -> Entry {
    let params = key!(experiment = "bench", idx = index);
    let key = params.key();
    let hex = key.to_hex();
    Entry {
        key,
        prefix: String::new(),
        description: String::new(),
        type_tag: "json_load::Record".into(),
        codec: "json".into(),
        params: Some(params),
        created_at: 1_700_000_000_000 + index,
        accessed_at: 1_700_000_000_000 + index,
        expires_at: None,
        access_count: 0,
        stored_size: 200,
        raw_size: 200,
        compression: cacheness_core::Compression::None,
        content_hash: ContentHash::of(&index.to_le_bytes()),
        location: Location::Blob(format!("{}/{hex}-{index:016x}", &hex[..2])),
        signature: None,
        user_metadata: UserMetadata::new(),
    }
}

fn temp_dir(base: &Option<PathBuf>) -> tempfile::TempDir {
    match base {
        Some(base) => tempfile::tempdir_in(base).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn snapshot_load(base: &Option<PathBuf>, entries: u64) {
    let dir = temp_dir(base);
    let backend = JsonBackend::open(dir.path()).unwrap();
    for index in 0..entries {
        backend.put(bench_entry(index)).unwrap();
    }
    backend.compact().unwrap();
    drop(backend);
    let bytes = std::fs::read(dir.path().join("metadata.json")).unwrap();
    println!(
        "snapshot: {entries} entries, {:.1} MB",
        bytes.len() as f64 / 1e6
    );
    // Alternate the parsers within each repetition, so machine noise hits both.
    let parsers = [Parser::SimdJson, Parser::SerdeJson];
    let mut samples = vec![Vec::new(), Vec::new()];
    for _ in 0..REPETITIONS {
        for (slot, &parser) in parsers.iter().enumerate() {
            let mut scratch = bytes.clone();
            let start = Instant::now();
            let parsed = parse_snapshot_for_bench(&mut scratch, parser).unwrap();
            samples[slot].push(start.elapsed());
            assert_eq!(parsed as u64, entries);
        }
    }
    let results: Vec<Duration> = samples.into_iter().map(median).collect();
    for (parser, parse) in parsers.iter().zip(&results) {
        println!(
            "  parse with {parser:?}: {:.1} ms (median of {REPETITIONS})",
            ms(*parse)
        );
    }
    println!(
        "  simd-json is {:.2}x as fast as serde_json",
        results[1].as_secs_f64() / results[0].as_secs_f64()
    );
    let samples: Vec<Duration> = (0..REPETITIONS)
        .map(|_| {
            let start = Instant::now();
            let backend = JsonBackend::open(dir.path()).unwrap();
            let elapsed = start.elapsed();
            assert_eq!(backend.len().unwrap(), entries);
            elapsed
        })
        .collect();
    println!(
        "  open the {entries}-entry cache: {:.1} ms (median)",
        ms(median(samples))
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
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
            .put(&key!(experiment = "bench", idx = index), &record(index))
            .unwrap();
    }
    let put = entries as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for index in 0..entries {
        let back: Option<Record> = cache.get(&key!(experiment = "bench", idx = index)).unwrap();
        assert_eq!(back.as_ref(), Some(&record(index)));
    }
    let get = entries as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..5 {
        assert_eq!(
            cache.list(&ListOptions::default()).unwrap().len() as u64,
            entries
        );
    }
    let list_ms = ms(start.elapsed()) / 5.0;
    Figures { put, get, list_ms }
}

/// The median of each figure over fresh runs.
fn medians(name: &str, entries: u64, mut one_run: impl FnMut() -> Figures) -> Figures {
    let runs: Vec<Figures> = (0..REPETITIONS).map(|_| one_run()).collect();
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
        "| {name:<28} | {entries:>7} | {:>9.0} | {:>9.0} | {:>8.2} |",
        figures.put, figures.get, figures.list_ms
    );
    figures
}

fn run(
    base: &Option<PathBuf>,
    name: &str,
    entries: u64,
    inline_threshold: usize,
    open: impl Fn(&Path) -> Box<dyn MetadataBackend>,
) -> Figures {
    medians(name, entries, || {
        let dir = temp_dir(base);
        let cache = Cache::builder()
            .dir(dir.path())
            .inline_threshold(inline_threshold)
            .open(open(dir.path()))
            .unwrap();
        workload(&cache, entries)
    })
}

/// The disk's own cost of a file per value: temp file + rename into a sharded
/// directory, read back with `std::fs`; LIST is a directory walk.
fn raw_fs_floor(base: &Option<PathBuf>, entries: u64) -> Figures {
    medians("raw fs floor (file/value)", entries, || {
        let dir = temp_dir(base);
        let tmp = dir.path().join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let path_of = |index: u64| {
            let hex = key!(experiment = "bench", idx = index).key().to_hex();
            dir.path().join("blobs").join(&hex[..2]).join(hex)
        };
        let start = Instant::now();
        for index in 0..entries {
            let bytes = serde_json::to_vec(&record(index)).unwrap();
            let temp = tmp.join(format!("{index}.tmp"));
            fs::File::create(&temp).unwrap().write_all(&bytes).unwrap();
            let target = path_of(index);
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            fs::rename(&temp, &target).unwrap();
        }
        let put = entries as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        for index in 0..entries {
            let back: Record = serde_json::from_slice(&fs::read(path_of(index)).unwrap()).unwrap();
            assert_eq!(back, record(index));
        }
        let get = entries as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        for _ in 0..5 {
            let mut count = 0;
            for shard in fs::read_dir(dir.path().join("blobs")).unwrap().flatten() {
                count += fs::read_dir(shard.path()).unwrap().count();
            }
            assert_eq!(count as u64, entries);
        }
        let list_ms = ms(start.elapsed()) / 5.0;
        Figures { put, get, list_ms }
    })
}

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let quick = arguments.iter().any(|argument| argument == "--quick");
    let base: Option<PathBuf> = arguments
        .iter()
        .position(|argument| argument == "--dir")
        .and_then(|at| arguments.get(at + 1))
        .map(PathBuf::from);
    println!(
        "cache dirs under {}",
        base.as_deref().unwrap_or(&std::env::temp_dir()).display()
    );
    snapshot_load(&base, if quick { 10_000 } else { 100_000 });
    println!();
    println!("Cache PUT/GET ops/s and LIST ms (median of {REPETITIONS} fresh caches)");
    println!("| backend                      | entries |     PUT/s |     GET/s | LIST ms |");
    println!("|------------------------------|---------|-----------|-----------|---------|");
    let sizes: Vec<u64> = match arguments.iter().position(|argument| argument == "--sizes") {
        Some(at) => arguments[at + 1]
            .split(',')
            .map(|size| size.parse().unwrap())
            .collect(),
        None if quick => vec![1_000],
        None => vec![1_000, 10_000, 100_000],
    };
    let inline_options = JsonOptions {
        inline_values: true,
        ..JsonOptions::default()
    };
    for &entries in &sizes {
        let json = run(&base, "json (values in blobs)", entries, 4096, |dir| {
            Box::new(JsonBackend::open(dir).unwrap())
        });
        let inline = run(&base, "json inline_values", entries, 4096, |dir| {
            Box::new(JsonBackend::open_with(dir, &inline_options).unwrap())
        });
        let memory_blobs = run(&base, "memory, blobs (peer)", entries, 0, |_| {
            Box::new(MemoryBackend::new())
        });
        let memory_inline = run(&base, "memory, inline (peer)", entries, 4096, |_| {
            Box::new(MemoryBackend::new())
        });
        let floor = raw_fs_floor(&base, entries);
        println!(
            "  N={entries}: vs seed (2 700 PUT/s, 1 100 GET/s): json {:.0}x / {:.0}x, json inline {:.0}x / {:.0}x; \
             json / memory-blobs PUT {:.2} GET {:.2}; json inline / memory-inline PUT {:.2} GET {:.2}; \
             json / raw-fs floor PUT {:.2} GET {:.2}",
            json.put / 2_700.0,
            json.get / 1_100.0,
            inline.put / 2_700.0,
            inline.get / 1_100.0,
            json.put / memory_blobs.put,
            json.get / memory_blobs.get,
            inline.put / memory_inline.put,
            inline.get / memory_inline.get,
            json.put / floor.put,
            json.get / floor.get,
        );
    }
}
