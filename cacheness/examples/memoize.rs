//! A slow function memoized with `#[cacheness::memoize]`: the first process
//! computes it, the next one reads the stored result back.
//!
//! `cargo run --release --example memoize` runs this program twice more as
//! child processes sharing one cache dir (a temp dir, or `CACHENESS_DIR`),
//! and shows that only the first computes. `cargo test` runs it too.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set when the body runs in this process.
static COMPUTED: AtomicBool = AtomicBool::new(false);

/// The number of primes below `limit`: slow enough to be worth keeping.
#[cacheness::memoize(ttl = "1h", version = 1)]
fn primes_below(limit: usize) -> usize {
    COMPUTED.store(true, Ordering::SeqCst);
    let mut composite = vec![false; limit];
    let mut count = 0;
    for n in 2..limit {
        if !composite[n] {
            count += 1;
            for multiple in (n * n..limit).step_by(n) {
                composite[multiple] = true;
            }
        }
    }
    count
}

const CHILD: &str = "MEMOIZE_EXAMPLE_CHILD";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os(CHILD).is_some() {
        let started = Instant::now();
        let count = primes_below(3_000_000);
        let how = if COMPUTED.load(Ordering::SeqCst) {
            "computed"
        } else {
            "read from the cache"
        };
        println!(
            "{count} primes below 3 000 000, {how} in {:.1?}",
            started.elapsed()
        );
        return Ok(());
    }
    // The children share one cache dir: the one given, else a temp dir.
    let scratch = tempfile::tempdir()?;
    let dir: std::path::PathBuf =
        std::env::var_os("CACHENESS_DIR").map_or_else(|| scratch.path().into(), Into::into);
    let mut said = Vec::new();
    for run in 1..=2 {
        let output = Command::new(std::env::current_exe()?)
            .env(CHILD, "1")
            .env("CACHENESS_DIR", &dir)
            .output()?;
        let line = String::from_utf8(output.stdout)?;
        if !output.status.success() {
            return Err(format!(
                "run {run} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        print!("process {run}: {line}");
        said.push(line);
    }
    assert!(said[0].contains("computed"), "the first process computes");
    assert!(
        said[1].contains("read from the cache"),
        "the second reads it back"
    );
    Ok(())
}
