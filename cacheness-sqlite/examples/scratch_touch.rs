use cacheness_core::{AccessBatch, Cache, MetadataBackend, Touch, key};
use cacheness_sqlite::{SqliteBackend, SqliteOptions};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(100_000);
    let ckpt: u32 = std::env::args()
        .nth(2)
        .map(|a| a.parse().unwrap())
        .unwrap_or(1000);
    let dir = tempfile::tempdir()?;
    let mut options = SqliteOptions::default();
    options.wal_autocheckpoint = ckpt;
    let backend = std::sync::Arc::new(SqliteBackend::open_with(dir.path(), &options)?);
    let cache = Cache::builder()
        .dir(dir.path())
        .open_shared(backend.clone())?;
    let t = Instant::now();
    for i in 0..n {
        cache.put(&key!(experiment = "bench", idx = i), &vec![i; 20])?;
    }
    println!("put {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
    cache.flush()?;
    let t = Instant::now();
    for i in 0..n {
        let _ = backend.get(&key!(experiment = "bench", idx = i).key())?;
    }
    println!("backend get {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(4096) {
        let batch = AccessBatch {
            touches: chunk
                .iter()
                .map(|i| Touch {
                    key: key!(experiment = "bench", idx = *i).key(),
                    accessed_at: 5_000_000_000_000,
                    count: 1,
                })
                .collect(),
            counters: Default::default(),
        };
        backend.touch(&batch)?;
    }
    println!("touch {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
    let t = Instant::now();
    for i in 0..n {
        let _: Option<Vec<u64>> = cache.get(&key!(experiment = "bench", idx = i))?;
    }
    cache.flush()?;
    println!("cache get {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
    Ok(())
}
