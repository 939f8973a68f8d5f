//! The put path of the backend (its transaction: read the replaced row, write
//! the row, read and update the totals, count the write) in raw SQL, over table
//! layouts and pragmas, each at N = 1 000 and N = 100 000 puts in a fresh file:
//! how much of the throughput at 1 000 each keeps at 100 000.
//!
//! ```text
//! cargo run --release -p cacheness-bench --example sqlite_layouts [-- --quick] [-- --only I]
//! # two variants interleaved run by run (their figures see the same load):
//! cargo run --release -p cacheness-bench --example sqlite_layouts -- --pair 1 3
//! # one run of variant I (default 0) under a profiler, pragmas from CKPT, CACHE,
//! # PASSIVE (a passive checkpoint every that many puts) and MMAP (default: the
//! # backend's `mmap_size`):
//! CKPT=50000 perf record -g target/release/examples/sqlite_layouts --profile 100000 --only 1
//! ```
//!
//! Layouts: `WithoutRowid` is schema 3 (rows stored in key order), `Rowid` schema
//! 4 (rows appended, a unique index on the key); `RawRowid` and `RawWithoutRowid`
//! are the `(key, value)` floors of `sqlite_speed`, one `INSERT OR REPLACE` per put.

use std::time::Instant;

use cacheness_sqlite::SqliteOptions;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

const COLS: &str = "key, prefix, description, type_tag, codec, params, \
         created_at, accessed_at, expires_at, access_count, stored_size, raw_size, \
         compression, content_hash, inline_value, blob_name, signature, user_metadata";

const ENTRY_COLS: &str = "
    prefix         TEXT    NOT NULL,
    description    TEXT    NOT NULL,
    type_tag       TEXT    NOT NULL,
    codec          TEXT    NOT NULL,
    params         TEXT,
    created_at     INTEGER NOT NULL,
    accessed_at    INTEGER NOT NULL,
    expires_at     INTEGER,
    access_count   INTEGER NOT NULL,
    stored_size    INTEGER NOT NULL,
    raw_size       INTEGER NOT NULL,
    compression    TEXT    NOT NULL,
    content_hash   BLOB    NOT NULL,
    inline_value   BLOB,
    blob_name      TEXT,
    signature      TEXT,
    user_metadata  TEXT,
    CHECK ((inline_value IS NULL) <> (blob_name IS NULL))";

const INDEXES: &str = "
CREATE INDEX entries_by_accessed_at ON entries (accessed_at);
CREATE INDEX entries_by_expires_at ON entries (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX entries_by_prefix ON entries (prefix) WHERE prefix <> '';
CREATE TABLE stats (id INTEGER NOT NULL PRIMARY KEY, entries INTEGER NOT NULL,
    total_size INTEGER NOT NULL, writes INTEGER NOT NULL);
INSERT INTO stats VALUES (1, 0, 0, 0);";

#[derive(Clone, Copy, Debug)]
enum Layout {
    WithoutRowid,
    Rowid,
    RawRowid,
    RawWithoutRowid,
}

#[derive(Clone, Copy, Debug)]
struct Variant {
    layout: Layout,
    page_size: u32,
    cache_kib: u64,
    autocheckpoint: u32,
    /// Passive checkpoint every this many puts (0: never), outside the put.
    passive_every: u64,
}

fn key(i: u64) -> [u8; 16] {
    *cacheness_core::key!(experiment = "bench", idx = i)
        .key()
        .as_bytes()
}

fn value(i: u64) -> Vec<u8> {
    let values: Vec<u64> = (0..20)
        .map(|j| 1_000_000 + (i * 7_919 + j * 104_729) % 9_000_000)
        .collect();
    format!("{{\"id\":{i},\"name\":\"item-{i}\",\"values\":{values:?}}}").into_bytes()
}

fn setup(path: &std::path::Path, v: &Variant) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // The backend's pragmas, from the one place it takes them, with the
    // variant's page size, cache and checkpoint interval.
    let defaults = SqliteOptions::default();
    let options = SqliteOptions {
        page_size: v.page_size,
        cache_size_kib: v.cache_kib,
        wal_autocheckpoint: v.autocheckpoint,
        mmap_size: std::env::var("MMAP")
            .ok()
            .and_then(|bytes| bytes.parse().ok())
            .unwrap_or(defaults.mmap_size),
        ..defaults
    };
    conn.execute_batch(&options.file_pragmas())?;
    conn.execute_batch(&options.pragmas())?;
    let schema = match v.layout {
        Layout::WithoutRowid => format!(
            "CREATE TABLE entries (key BLOB NOT NULL PRIMARY KEY, {ENTRY_COLS}) WITHOUT ROWID;{INDEXES}"
        ),
        Layout::Rowid => format!(
            "CREATE TABLE entries (id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, {ENTRY_COLS});{INDEXES}"
        ),
        Layout::RawRowid => {
            "CREATE TABLE entries (key BLOB PRIMARY KEY, value BLOB NOT NULL);".into()
        }
        Layout::RawWithoutRowid => {
            "CREATE TABLE entries (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;".into()
        }
    };
    conn.execute_batch(&schema)?;
    Ok(conn)
}

fn put_all(conn: &mut Connection, v: &Variant, n: u64) -> rusqlite::Result<f64> {
    let values: Vec<Vec<u8>> = (0..n).map(value).collect();
    let started = Instant::now();
    for i in 0..n {
        let k = key(i);
        match v.layout {
            Layout::RawRowid | Layout::RawWithoutRowid => {
                conn.prepare_cached("INSERT OR REPLACE INTO entries VALUES (?1, ?2)")?
                    .execute(rusqlite::params![k.as_slice(), values[i as usize]])?;
            }
            Layout::WithoutRowid | Layout::Rowid => {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let old: Option<i64> = tx
                    .prepare_cached(&format!("SELECT {COLS} FROM entries WHERE key = ?1"))?
                    .query_row([k.as_slice()], |row| row.get(10))
                    .optional()?;
                let params = format!("{{\"experiment\":\"bench\",\"idx\":{i}}}");
                let args = rusqlite::params![
                    k.as_slice(),
                    "",
                    "",
                    "sqlite_layouts::Record",
                    "json",
                    params,
                    1_700_000_000_000i64 + i as i64,
                    1_700_000_000_000i64 + i as i64,
                    None::<i64>,
                    0,
                    values[i as usize].len() as i64,
                    values[i as usize].len() as i64,
                    "none",
                    [7u8; 32].as_slice(),
                    values[i as usize],
                    None::<String>,
                    None::<String>,
                    None::<String>,
                ];
                if old.is_some() && matches!(v.layout, Layout::Rowid) {
                    tx.prepare_cached(
                        "UPDATE entries SET prefix=?2, description=?3, type_tag=?4, codec=?5, params=?6, \
                         created_at=?7, accessed_at=?8, expires_at=?9, access_count=?10, stored_size=?11, \
                         raw_size=?12, compression=?13, content_hash=?14, inline_value=?15, blob_name=?16, \
                         signature=?17, user_metadata=?18 WHERE key = ?1",
                    )?
                    .execute(args)?;
                } else {
                    tx.prepare_cached(&format!(
                        "INSERT OR REPLACE INTO entries ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
                    ))?
                    .execute(args)?;
                }
                let (entries, size): (i64, i64) = tx
                    .prepare_cached("SELECT entries, total_size FROM stats WHERE id = 1")?
                    .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
                tx.prepare_cached("UPDATE stats SET entries = ?1, total_size = ?2 WHERE id = 1")?
                    .execute([entries + 1, size + 200])?;
                tx.prepare_cached("UPDATE stats SET writes = writes + 1 WHERE id = 1")?
                    .execute([])?;
                tx.commit()?;
            }
        }
        if v.passive_every > 0 && (i + 1) % v.passive_every == 0 {
            let _: (i64, i64, i64) =
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|arg| arg == "--quick");
    let only: Option<usize> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|p| args.get(p + 1))
        .and_then(|s| s.parse().ok());
    let large = if quick { 20_000 } else { 100_000 };
    let base = Variant {
        layout: Layout::WithoutRowid,
        page_size: 4096,
        cache_kib: 20_000,
        autocheckpoint: 10_000,
        passive_every: 0,
    };
    let variants = [
        base,
        Variant {
            layout: Layout::Rowid,
            ..base
        },
        Variant {
            autocheckpoint: 50_000,
            ..base
        },
        Variant {
            layout: Layout::Rowid,
            autocheckpoint: 50_000,
            ..base
        },
        Variant {
            layout: Layout::RawRowid,
            ..base
        },
        Variant {
            layout: Layout::RawWithoutRowid,
            ..base
        },
    ];
    if let Some(n) = args
        .iter()
        .position(|a| a == "--profile")
        .and_then(|p| args.get(p + 1))
        .and_then(|s| s.parse::<u64>().ok())
    {
        let mut v = variants[only.unwrap_or(0)];
        let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
        if let Some(c) = env("CKPT") {
            v.autocheckpoint = c as u32;
        }
        if let Some(c) = env("CACHE") {
            v.cache_kib = c;
        }
        if let Some(c) = env("PASSIVE") {
            v.passive_every = c;
        }
        let reps = if n <= 1_000 { 100 } else { 1 };
        let mut rates = Vec::new();
        for _ in 0..reps {
            let dir = tempfile::tempdir()?;
            let mut conn = setup(&dir.path().join("p.db"), &v)?;
            rates.push(put_all(&mut conn, &v, n)?);
        }
        println!("{v:?} N={n}: {:.0}/s", median(rates));
        return Ok(());
    }
    if let Some(pair) = args.iter().position(|a| a == "--pair") {
        // Two variants interleaved run by run: their figures share the machine's load.
        let pick = |offset: usize| -> usize {
            args.get(pair + offset)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        };
        let chosen = [variants[pick(1)], variants[pick(2)]];
        let mut figures = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
        for rep in 0..11 {
            for (index, v) in chosen.iter().enumerate() {
                let dir = tempfile::tempdir()?;
                let mut conn = setup(&dir.path().join("a.db"), v)?;
                figures[index][0].push(put_all(&mut conn, v, 1_000)?);
                if rep < 3 {
                    let dir = tempfile::tempdir()?;
                    let mut conn = setup(&dir.path().join("b.db"), v)?;
                    figures[index][1].push(put_all(&mut conn, v, large)?);
                }
            }
        }
        for (v, [small, big]) in chosen.iter().zip(figures) {
            let (s, b) = (median(small), median(big));
            println!(
                "{v:?}: N=1000 {s:>8.0}/s  N={large} {b:>8.0}/s  ratio {:.0} %",
                100.0 * b / s
            );
        }
        return Ok(());
    }
    println!(
        "PUT/s medians, raw SQL of the backend's put transaction; N=1000 (11 runs) vs N={large} (3 runs), interleaved"
    );
    for (index, v) in variants.iter().enumerate() {
        if only.is_some_and(|o| o != index) {
            continue;
        }
        let (mut small, mut big) = (Vec::new(), Vec::new());
        for rep in 0..11 {
            let dir = tempfile::tempdir()?;
            let mut conn = setup(&dir.path().join("a.db"), v)?;
            small.push(put_all(&mut conn, v, 1_000)?);
            if rep < 3 {
                let dir = tempfile::tempdir()?;
                let mut conn = setup(&dir.path().join("b.db"), v)?;
                big.push(put_all(&mut conn, v, large)?);
            }
        }
        let (s, b) = (median(small), median(big));
        println!(
            "{index:>2} {v:?}: N=1000 {s:>8.0}/s  N={large} {b:>8.0}/s  ratio {:.0} %",
            100.0 * b / s
        );
    }
    Ok(())
}
