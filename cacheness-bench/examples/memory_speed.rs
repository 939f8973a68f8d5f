//! Single-thread PUT and GET rates of the memory backend on the seed workload:
//! `cargo run --release -p cacheness-bench --example memory_speed [entries]`.
//!
//! A ~200-byte serde struct under `key!(experiment = "bench", idx = i)`, stored
//! inline (no directory), then read back in order. The full comparison with peers
//! is `cacheness-bench`; this is the quick check of the engine's own overhead.

use std::hint::black_box;
use std::time::Instant;

use cacheness_bench::stores::Record;
use cacheness_core::{Cache, key};
use cacheness_memory::MemoryBackend;

fn main() -> Result<(), cacheness_core::Error> {
    let entries: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let size = serde_json::to_vec(&Record::new(entries / 2)).map_or(0, |bytes| bytes.len());
    println!("memory backend, {entries} entries of ~{size} bytes (JSON), one thread");
    for round in 1..=3 {
        let cache = Cache::builder().open(MemoryBackend::new())?;
        let values: Vec<Record> = (0..entries).map(Record::new).collect();
        let started = Instant::now();
        for (index, value) in values.iter().enumerate() {
            cache.put(&key!(experiment = "bench", idx = index), value)?;
        }
        let put_rate = entries as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        for index in 0..entries as usize {
            let value: Option<Record> = cache.get(&key!(experiment = "bench", idx = index))?;
            black_box(value.expect("every key was put"));
        }
        let get_rate = entries as f64 / started.elapsed().as_secs_f64();
        println!("round {round}: PUT {put_rate:>10.0} ops/s   GET {get_rate:>10.0} ops/s");
    }
    Ok(())
}
