//! W1, the seed workload: PUT, GET and LIST of N records, on every row, diskcache included.

use super::*;

impl Runner<'_> {
    pub(super) fn w1(&mut self) -> Result<()> {
        let rows = self.rows(&["cacache", "raw-sqlite", "raw-fs"]);
        for &n in self.plan.mode.w1_sizes() {
            let records: Vec<Record> = (0..n).map(Record::new).collect();
            for (row, kind) in &rows {
                let params = [("n", Param::Int(n))];
                if let Some(reason) = (*kind == RowKind::Cacheness)
                    .then(|| not_compiled(row))
                    .flatten()
                {
                    self.push("w1", row, *kind, &params, Err(reason));
                    continue;
                }
                if let Some(reason) = self.w1_over_bound(row, n) {
                    self.push("w1", row, *kind, &params, Err(reason));
                    continue;
                }
                let mut samples = Vec::new();
                for rep in 1..=self.reps() {
                    self.step(format!("w1 {row} n={n} rep {rep}/{}", self.reps()));
                    let dir = self.fresh_dir(&format!("w1-{row}"))?;
                    let mut store = stores::open(row, &dir, "bench")?;
                    samples.push(w1_rep(store.as_mut(), row, &records)?);
                }
                self.push("w1", row, *kind, &params, Ok(samples));
            }
            self.w1_diskcache(n)?;
        }
        Ok(())
    }

    pub(super) fn w1_diskcache(&mut self, n: u64) -> Result<()> {
        if !self.plan.peers {
            return Ok(());
        }
        let params = [("n", Param::Int(n))];
        let over_bound = self.w1_over_bound(DISKCACHE, n);
        let outcome = match (&self.plan.python, over_bound) {
            (None, _) => {
                Err("no python3 with diskcache (cargo xtask bench-report sets one up)".into())
            }
            (Some(_), Some(reason)) => Err(reason),
            (Some(python), None) => {
                self.step(format!("w1 diskcache n={n} ({} reps)", self.reps()));
                let dir = self.fresh_dir("w1-diskcache")?;
                let request = serde_json::json!({
                    "workload": "w1", "n": n, "reps": self.reps(),
                    "dir": &dir,
                });
                Ok(python_samples(python, &dir, request, "bench", n)?)
            }
        };
        self.push("w1", DISKCACHE, RowKind::Peer, &params, outcome);
        Ok(())
    }
}

/// One W1 repetition: PUT all, GET all (checked), LIST five times.
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
