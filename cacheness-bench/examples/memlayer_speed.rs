//! Hot-key reads with and without the memory layer, in one run (BENCHMARK.md W4).
//!
//! 10 000 entries; 1 000 000 gets drawn 80/20 (80 % of gets hit 20 % of keys)
//! and uniformly, through `cacheness_core::Cache`, over each backend alone and
//! with the layer in front: capacity 10 000 entries (everything) and the default
//! 1 000, checking the backend's data version before every read (the default);
//! and capacity 10 000 checking at most every 100 ms (or the third argument). Run with:
//!
//! ```text
//! cargo run --release -p cacheness-bench --example memlayer_speed [-- reads [backend|all [interval_ms]]]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use cacheness_bench::stores::Record;
use cacheness_core::{Cache, CacheKey, MetadataBackend, ToKey, key};
use cacheness_memlayer::{Capacity, MemLayer, MemLayerConfig};

const ENTRIES: u64 = 10_000;

/// A small deterministic generator (xorshift64*), so every backend sees the same draws.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn reads(count: usize, hot: bool) -> Vec<usize> {
    let mut draws = Draws(0x9e37_79b9_7f4a_7c15);
    let hot_keys = ENTRIES / 5;
    (0..count)
        .map(|_| {
            let index = if !hot {
                draws.below(ENTRIES)
            } else if draws.below(100) < 80 {
                draws.below(hot_keys)
            } else {
                hot_keys + draws.below(ENTRIES - hot_keys)
            };
            index as usize
        })
        .collect()
}

struct Outcome {
    reads_per_sec: f64,
    hit_ratio: Option<f64>,
}

fn run(
    backend: Arc<dyn MetadataBackend>,
    dir: &std::path::Path,
    keys: &[CacheKey],
    order: &[usize],
) -> Outcome {
    let cache = Cache::builder()
        .dir(dir.join("blobs"))
        .open_shared(backend)
        .expect("the cache opens");
    for (index, key) in keys.iter().enumerate() {
        cache.put(key, &Record::new(index as u64)).expect("put");
    }
    let before = cache.stats().expect("stats").layer;
    let start = Instant::now();
    for &index in order {
        let value: Record = cache
            .get(&keys[index])
            .expect("get")
            .expect("every key is there");
        assert_eq!(value.id, index as u64);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = cache.stats().expect("stats").layer;
    let hit_ratio = after.map(|after| {
        let before = before.unwrap_or_default();
        let hits = after.hits - before.hits;
        let misses = after.misses - before.misses;
        hits as f64 / (hits + misses).max(1) as f64
    });
    Outcome {
        reads_per_sec: order.len() as f64 / elapsed,
        hit_ratio,
    }
}

type Open = fn(&std::path::Path) -> Arc<dyn MetadataBackend>;

fn layered(
    backend: Arc<dyn MetadataBackend>,
    capacity: u64,
    check_interval: Duration,
) -> Arc<dyn MetadataBackend> {
    let config = MemLayerConfig::new()
        .capacity(Capacity::Entries(capacity))
        .check_interval(check_interval);
    Arc::new(MemLayer::new(backend, config).expect("valid config"))
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(1_000_000);
    let keys: Vec<CacheKey> = (0..ENTRIES)
        .map(|idx| key!(experiment = "bench", idx = idx).to_key())
        .collect();
    let backends: [(&str, Open); 3] = [
        ("memory", |_| {
            Arc::new(cacheness_memory::MemoryBackend::new())
        }),
        ("sqlite", |dir| {
            Arc::new(cacheness_sqlite::SqliteBackend::open(dir).expect("sqlite opens"))
        }),
        ("json", |dir| {
            Arc::new(cacheness_json::JsonBackend::open(dir).expect("json opens"))
        }),
    ];
    let only = std::env::args().nth(2).filter(|name| name != "all");
    let interval_ms: u64 = std::env::args()
        .nth(3)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(100);
    println!("{ENTRIES} entries, {count} gets per cell, release build");
    println!(
        "{:<8} {:<8} {:>12} | {:^23} | {:^23} | {:^23}",
        "backend",
        "reads",
        "alone get/s",
        "layer 10k, check 0",
        "layer 1k, check 0",
        format!("layer 10k, check {interval_ms}ms")
    );
    println!(
        "{:<8} {:<8} {:>12} | {:>9} {:>7} {:>5} | {:>9} {:>7} {:>5} | {:>9} {:>7} {:>5}",
        "", "", "", "get/s", "ratio", "hits", "get/s", "ratio", "hits", "get/s", "ratio", "hits"
    );
    for (name, open) in backends {
        if only.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        for (pattern, hot) in [("80/20", true), ("uniform", false)] {
            let order = reads(count, hot);
            let fresh = || tempfile::tempdir().expect("temp dir");
            let dir = fresh();
            let alone = run(open(dir.path()), dir.path(), &keys, &order);
            let layered_run = |capacity, interval| {
                let dir = fresh();
                run(
                    layered(open(dir.path()), capacity, interval),
                    dir.path(),
                    &keys,
                    &order,
                )
            };
            let cells = [
                layered_run(ENTRIES, Duration::ZERO),
                layered_run(1_000, Duration::ZERO),
                layered_run(ENTRIES, Duration::from_millis(interval_ms)),
            ];
            print!("{name:<8} {pattern:<8} {:>12.0}", alone.reads_per_sec);
            for cell in cells {
                print!(
                    " | {:>9.0} {:>6.2}x {:>5.1}%",
                    cell.reads_per_sec,
                    cell.reads_per_sec / alone.reads_per_sec,
                    cell.hit_ratio.unwrap_or(0.0) * 100.0
                );
            }
            println!();
        }
    }
}
