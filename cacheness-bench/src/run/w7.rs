//! W7, memory: the resident size of a process holding a large cache.

use super::*;

impl Runner<'_> {
    pub(super) fn w7(&mut self) -> Result<()> {
        for backend in self.plan.backends.clone() {
            if let Some(reason) = not_compiled(&backend) {
                let params = [("n", Param::Int(self.plan.mode.large_n()))];
                self.push("w7", &backend, RowKind::Cacheness, &params, Err(reason));
                continue;
            }
            let (n, note) = self.large_n_for(&[backend.as_str()], f64::from(self.reps()))?;
            let params = [("n", Param::Int(n))];
            let mut samples = Vec::new();
            for rep in 1..=self.reps() {
                self.step(format!(
                    "w7 {backend} {n} entries (child process) rep {rep}/{}",
                    self.reps()
                ));
                let dir = self.fresh_dir(&format!("w7-{backend}"))?;
                let output = Command::new(&self.plan.exe)
                    .args([
                        "child",
                        "w7",
                        &backend,
                        &dir.display().to_string(),
                        &n.to_string(),
                    ])
                    .output();
                let report = child_json(output, "w7")?;
                let baseline = json_f64(&report, "baseline_rss");
                let peak = json_f64(&report, "peak_rss");
                if baseline <= 0.0 || peak <= 0.0 {
                    break;
                }
                samples.push(BTreeMap::from([
                    ("peak_rss_bytes", peak),
                    ("empty_rss_bytes", baseline),
                    ("per_entry_bytes", (peak - baseline) / n as f64),
                ]));
            }
            let outcome = if samples.is_empty() {
                Err("peak RSS is not available on this OS".into())
            } else {
                Ok(samples)
            };
            self.push("w7", &backend, RowKind::Cacheness, &params, outcome);
            self.annotate(note.as_ref());
        }
        Ok(())
    }
}
