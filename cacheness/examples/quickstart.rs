//! The quick start: `cargo run --release --example quickstart`.
//!
//! Opens a cache in a temporary directory, stores and reads a value by named
//! parameters, lets an entry expire, damages a blob file on purpose to show the
//! entry being detected and dropped (and the cache carrying on), and prints the
//! statistics.

use std::error::Error;
use std::fs;
use std::time::{Duration, Instant};

use cacheness::{CacheConfig, ManualClock, PutOptions, key};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Prediction {
    model: String,
    scores: Vec<f64>,
}

fn main() -> Result<(), Box<dyn Error>> {
    // Show the warning cacheness logs when it drops a corrupted entry.
    tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .init();

    let dir = std::env::temp_dir().join(format!("cacheness-quickstart-{}", std::process::id()));
    // A manual clock lets the example expire an entry without waiting.
    let clock = ManualClock::new(1_700_000_000_000);
    let cache = CacheConfig::new()
        .dir(&dir)
        .backend(best_backend())
        .default_ttl(Duration::from_secs(24 * 3600))
        .max_size(256 << 20)
        .open_with_clock(std::sync::Arc::new(clock.clone()))?;
    println!("cache: {cache:?}");

    // 1. Put and get by named parameters; their order does not matter.
    let key = key!(
        model = "xgboost",
        dataset = "customer_data",
        version = "1.0"
    );
    let prediction = Prediction {
        model: "xgboost".into(),
        scores: vec![0.91, 0.87, 0.42],
    };
    cache.put(&key, &prediction)?;
    let same_key = key!(
        version = "1.0",
        model = "xgboost",
        dataset = "customer_data"
    );
    let read: Option<Prediction> = cache.get(&same_key)?;
    assert_eq!(read.as_ref(), Some(&prediction));
    println!(
        "\n1. put/get   {} -> {:?}",
        key.key(),
        read.map(|p| p.scores)
    );

    // 2. A TTL expiring.
    let session = key!(user = 42, purpose = "session");
    cache.put_with(
        &session,
        &"token-abc",
        &PutOptions::new().ttl(Duration::from_secs(30)),
    )?;
    println!("2. ttl       fresh:   {:?}", cache.get::<String>(&session)?);
    clock.advance(Duration::from_secs(31));
    println!("             31 s on: {:?}", cache.get::<String>(&session)?);

    // 3. A corrupted entry: flip one byte of a blob file behind the cache's back.
    let big = key!(dataset = "features", shard = 7);
    let features: Vec<u64> = (0..50_000).map(|i| i * 2_654_435_761 % 1_000_003).collect();
    cache.put(&big, &features)?;
    let entry = cache.entry(&big)?.expect("just stored");
    let blob = cache
        .blob_path(&entry)
        .expect("large values live in blob files");
    let mut bytes = fs::read(&blob)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&blob, bytes)?;
    println!("3. corrupt   flipped a byte of {}", blob.display());
    let after_damage: Option<Vec<u64>> = cache.get(&big)?;
    println!(
        "             get -> {:?} (detected by its blake3 hash, entry and file removed: {})",
        after_damage.map(|v| v.len()),
        !blob.exists()
    );
    cache.put(&big, &features)?;
    println!(
        "             recomputed and stored again: {} values",
        cache.get::<Vec<u64>>(&big)?.map_or(0, |v| v.len())
    );

    // 4. Throughput of this build on this machine, single thread.
    let started = Instant::now();
    for index in 0..10_000u32 {
        cache.put(&key!(bench = "quickstart", idx = index), &prediction)?;
    }
    let put_rate = 10_000.0 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for index in 0..10_000u32 {
        let value: Option<Prediction> = cache.get(&key!(bench = "quickstart", idx = index))?;
        assert!(value.is_some());
    }
    let get_rate = 10_000.0 / started.elapsed().as_secs_f64();
    println!(
        "4. speed     {put_rate:.0} puts/s, {get_rate:.0} gets/s (10 000 entries, one thread)"
    );

    // 5. Statistics.
    let stats = cache.stats()?;
    println!(
        "5. stats     {} entries, {} bytes, {} hits, {} misses, hit ratio {:.3}",
        stats.entries,
        stats.total_size,
        stats.hits,
        stats.misses,
        stats.hit_ratio()
    );

    drop(cache);
    fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The production backend when this build has it (the default features do).
fn best_backend() -> &'static str {
    let compiled = |name: &&str| {
        cacheness::backend::BACKENDS
            .iter()
            .any(|backend| backend.name == *name && backend.compiled)
    };
    ["sqlite", "json", "memory"]
        .into_iter()
        .find(compiled)
        .unwrap_or("memory")
}
