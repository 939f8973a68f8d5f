//! W3, large values: PUT and GET throughput by value size, compressible or not.

use super::*;

impl Runner<'_> {
    pub(super) fn w3(&mut self) -> Result<()> {
        let mut rows: Vec<(String, RowKind)> = self
            .rows(&["cacache", "raw-fs"])
            .into_iter()
            .filter(|(row, kind)| {
                *kind != RowKind::Cacheness || ["memory", "json", "sqlite"].contains(&row.as_str())
            })
            .collect();
        rows.dedup();
        for &(size, count) in self.plan.mode.w3_sizes() {
            for compressible in [true, false] {
                let values = w3_values(size, count, compressible);
                let kind_name = if compressible {
                    "compressible"
                } else {
                    "incompressible"
                };
                let params = [
                    ("size", Param::Int(size)),
                    ("values", Param::Int(count)),
                    ("data", Param::from(kind_name)),
                ];
                let mut runnable = Vec::new();
                for (row, kind) in &rows {
                    match (*kind == RowKind::Cacheness)
                        .then(|| not_compiled(row))
                        .flatten()
                    {
                        Some(reason) => self.push("w3", row, *kind, &params, Err(reason)),
                        None => runnable.push((row.as_str(), *kind, Vec::new())),
                    }
                }
                // Interleaved, repetition by repetition: no row pays for the
                // deletions of the one before it.
                for rep in 1..=self.reps() {
                    for (row, _, samples) in &mut runnable {
                        self.step(format!(
                            "w3 {row} {} x{count} {kind_name} rep {rep}/{}",
                            human_size(size),
                            self.reps()
                        ));
                        let dir = self.fresh_dir(&format!("w3-{row}"))?;
                        let mut store = stores::open(row, &dir, "w3")?;
                        samples.push(w3_rep(store.as_mut(), row, &values)?);
                        drop(store);
                        self.release_if_few_files(&dir)?;
                    }
                }
                for (row, kind, samples) in runnable {
                    self.push("w3", row, kind, &params, Ok(samples));
                }
            }
        }
        Ok(())
    }
}

/// `count` distinct values of `size` bytes: repeated text, or random bytes.
pub(super) fn w3_values(size: u64, count: u64, compressible: bool) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(size ^ count);
    (0..count)
        .map(|idx| {
            let size = size as usize;
            if compressible {
                let line = format!(
                    "value {idx}: the quick brown fox jumps over the lazy dog; cached result row\n"
                );
                line.bytes().cycle().take(size).collect()
            } else {
                let mut bytes = vec![0; size];
                rng.fill(&mut bytes);
                bytes
            }
        })
        .collect()
}

/// One W3 repetition: PUT every value, GET every value back (checked).
pub(super) fn w3_rep(store: &mut dyn Store, row: &str, values: &[Vec<u8>]) -> Result<Sample> {
    let total: u64 = values.iter().map(|value| value.len() as u64).sum();
    let megabytes = total as f64 / 1e6;
    let started = Instant::now();
    for (idx, value) in (0..).zip(values) {
        store.put_bytes(idx, value)?;
    }
    let put_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut read = Vec::with_capacity(values.len());
    for idx in 0..values.len() as u64 {
        read.push(store.get_bytes(idx)?);
    }
    let get_s = started.elapsed().as_secs_f64();
    for ((idx, value), expected) in (0..).zip(read).zip(values) {
        if value.as_deref() != Some(expected.as_slice()) {
            return Err(wrong("w3", row, idx));
        }
    }
    let mut sample = BTreeMap::from([
        ("put_mb_s", megabytes / put_s.max(1e-12)),
        ("get_mb_s", megabytes / get_s.max(1e-12)),
    ]);
    if let Some(stored) = store.stored_bytes().filter(|stored| *stored > 0) {
        sample.insert("compression_ratio", total as f64 / stored as f64);
    }
    Ok(sample)
}
