//! What `Durability::Sync` costs against the default `Durability::Flush`, for
//! puts through the facade, with the `json` and `sqlite` backends, small values
//! (inline where the backend allows) and 16 KiB values (blob files).
//!
//! ```text
//! cargo run --release -p cacheness --features json,sqlite --example durability_cost -- [puts] [dir]
//! ```
//!
//! `puts` defaults to 300 per case; `dir` to the system temp dir. Run it on the
//! filesystem the cache will live on: on tmpfs an fsync costs nothing.

use std::time::{Duration, Instant};

use cacheness::{CacheConfig, Durability, key};

fn measure(
    backend: &str,
    durability: Durability,
    value_len: usize,
    puts: u64,
    parent: &std::path::Path,
) -> Duration {
    let dir = tempfile::tempdir_in(parent).expect("a temp dir");
    let cache = CacheConfig::new()
        .dir(dir.path())
        .backend(backend)
        .durability(durability)
        .open()
        .expect("the cache opens");
    let value = vec![7u8; value_len];
    // Distinct bytes per put so nothing compresses away.
    let values: Vec<Vec<u8>> = (0..puts)
        .map(|index| {
            let mut bytes = value.clone();
            for (offset, byte) in bytes.iter_mut().enumerate() {
                *byte = (offset as u64)
                    .wrapping_mul(index + 1)
                    .wrapping_mul(0x9e37_79b9) as u8
                    ^ (offset >> 8) as u8;
            }
            bytes
        })
        .collect();
    let started = Instant::now();
    for (index, bytes) in values.iter().enumerate() {
        cache
            .put_bytes(&key!(bench = "durability", index = index as u64), bytes)
            .expect("put");
    }
    started.elapsed()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let puts: u64 = args
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(300);
    let parent = args.next().map_or_else(std::env::temp_dir, Into::into);
    println!(
        "{puts} puts per case, cache dirs under {}",
        parent.display()
    );
    println!("| backend | value | Flush µs/put | Sync µs/put | Sync / Flush |");
    println!("|---|---|---:|---:|---:|");
    for backend in ["json", "sqlite"] {
        for (label, value_len) in [("100 B", 100), ("16 KiB", 16 << 10)] {
            // Warm up once so the first case does not pay for page faults.
            measure(
                backend,
                Durability::Flush,
                value_len,
                puts / 10 + 1,
                &parent,
            );
            let flush = measure(backend, Durability::Flush, value_len, puts, &parent);
            let sync = measure(backend, Durability::Sync, value_len, puts, &parent);
            let per_put = |elapsed: Duration| elapsed.as_secs_f64() * 1e6 / puts as f64;
            println!(
                "| {backend} | {label} | {:.1} | {:.1} | {:.1}× |",
                per_put(flush),
                per_put(sync),
                sync.as_secs_f64() / flush.as_secs_f64()
            );
        }
    }
}
