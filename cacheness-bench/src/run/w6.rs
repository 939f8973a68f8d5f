//! W6, open, rebuild and migration of a filled cache.

use super::*;

impl Runner<'_> {
    pub(super) fn w6(&mut self) -> Result<()> {
        for backend in self.plan.backends.clone() {
            if let Some(reason) = not_compiled(&backend) {
                let params = [("n", Param::Int(self.plan.mode.large_n()))];
                self.push("w6", &backend, RowKind::Cacheness, &params, Err(reason));
                continue;
            }
            let other = match backend.as_str() {
                "json" => Some("sqlite"),
                "sqlite" => Some("json"),
                _ => None,
            };
            let mut involved = vec![backend.as_str()];
            involved.extend(other.filter(|other| not_compiled(other).is_none()));
            // The longest cell: one fill, then a fill or a migration per repetition.
            let (n, note) = self.large_n_for(&involved, f64::from(self.reps()) + 1.0)?;
            let params = [("n", Param::Int(n))];
            let Some(dir) = self.filled_template(&backend, "w6", n, None)? else {
                let reason = "not persistent: nothing to reopen".to_owned();
                self.push("w6", &backend, RowKind::Cacheness, &params, Err(reason));
                continue;
            };
            let mut samples = Vec::new();
            for rep in 1..=self.reps() {
                self.step(format!("w6 {backend} open rep {rep}/{}", self.reps()));
                let started = Instant::now();
                let mut store = Facade::open(&backend, &dir, "w6")?;
                let first = store.get_record(n / 2)?;
                let elapsed = started.elapsed();
                if first != Some(Record::new(n / 2)) {
                    return Err(BenchError::WrongValue {
                        workload: "w6".into(),
                        backend: backend.clone(),
                        item: n / 2,
                    });
                }
                samples.push(BTreeMap::from([(
                    "open_first_get_ms",
                    elapsed.as_secs_f64() * 1e3,
                )]));
            }
            self.push("w6", &backend, RowKind::Cacheness, &params, Ok(samples));
            self.annotate(note.as_ref());
            self.w6_rebuild(&backend, n)?;
            self.annotate(note.as_ref());
            if let Some(other) = other {
                self.w6_migrate(&backend, other, &dir, n)?;
                self.annotate(note.as_ref());
            }
        }
        Ok(())
    }

    /// Time to rebuild the metadata from the blob files after it is deleted.
    /// Values go to blob files (inline threshold 0): inline values have no file
    /// to rebuild from.
    pub(super) fn w6_rebuild(&mut self, backend: &str, n: u64) -> Result<()> {
        let params = [("n", Param::Int(n)), ("task", Param::from("rebuild"))];
        let Some(metadata) = metadata_files(backend) else {
            let reason = "no metadata file of its own to lose".to_owned();
            self.push("w6", backend, RowKind::Cacheness, &params, Err(reason));
            return Ok(());
        };
        let Some(template) = self.filled_template(backend, "w6r", n, Some(0))? else {
            let reason = "not persistent: nothing to rebuild".to_owned();
            self.push("w6", backend, RowKind::Cacheness, &params, Err(reason));
            return Ok(());
        };
        let mut samples = Vec::new();
        for rep in 1..=self.reps() {
            self.step(format!("w6 {backend} rebuild rep {rep}/{}", self.reps()));
            let dir = self.fresh_dir(&format!("w6r-{backend}"))?;
            clone_cache(&template, &dir)?;
            let open = || {
                CacheConfig::new()
                    .dir(&dir)
                    .backend(backend)
                    .inline_threshold(0)
                    .open()
                    .map_err(|source| BenchError::cache("w6", backend, source))
            };
            for name in metadata {
                let path = dir.join(name);
                if path.exists() {
                    std::fs::remove_file(&path).map_err(|source| BenchError::io(&path, source))?;
                }
            }
            let started = Instant::now();
            let cache = open()?;
            let report = cache
                .rebuild(&mut cacheness::ops::no_progress)
                .map_err(|source| BenchError::cache("w6", backend, source))?;
            let elapsed = started.elapsed();
            let entries = cache
                .stats()
                .map_err(|source| BenchError::cache("w6", backend, source))?
                .entries;
            if entries != n {
                return Err(BenchError::cache(
                    "w6",
                    backend,
                    format!("rebuild recovered {entries} of {n} entries ({report:?})"),
                ));
            }
            samples.push(BTreeMap::from([("ms", elapsed.as_secs_f64() * 1e3)]));
        }
        self.push("w6", backend, RowKind::Cacheness, &params, Ok(samples));
        Ok(())
    }

    /// Time to open `filled` (a cache of `from`) as `to`: the facade migrates
    /// every entry on that open.
    pub(super) fn w6_migrate(&mut self, from: &str, to: &str, filled: &Path, n: u64) -> Result<()> {
        let task = format!("migrate to {to}");
        let params = [("n", Param::Int(n)), ("task", Param::from(task.as_str()))];
        if let Some(reason) = not_compiled(to) {
            self.push("w6", from, RowKind::Cacheness, &params, Err(reason));
            return Ok(());
        }
        let mut samples = Vec::new();
        for rep in 1..=self.reps() {
            self.step(format!("w6 {from} {task} rep {rep}/{}", self.reps()));
            let dir = self.fresh_dir(&format!("w6m-{from}"))?;
            clone_cache(filled, &dir)?;
            let started = Instant::now();
            let mut store = Facade::open(to, &dir, "w6")?;
            let elapsed = started.elapsed();
            if store.list()? as u64 != n || store.get_record(n / 2)? != Some(Record::new(n / 2)) {
                return Err(wrong("w6", to, n / 2));
            }
            samples.push(BTreeMap::from([("ms", elapsed.as_secs_f64() * 1e3)]));
        }
        self.push("w6", from, RowKind::Cacheness, &params, Ok(samples));
        Ok(())
    }
}
