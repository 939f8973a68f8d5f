//! W5, concurrency: threads sharing one cache, and processes writing one directory.

use super::*;

impl Runner<'_> {
    pub(super) fn w5_threads(&mut self) -> Result<()> {
        let (thread_counts, keys, ops) = self.plan.mode.w5_threads();
        for backend in self.plan.backends.clone() {
            // A persistent backend's keys are written once; each repetition
            // starts from a copy of that cache (see `clone_cache`).
            let template = match not_compiled(&backend) {
                Some(_) => None,
                None => self.filled_template(&backend, "w5", keys, None)?,
            };
            for &threads in thread_counts {
                let params = [
                    ("threads", Param::Int(threads)),
                    ("keys", Param::Int(keys)),
                    ("ops", Param::Int(ops)),
                ];
                if let Some(reason) = not_compiled(&backend) {
                    self.push("w5", &backend, RowKind::Cacheness, &params, Err(reason));
                    continue;
                }
                let mut samples = Vec::new();
                for rep in 1..=self.reps() {
                    self.step(format!(
                        "w5 {backend} {threads} threads rep {rep}/{}",
                        self.reps()
                    ));
                    let dir = self.fresh_dir(&format!("w5-{backend}"))?;
                    samples.push(w5_threads_rep(
                        &backend,
                        &dir,
                        template.as_deref(),
                        (threads, keys, ops),
                    )?);
                }
                self.push("w5", &backend, RowKind::Cacheness, &params, Ok(samples));
            }
        }
        if self.plan.peers {
            for &threads in thread_counts {
                let params = [
                    ("threads", Param::Int(threads)),
                    ("keys", Param::Int(keys)),
                    ("ops", Param::Int(ops)),
                ];
                let outcome = match &self.plan.python {
                    None => Err("no python3 with diskcache".into()),
                    Some(python) => {
                        self.step(format!("w5 diskcache {threads} threads"));
                        let dir = self.fresh_dir("w5-diskcache")?;
                        let request = serde_json::json!({
                            "workload": "w5-threads", "threads": threads, "keys": keys,
                            "ops": ops, "reps": self.reps(), "dir": &dir,
                        });
                        Ok(python_samples(python, &dir, request, "w5", keys)?)
                    }
                };
                self.push("w5", DISKCACHE, RowKind::Peer, &params, outcome);
            }
        }
        Ok(())
    }

    pub(super) fn w5_processes(&mut self) -> Result<()> {
        let (processes, per_process) = self.plan.mode.w5_processes();
        let params = [
            ("processes", Param::Int(processes)),
            ("keys_each", Param::Int(per_process)),
        ];
        for backend in self.plan.backends.clone() {
            if let Some(reason) = not_compiled(&backend) {
                self.push("w5p", &backend, RowKind::Cacheness, &params, Err(reason));
                continue;
            }
            let probe = self.fresh_dir("w5p-probe")?;
            let multi_process = Facade::open(&backend, &probe, "w5p")?
                .cache
                .backend()
                .capabilities()
                .multi_process;
            if !multi_process {
                let reason = "single process by design".to_owned();
                self.push("w5p", &backend, RowKind::Cacheness, &params, Err(reason));
                continue;
            }
            let mut samples = Vec::new();
            for rep in 1..=self.reps() {
                self.step(format!(
                    "w5 {backend} {processes} processes rep {rep}/{}",
                    self.reps()
                ));
                let dir = self.fresh_dir(&format!("w5p-{backend}"))?;
                samples.push(self.w5_processes_rep(&backend, &dir, processes, per_process)?);
            }
            self.push("w5p", &backend, RowKind::Cacheness, &params, Ok(samples));
        }
        if self.plan.peers {
            let outcome = match &self.plan.python {
                None => Err("no python3 with diskcache".into()),
                Some(python) => {
                    self.step(format!("w5 diskcache {processes} processes"));
                    let dir = self.fresh_dir("w5p-diskcache")?;
                    let request = serde_json::json!({
                        "workload": "w5-processes", "processes": processes,
                        "keys_each": per_process, "reps": self.reps(), "dir": &dir,
                    });
                    Ok(python_samples(
                        python,
                        &dir,
                        request,
                        "w5p",
                        processes * per_process,
                    )?)
                }
            };
            self.push("w5p", DISKCACHE, RowKind::Peer, &params, outcome);
        }
        Ok(())
    }

    pub(super) fn w5_processes_rep(
        &self,
        backend: &str,
        dir: &Path,
        processes: u64,
        per_process: u64,
    ) -> Result<Sample> {
        let mut children = Vec::new();
        for writer in 0..processes {
            let args = [
                "child".to_owned(),
                "w5-writer".to_owned(),
                backend.to_owned(),
                dir.display().to_string(),
                (writer * per_process).to_string(),
                per_process.to_string(),
            ];
            let child = Command::new(&self.plan.exe)
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|source| BenchError::io(&self.plan.exe, source))?;
            children.push(child);
        }
        let mut first_start = f64::INFINITY;
        let mut last_end: f64 = 0.0;
        for child in children {
            let report = child_json(child.wait_with_output(), "w5-writer")?;
            first_start = first_start.min(json_f64(&report, "start_s"));
            last_end = last_end.max(json_f64(&report, "end_s"));
        }
        let verify = Command::new(&self.plan.exe)
            .args([
                "child",
                "w5-verify",
                backend,
                &dir.display().to_string(),
                &(processes * per_process).to_string(),
            ])
            .output();
        let report = child_json(verify, "w5-verify")?;
        let total = (processes * per_process) as f64;
        Ok(BTreeMap::from([
            ("put_ops_s", total / (last_end - first_start).max(1e-9)),
            ("lost_count", json_f64(&report, "lost")),
            ("wrong_count", json_f64(&report, "wrong")),
        ]))
    }
}

/// One W5 repetition: `threads` threads on one cache, 90 % GET / 10 % PUT.
/// The cache holds `keys` entries first: a copy of `template` read through
/// once (untimed, so caches are as warm as after the writes), or written now.
pub(super) fn w5_threads_rep(
    backend: &str,
    dir: &Path,
    template: Option<&Path>,
    (threads, keys, ops): (u64, u64, u64),
) -> Result<Sample> {
    if let Some(template) = template {
        clone_cache(template, dir)?;
    }
    let mut store = Facade::open(backend, dir, "w5")?;
    for idx in 0..keys {
        if template.is_some() {
            if store.get_record(idx)? != Some(Record::new(idx)) {
                return Err(wrong("w5", backend, idx));
            }
        } else {
            store.put_record(idx, &Record::new(idx))?;
        }
    }
    let cache = Arc::new(store.cache);
    let barrier = Arc::new(Barrier::new(threads as usize + 1));
    let per_thread = ops / threads;
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let cache = Arc::clone(&cache);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || -> std::result::Result<(), String> {
                let mut rng = fastrand::Rng::with_seed(thread + 1);
                let plan: Vec<(bool, u64)> = (0..per_thread)
                    .map(|_| (rng.u8(0..10) == 0, rng.u64(0..keys)))
                    .collect();
                barrier.wait();
                for (is_put, idx) in plan {
                    let key = cacheness::key!(experiment = "w5", idx = idx);
                    if is_put {
                        cache
                            .put(&key, &Record::new(idx))
                            .map_err(|error| error.to_string())?;
                    } else {
                        match cache.get::<Record>(&key) {
                            Ok(Some(record)) if record.id == idx => {}
                            Ok(_) => return Err(format!("wrong value for item {idx}")),
                            Err(error) => return Err(error.to_string()),
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for worker in workers {
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(BenchError::cache("w5", backend, reason)),
            Err(_) => return Err(BenchError::cache("w5", backend, "a worker thread panicked")),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(BTreeMap::from([(
        "ops_s",
        (per_thread * threads) as f64 / elapsed.max(1e-12),
    )]))
}
