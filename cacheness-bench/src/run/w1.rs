//! W1, the seed workload: PUT, GET and LIST of N records, on every row, diskcache
//! included; each cacheness backend also with every other codec (`sqlite/json`);
//! and at N = 1 000 the same right after a mass deletion of files (`w1-churn`).
//!
//! Rows of a cell run interleaved, repetition by repetition (A B C, A B C, ...),
//! so no row pays for the file deletions of the row before it.

use cacheness::NamedCodec;

use super::*;

/// The workload name of W1 after a mass deletion.
pub const W1_CHURN: &str = "w1-churn";

/// Files created and deleted before each repetition of the churn condition:
/// what a cache's eviction and gc produce, and what slows file creation on ext4
/// for minutes afterwards.
pub const CHURN_FILES: u64 = 50_000;

/// The N of the churn condition.
const CHURN_N: u64 = 1_000;

/// The W1 rows: the backends with the default codec under their own names,
/// then each backend with each other codec (`memory/json`), then the peers.
fn with_codec_rows(rows: Vec<(String, RowKind)>) -> Vec<(String, RowKind)> {
    let (cacheness, peers): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|(_, kind)| *kind == RowKind::Cacheness);
    let mut all = cacheness.clone();
    for codec in NamedCodec::ALL.iter().skip(1) {
        all.extend(
            cacheness
                .iter()
                .map(|(row, kind)| (format!("{row}/{codec}"), *kind)),
        );
    }
    all.extend(peers);
    all
}

/// The backend name of a row (`sqlite/json` → `sqlite`).
fn backend_of(row: &str) -> &str {
    row.split_once('/').map_or(row, |(backend, _)| backend)
}

impl Runner<'_> {
    pub(super) fn w1(&mut self) -> Result<()> {
        let rows = with_codec_rows(self.rows(&["cacache", "raw-sqlite", "raw-fs"]));
        for &n in self.plan.mode.w1_sizes() {
            self.w1_cell("w1", &rows, n, false)?;
            self.w1_diskcache("w1", n, false)?;
        }
        if self.plan.mode.w1_sizes().contains(&CHURN_N) {
            let rows: Vec<_> = self
                .rows(&["raw-sqlite", "raw-fs"])
                .into_iter()
                .filter(|(row, _)| !row.contains('/'))
                .collect();
            self.w1_cell(W1_CHURN, &rows, CHURN_N, true)?;
            self.w1_diskcache(W1_CHURN, CHURN_N, true)?;
        }
        Ok(())
    }

    /// Runs the cell of `rows` at `n`, repetition by repetition; with `churn`,
    /// each repetition starts right after a mass deletion of files.
    fn w1_cell(
        &mut self,
        workload: &'static str,
        rows: &[(String, RowKind)],
        n: u64,
        churn: bool,
    ) -> Result<()> {
        let records: Vec<Record> = (0..n).map(Record::new).collect();
        let params = [("n", Param::Int(n))];
        let mut runnable = Vec::new();
        for (row, kind) in rows {
            let skipped = (*kind == RowKind::Cacheness)
                .then(|| not_compiled(backend_of(row)))
                .flatten()
                .or_else(|| self.w1_over_bound(row, n));
            match skipped {
                Some(reason) => self.push(workload, row, *kind, &params, Err(reason)),
                None => runnable.push((row.as_str(), *kind, Vec::new())),
            }
        }
        for rep in 1..=self.reps() {
            if churn {
                self.step(format!(
                    "{workload} rep {rep}: creating and deleting {CHURN_FILES} files"
                ));
                self.churn()?;
            }
            for (row, _, samples) in &mut runnable {
                self.step(format!("{workload} {row} n={n} rep {rep}/{}", self.reps()));
                let dir = self.fresh_dir(&format!("{workload}-{row}"))?;
                let mut store = stores::open(row, &dir, "bench")?;
                samples.push(w1_rep(store.as_mut(), row, &records)?);
            }
        }
        for (row, kind, samples) in runnable {
            self.push(workload, row, kind, &params, Ok(samples));
        }
        Ok(())
    }

    /// Creates [`CHURN_FILES`] small files in a directory of the run's own
    /// scratch space and deletes them again.
    fn churn(&mut self) -> Result<()> {
        let dir = self.fresh_dir("churn")?;
        churn_in(&dir, CHURN_FILES)
    }

    pub(super) fn w1_diskcache(&mut self, workload: &str, n: u64, churn: bool) -> Result<()> {
        if !self.plan.peers {
            return Ok(());
        }
        let params = [("n", Param::Int(n))];
        let over_bound = self.w1_over_bound(DISKCACHE, n);
        let outcome = match (self.plan.python.clone(), over_bound) {
            (None, _) => {
                Err("no python3 with diskcache (cargo xtask bench-report sets one up)".into())
            }
            (Some(_), Some(reason)) => Err(reason),
            (Some(python), None) => {
                // After each deletion the driver runs one repetition, as the
                // other rows do.
                let (runs, reps_per_run) = match churn {
                    true => (self.reps(), 1),
                    false => (1, self.reps()),
                };
                let mut samples = Vec::new();
                for run in 1..=runs {
                    if churn {
                        self.churn()?;
                    }
                    self.step(format!("{workload} diskcache n={n} run {run}/{runs}"));
                    let dir = self.fresh_dir(&format!("{workload}-diskcache"))?;
                    let request = serde_json::json!({
                        "workload": "w1", "n": n, "reps": reps_per_run,
                        "dir": &dir,
                    });
                    samples.extend(python_samples(&python, &dir, request, "bench", n)?);
                }
                Ok(samples)
            }
        };
        self.push(workload, DISKCACHE, RowKind::Peer, &params, outcome);
        Ok(())
    }
}

/// Creates `files` one-byte files in `dir` (which must be empty and the
/// caller's own), then deletes them and `dir`.
pub(crate) fn churn_in(dir: &Path, files: u64) -> Result<()> {
    for index in 0..files {
        let path = dir.join(format!("{index:06}"));
        std::fs::write(&path, b"x").map_err(|source| BenchError::io(&path, source))?;
    }
    for index in 0..files {
        let path = dir.join(format!("{index:06}"));
        std::fs::remove_file(&path).map_err(|source| BenchError::io(&path, source))?;
    }
    std::fs::remove_dir(dir).map_err(|source| BenchError::io(dir, source))
}

pub(super) fn w1_rep(store: &mut dyn Store, row: &str, records: &[Record]) -> Result<Sample> {
    let n = records.len() as f64;
    let mut put_latency = histogram();
    let started = Instant::now();
    for (idx, record) in (0..).zip(records) {
        let op = Instant::now();
        store.put_record(idx, record)?;
        record_latency(&mut put_latency, op);
    }
    let put_s = started.elapsed().as_secs_f64();
    let mut get_latency = histogram();
    let started = Instant::now();
    for (idx, expected) in (0..).zip(records) {
        let op = Instant::now();
        let value = store.get_record(idx)?;
        record_latency(&mut get_latency, op);
        if value.as_ref() != Some(expected) {
            return Err(wrong("w1", row, idx));
        }
    }
    let get_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 0..5 {
        let listed = store.list()?;
        if listed != records.len() {
            return Err(wrong("w1", row, listed as u64));
        }
    }
    let list_ms = started.elapsed().as_secs_f64() * 1e3 / 5.0;
    let micros = |histogram: &Histogram<u64>, quantile: f64| {
        histogram.value_at_quantile(quantile) as f64 / 1e3
    };
    Ok(BTreeMap::from([
        ("put_ops_s", n / put_s.max(1e-12)),
        ("get_ops_s", n / get_s.max(1e-12)),
        ("list_ms", list_ms),
        ("put_p50_us", micros(&put_latency, 0.5)),
        ("put_p99_us", micros(&put_latency, 0.99)),
        ("get_p50_us", micros(&get_latency, 0.5)),
        ("get_p99_us", micros(&get_latency, 0.99)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_rows_follow_the_default_ones_and_peers_come_last() {
        let rows = with_codec_rows(vec![
            ("memory".into(), RowKind::Cacheness),
            ("sqlite".into(), RowKind::Cacheness),
            ("raw-fs".into(), RowKind::Floor),
        ]);
        let names: Vec<&str> = rows.iter().map(|(row, _)| row.as_str()).collect();
        let mut expected = vec!["memory".to_owned(), "sqlite".to_owned()];
        for codec in NamedCodec::ALL.iter().skip(1) {
            expected.push(format!("memory/{codec}"));
            expected.push(format!("sqlite/{codec}"));
        }
        expected.push("raw-fs".into());
        assert_eq!(names, expected);
        assert_eq!(backend_of("sqlite/json"), "sqlite");
        assert_eq!(backend_of("memlayer+sqlite"), "memlayer+sqlite");
    }

    #[test]
    fn the_churn_deletes_what_it_made_and_only_that() {
        let scratch = tempfile::tempdir().unwrap();
        let neighbour = scratch.path().join("neighbour");
        std::fs::write(&neighbour, b"keep").unwrap();
        let dir = scratch.path().join("churn");
        std::fs::create_dir(&dir).unwrap();
        churn_in(&dir, 500).unwrap();
        assert!(!dir.exists(), "the churn dir is gone");
        assert_eq!(std::fs::read(&neighbour).unwrap(), b"keep");
        assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 1);
    }
}
