//! Speed of the `sqlite` backend on the seed workload, against raw rusqlite in
//! the same run.
//!
//! ```text
//! cargo run --release -p cacheness-bench --example sqlite_speed [-- --quick] [--autocheckpoint PAGES] [--wal-limit BYTES] [--mmap BYTES] [--page-size BYTES] [--no-checkpoint-thread]
//! ```
//!
//! Workload (BENCHMARK.md, W1): values are a ~200-byte serde struct (an id, a
//! short name, 20 integers) stored under `key!(experiment = "bench", idx = i)`
//! through `cacheness_core::Cache` over `SqliteBackend` in a fresh directory.
//! PUT times N puts; GET times N gets of the same keys (each value checked) plus
//! the `flush` that writes their batched access records; LIST times listing 1 000
//! entries. OPEN times opening an existing cache of 100 000 entries and serving
//! one get. Raw rusqlite does the same puts and gets with the same pragmas on a
//! table `(key BLOB PRIMARY KEY, value BLOB)`, the simplest a user would write
//! (a rowid table with an automatic unique index on `key`: the layout of the
//! backend's schema 4), and on the same table `WITHOUT ROWID` (rows stored in key
//! order: the layout of schema 3): the same key hashing and JSON encoding, one
//! `INSERT OR REPLACE` (own transaction) per put, one `SELECT` by key per get.
//! Every figure is the median of several repetitions (11 at N = 1 000, 3 at the
//! large N); the machine may be shared, so compare ratios within one run.
//!
//! `-- --list` times only LIST, alternating 2 000 times between the SQLite
//! cache, the memory backend holding the same entries, and raw rusqlite stepping
//! through the same rows without decoding them; medians and percentiles.

use std::path::Path;
use std::time::{Duration, Instant};

use cacheness_core::{Cache, ListOptions, key};
use cacheness_sqlite::{SqliteBackend, SqliteOptions};
use rusqlite::Connection;

use cacheness_bench::stores::Record;

/// The default options, or with `-- --autocheckpoint PAGES` another
/// `wal_autocheckpoint`, with `-- --wal-limit BYTES` another `wal_limit_bytes`,
/// with `-- --mmap BYTES` another `mmap_size` and with
/// `-- --page-size BYTES` another `page_size`, for the backend and both raw
/// floors alike; `-- --no-checkpoint-thread` makes the backend checkpoint in
/// the put that fills the log, as the floors do.
fn options() -> SqliteOptions {
    let args: Vec<String> = std::env::args().collect();
    let number = |flag: &str| {
        args.iter()
            .position(|arg| arg == flag)
            .and_then(|at| args.get(at + 1))
            .and_then(|value| value.parse().ok())
    };
    let defaults = SqliteOptions::default();
    SqliteOptions {
        wal_autocheckpoint: number("--autocheckpoint")
            .map_or(defaults.wal_autocheckpoint, |pages| pages as u32),
        wal_limit_bytes: number("--wal-limit").unwrap_or(defaults.wal_limit_bytes),
        mmap_size: number("--mmap").unwrap_or(defaults.mmap_size),
        page_size: number("--page-size").map_or(defaults.page_size, |bytes| bytes as u32),
        checkpoint_thread: !args.iter().any(|arg| arg == "--no-checkpoint-thread"),
        ..defaults
    }
}

fn bench_key(index: u64) -> cacheness_core::CacheKey {
    key!(experiment = "bench", idx = index).key()
}

struct Run {
    put_per_s: f64,
    get_per_s: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// PUT then GET of `n` entries through the cache, in a fresh directory.
fn cacheness_run(dir: &Path, n: u64) -> Result<(Run, Cache), Box<dyn std::error::Error>> {
    let cache = Cache::builder()
        .dir(dir)
        .open(SqliteBackend::open_with(dir, &options())?)?;
    let records: Vec<Record> = (0..n).map(Record::new).collect();
    let started = Instant::now();
    for (index, value) in records.iter().enumerate() {
        cache.put(&key!(experiment = "bench", idx = index as u64), value)?;
    }
    let put = started.elapsed();
    let started = Instant::now();
    for (index, value) in records.iter().enumerate() {
        let back: Option<Record> = cache.get(&key!(experiment = "bench", idx = index as u64))?;
        assert_eq!(back.as_ref(), Some(value), "value {index} comes back");
    }
    cache.flush()?;
    let get = started.elapsed();
    Ok((
        Run {
            put_per_s: per_second(n, put),
            get_per_s: per_second(n, get),
        },
        cache,
    ))
}

/// The same puts and gets with rusqlite alone, same pragmas.
fn raw_run(dir: &Path, n: u64, without_rowid: bool) -> Result<Run, Box<dyn std::error::Error>> {
    let options = options();
    let conn = Connection::open(dir.join("raw.db"))?;
    conn.execute_batch(&options.file_pragmas())?;
    conn.execute_batch(&options.pragmas())?;
    conn.execute_batch(&format!(
        "CREATE TABLE entries (key BLOB PRIMARY KEY, value BLOB NOT NULL){};",
        if without_rowid { " WITHOUT ROWID" } else { "" }
    ))?;
    let records: Vec<Record> = (0..n).map(Record::new).collect();
    let started = Instant::now();
    {
        let mut insert = conn.prepare_cached("INSERT OR REPLACE INTO entries VALUES (?1, ?2)")?;
        for (index, value) in records.iter().enumerate() {
            let key = bench_key(index as u64);
            insert.execute(rusqlite::params![
                key.as_bytes().as_slice(),
                serde_json::to_vec(value)?
            ])?;
        }
    }
    let put = started.elapsed();
    let started = Instant::now();
    {
        let mut select = conn.prepare_cached("SELECT value FROM entries WHERE key = ?1")?;
        for (index, value) in records.iter().enumerate() {
            let key = bench_key(index as u64);
            let bytes: Vec<u8> = select.query_row([key.as_bytes().as_slice()], |row| row.get(0))?;
            let back: Record = serde_json::from_slice(&bytes)?;
            assert_eq!(&back, value);
        }
    }
    let get = started.elapsed();
    Ok(Run {
        put_per_s: per_second(n, put),
        get_per_s: per_second(n, get),
    })
}

struct Figures {
    put: f64,
    get: f64,
    raw_put: f64,
    raw_get: f64,
    ordered_put: f64,
    ordered_get: f64,
    list_ms: f64,
}

fn measure(n: u64, repetitions: usize) -> Result<Figures, Box<dyn std::error::Error>> {
    let (mut puts, mut gets, mut raw_puts, mut raw_gets, mut lists) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ordered_puts, mut ordered_gets) = (Vec::new(), Vec::new());
    for _ in 0..repetitions {
        let dir = tempfile::tempdir()?;
        let (run, cache) = cacheness_run(dir.path(), n)?;
        puts.push(run.put_per_s);
        gets.push(run.get_per_s);
        for _ in 0..5 {
            let started = Instant::now();
            let listed = cache.list(&ListOptions::new().limit(1000))?;
            lists.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(listed.len(), 1000.min(n as usize));
        }
        drop(cache);
        let raw_dir = tempfile::tempdir()?;
        let raw = raw_run(raw_dir.path(), n, false)?;
        raw_puts.push(raw.put_per_s);
        raw_gets.push(raw.get_per_s);
        let ordered_dir = tempfile::tempdir()?;
        let ordered = raw_run(ordered_dir.path(), n, true)?;
        ordered_puts.push(ordered.put_per_s);
        ordered_gets.push(ordered.get_per_s);
    }
    Ok(Figures {
        put: median(puts),
        get: median(gets),
        raw_put: median(raw_puts),
        raw_get: median(raw_gets),
        ordered_put: median(ordered_puts),
        ordered_get: median(ordered_gets),
        list_ms: median(lists),
    })
}

/// Opening an existing cache of `n` entries and serving the first get.
fn open_time(n: u64, repetitions: usize) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    {
        let cache = Cache::builder()
            .dir(dir.path())
            .open(SqliteBackend::open(dir.path())?)?;
        for index in 0..n {
            cache.put(
                &key!(experiment = "bench", idx = index),
                &Record::new(index),
            )?;
        }
    }
    let (mut opens, mut firsts) = (Vec::new(), Vec::new());
    for repetition in 0..repetitions {
        let started = Instant::now();
        let cache = Cache::builder()
            .dir(dir.path())
            .open(SqliteBackend::open(dir.path())?)?;
        let opened = started.elapsed();
        let index = (repetition as u64 * 7_919) % n;
        let value: Option<Record> = cache.get(&key!(experiment = "bench", idx = index))?;
        let first = started.elapsed();
        assert_eq!(value, Some(Record::new(index)));
        opens.push(opened.as_secs_f64() * 1e3);
        firsts.push(first.as_secs_f64() * 1e3);
    }
    Ok((median(opens), median(firsts)))
}

/// `Cache::list` (default options) of a 1 000-entry cache, over SQLite and over
/// the memory backend, and raw rusqlite stepping through the same rows,
/// alternated `rounds` times: medians and minimums, in ms.
fn list_pair(
    rounds: usize,
    percentiles: bool,
) -> Result<[(f64, f64); 3], Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (_, sqlite) = cacheness_run(dir.path(), 1_000)?;
    let memory = Cache::builder().open(cacheness_memory::MemoryBackend::new())?;
    for index in 0..1_000u64 {
        memory.put(
            &key!(experiment = "bench", idx = index),
            &Record::new(index),
        )?;
    }
    let raw = Connection::open(dir.path().join(cacheness_sqlite::DB_FILE_NAME))?;
    let (mut sqlite_ms, mut memory_ms, mut raw_ms) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        let mut statement = raw.prepare_cached(
            "SELECT key, prefix, description, type_tag, codec, params, created_at, accessed_at, \
             expires_at, access_count, stored_size, raw_size, compression, content_hash, \
             inline_value, blob_name, signature, user_metadata FROM entries ORDER BY key",
        )?;
        let mut rows = statement.query([])?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let value: &[u8] = row.get_ref(14)?.as_blob()?;
            count += value.len().min(1);
        }
        raw_ms.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(count, 1_000);
        for (cache, times) in [(&sqlite, &mut sqlite_ms), (&memory, &mut memory_ms)] {
            let started = Instant::now();
            let listed = cache.list(&ListOptions::default())?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(listed.len(), 1_000);
        }
    }
    if percentiles {
        let first: Vec<String> = sqlite_ms
            .iter()
            .take(12)
            .map(|ms| format!("{ms:.2}"))
            .collect();
        println!(
            "first sqlite lists after the writes (ms): {}",
            first.join(" ")
        );
    }
    let low = |values: &[f64]| values.iter().copied().fold(f64::INFINITY, f64::min);
    let peers = [
        ("sqlite", &sqlite_ms),
        ("memory", &memory_ms),
        ("raw", &raw_ms),
    ];
    for (name, values) in peers.into_iter().filter(|_| percentiles) {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
        println!(
            "{name}: p10 {:.3} p25 {:.3} p50 {:.3} p75 {:.3} p90 {:.3}",
            at(0.1),
            at(0.25),
            at(0.5),
            at(0.75),
            at(0.9)
        );
    }
    Ok([
        (median(sqlite_ms.clone()), low(&sqlite_ms)),
        (median(memory_ms.clone()), low(&memory_ms)),
        (median(raw_ms.clone()), low(&raw_ms)),
    ])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::args().any(|arg| arg == "--quick");
    if std::env::args().any(|arg| arg == "--list") {
        let [(sqlite, sqlite_low), (memory, memory_low), (raw, raw_low)] = list_pair(2_000, true)?;
        println!(
            "LIST 1000 (default options), 2000 alternated rounds: sqlite median {sqlite:.3} ms (min {sqlite_low:.3}), memory backend median {memory:.3} ms (min {memory_low:.3}), raw step of the same rows {raw:.3} ms (min {raw_low:.3})"
        );
        return Ok(());
    }
    let large = if quick { 10_000 } else { 100_000 };
    let run_options = options();
    println!(
        "sqlite backend vs raw rusqlite, seed workload (~200-byte values), medians; wal_autocheckpoint = {}, mmap_size = {}, page_size = {}, checkpoint_thread = {}",
        run_options.wal_autocheckpoint,
        run_options.mmap_size,
        run_options.page_size,
        run_options.checkpoint_thread
    );
    let small = measure(1_000, 11)?;
    let big = measure(large, 3)?;
    for (n, figures) in [(1_000u64, &small), (large, &big)] {
        println!(
            "N={n:>6}: PUT {:>6.0}/s (raw {:>6.0}/s, {:>3.0} %; raw WITHOUT ROWID {:>6.0}/s)  GET {:>6.0}/s (raw {:>6.0}/s, {:>3.0} %; raw WITHOUT ROWID {:>6.0}/s)  LIST 1000 {:.2} ms",
            figures.put,
            figures.raw_put,
            100.0 * figures.put / figures.raw_put,
            figures.ordered_put,
            figures.get,
            figures.raw_get,
            100.0 * figures.get / figures.raw_get,
            figures.ordered_get,
            figures.list_ms,
        );
    }
    println!(
        "N={large} vs N=1000: PUT {:.0} % (raw {:.0} %, raw WITHOUT ROWID {:.0} %), GET {:.0} %",
        100.0 * big.put / small.put,
        100.0 * big.raw_put / small.raw_put,
        100.0 * big.ordered_put / small.ordered_put,
        100.0 * big.get / small.get
    );
    let [(sqlite, _), (memory, _), (raw, _)] = list_pair(200, false)?;
    println!(
        "LIST 1000 (default options), medians of 200 alternated rounds: sqlite {sqlite:.2} ms, memory backend {memory:.2} ms, raw step of the rows {raw:.2} ms"
    );
    let (open_ms, first_get_ms) = open_time(large, 5)?;
    println!("open a {large}-entry cache: {open_ms:.2} ms; open + first GET: {first_get_ms:.2} ms");
    Ok(())
}
