//! `mmap_size` A/B: two `sqlite` caches in one process, one with a 512 MiB
//! memory map and one without, the same operations alternated between them.
//!
//! ```text
//! cargo run --release -p cacheness-bench --example sqlite_mmap_ab -- N ROUNDS [--read-only]
//! ```
//!
//! Both caches are filled with N seed-workload entries (~200-byte serde values
//! under `key!(experiment = "bench", idx = i)`) in alternating blocks of 1 000
//! puts. Each round then times, on each cache in turn (the order swaps every
//! round): 1 000 gets of pseudo-random keys, a `list` of 1 000 entries and,
//! unless `--read-only`, 100 overwriting puts. The machine this runs on changes
//! speed by up to 2× for minutes at a time, so the figures that count are the
//! medians of the per-round ratios of the two caches, measured side by side.

use std::error::Error;
use std::time::Instant;

use cacheness_core::{Cache, ListOptions, key};
use cacheness_sqlite::{SqliteBackend, SqliteOptions};

use cacheness_bench::stores::Record;

const MAPS: [(&str, u64); 2] = [("mmap 512 MiB", 512 * 1024 * 1024), ("mmap 0", 0)];

/// Per-cache samples of one measure.
type Samples = [Vec<f64>; 2];

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The median over rounds of the second cache's sample divided by the first's.
fn paired_ratio(samples: &Samples) -> f64 {
    median(
        samples[1]
            .iter()
            .zip(&samples[0])
            .map(|(b, a)| b / a)
            .collect(),
    )
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let number = |at: usize, default: u64| {
        args.get(at)
            .and_then(|arg| arg.parse().ok())
            .unwrap_or(default)
    };
    let n = number(1, 10_000).max(1_000) / 1_000 * 1_000;
    let rounds = number(2, 60).max(1) as usize;
    let read_only = args.iter().any(|arg| arg == "--read-only");

    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let mut caches = Vec::new();
    for (dir, (_, mmap_size)) in dirs.iter().zip(MAPS) {
        let options = SqliteOptions {
            mmap_size,
            ..SqliteOptions::default()
        };
        caches.push(
            Cache::builder()
                .dir(dir.path())
                .open(SqliteBackend::open_with(dir.path(), &options)?)?,
        );
    }

    let mut fill: Samples = Default::default();
    for block in 0..n / 1_000 {
        for (cache, samples) in caches.iter().zip(&mut fill) {
            let started = Instant::now();
            for index in block * 1_000..(block + 1) * 1_000 {
                cache.put(
                    &key!(experiment = "bench", idx = index),
                    &Record::new(index),
                )?;
            }
            samples.push(1_000.0 / started.elapsed().as_secs_f64());
        }
    }

    let (mut gets, mut lists, mut puts): (Samples, Samples, Samples) = Default::default();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for round in 0..rounds {
        for which in [round % 2, 1 - round % 2] {
            let cache = &caches[which];
            let started = Instant::now();
            for _ in 0..1_000 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let index = (state >> 33) % n;
                let back: Option<Record> = cache.get(&key!(experiment = "bench", idx = index))?;
                assert_eq!(
                    back.map(|back| back.id),
                    Some(index),
                    "entry {index} comes back"
                );
            }
            gets[which].push(1_000.0 / started.elapsed().as_secs_f64());

            let started = Instant::now();
            let listed = cache.list(&ListOptions::new().limit(1_000))?;
            lists[which].push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(listed.len(), 1_000);

            if !read_only {
                let started = Instant::now();
                for offset in 0..100 {
                    let index = (round as u64 * 100 + offset) % n;
                    cache.put(
                        &key!(experiment = "bench", idx = index),
                        &Record::new(index),
                    )?;
                }
                puts[which].push(100.0 / started.elapsed().as_secs_f64());
            }
        }
    }

    println!(
        "N = {n}, {rounds} rounds{}",
        if read_only { ", read-only" } else { "" }
    );
    for (which, (name, _)) in MAPS.iter().enumerate() {
        let overwrite = if read_only {
            String::new()
        } else {
            format!(", PUT between reads {:.0}/s", median(puts[which].clone()))
        };
        println!(
            "{name}: fill PUT {:.0}/s, GET {:.0}/s, LIST 1 000 {:.2} ms{overwrite}",
            median(fill[which].clone()),
            median(gets[which].clone()),
            median(lists[which].clone()),
        );
    }
    let overwrite = if read_only {
        String::new()
    } else {
        format!(", PUT between reads ×{:.2}", paired_ratio(&puts))
    };
    println!(
        "mmap 0 over mmap 512 MiB, medians of paired ratios: fill PUT ×{:.2}, GET ×{:.2}, LIST time ×{:.2}{overwrite}",
        paired_ratio(&fill),
        paired_ratio(&gets),
        paired_ratio(&lists),
    );
    Ok(())
}
