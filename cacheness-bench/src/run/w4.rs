//! W4, skewed reads: the hit ratio and read rate of a hot set.

use super::*;

impl Runner<'_> {
    pub(super) fn w4(&mut self) -> Result<()> {
        let (entries, gets) = self.plan.mode.w4_sizes();
        let hot = (entries / 5).max(1);
        let mut rng = fastrand::Rng::with_seed(4);
        let skewed: Vec<u64> = (0..gets)
            .map(|_| {
                if rng.f64() < 0.8 {
                    rng.u64(0..hot)
                } else {
                    rng.u64(hot..entries.max(hot + 1))
                }
            })
            .collect();
        let uniform: Vec<u64> = (0..gets).map(|_| rng.u64(0..entries)).collect();
        // Every backend is filled first, then the repetitions alternate between
        // them: the ratios W4 is read for (a layer over its backend alone) then
        // compare repetitions run side by side, not minutes apart on a machine
        // whose speed drifts.
        let mut stores = Vec::new();
        for backend in self.plan.backends.clone() {
            // A backend not compiled in keeps its reason, reported as "not run".
            let store = match not_compiled(&backend) {
                Some(reason) => Err(reason),
                None => {
                    let dir = self.fresh_dir(&format!("w4-{backend}"))?;
                    self.step(format!("w4 {backend}: filling {entries} entries"));
                    // A layer that can hold the whole working set: the default
                    // (1 000 entries) is smaller than the hot fifth of 10 000, so
                    // the layer would measure its own eviction, not its hits.
                    let mut store = Facade::open_layer_holding(&backend, &dir, "w4", entries)?;
                    for idx in 0..entries {
                        store.put_record(idx, &Record::new(idx))?;
                    }
                    Ok(store)
                }
            };
            stores.push((backend, store));
        }
        for (distribution, sequence) in [("80/20", &skewed), ("uniform", &uniform)] {
            let params = [
                ("entries", Param::Int(entries)),
                ("gets", Param::Int(gets)),
                ("distribution", Param::from(distribution)),
            ];
            let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); stores.len()];
            for rep in 1..=self.reps() {
                for ((backend, store), samples) in stores.iter_mut().zip(&mut samples) {
                    let Ok(store) = store else {
                        continue;
                    };
                    self.step(format!(
                        "w4 {backend} {distribution} rep {rep}/{}",
                        self.reps()
                    ));
                    samples.push(w4_rep(store, backend, sequence)?);
                }
            }
            for ((backend, store), samples) in stores.iter().zip(samples) {
                let outcome = store.as_ref().map(|_| samples).map_err(Clone::clone);
                self.push("w4", backend, RowKind::Cacheness, &params, outcome);
            }
        }
        Ok(())
    }
}

/// One W4 repetition: every GET of `sequence` (all hits, checked by id).
pub(super) fn w4_rep(store: &mut Facade, backend: &str, sequence: &[u64]) -> Result<Sample> {
    let before = store
        .cache
        .stats()
        .map_err(|source| store.fail(source.into()))?;
    let started = Instant::now();
    for &idx in sequence {
        match store.get_record(idx)? {
            Some(record) if record.id == idx => {}
            _ => return Err(wrong("w4", backend, idx)),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = store
        .cache
        .stats()
        .map_err(|source| store.fail(source.into()))?;
    let mut sample = BTreeMap::from([("get_ops_s", sequence.len() as f64 / elapsed.max(1e-12))]);
    if let Some(ratio) = layer_hit_ratio(&before, &after) {
        sample.insert("layer_hit_ratio", ratio);
    }
    let gets = (after.hits + after.misses).saturating_sub(before.hits + before.misses);
    if gets > 0 {
        let hits = after.hits.saturating_sub(before.hits);
        sample.insert("cache_hit_ratio", hits as f64 / gets as f64);
    }
    Ok(sample)
}

/// The memory layer's hit ratio between two stats, when the backend has a layer.
pub(super) fn layer_hit_ratio(before: &Stats, after: &Stats) -> Option<f64> {
    let (before, after) = (before.layer?, after.layer?);
    let hits = after.hits.saturating_sub(before.hits);
    let reads = hits + after.misses.saturating_sub(before.misses);
    (reads > 0).then(|| hits as f64 / reads as f64)
}
