//! W8: a memoized call against a hand-written `get`, and the async API
//! against the sync API, on the same cache in the same repetition.

use cacheness::{AsyncCache, Cache, key};

use super::*;

/// The backends W8 measures: the production one, and the in-process one
/// (opened without a dir, as an in-process cache is).
pub const W8_BACKENDS: &[&str] = &["sqlite", "memory"];

/// W8's figures: (name, the baseline's metric, the measured metric). The
/// baselines are the sync API for the async figures and a hand-written
/// `get` (with a put on a miss) for the memoized call.
pub const W8_FIGURES: [(&str, &str, &str); 5] = [
    ("memoized", "get_by_hand", "get_memoized"),
    ("put_1", "put_sync_1", "put_async_1"),
    ("get_1", "get_sync_1", "get_async_1"),
    ("get_many", "get_sync_many", "get_async_many"),
    ("put_many", "put_sync_many", "put_async_many"),
];

/// The hand-written counterpart of [`memoized`]: a `get`, and a put on a miss.
fn by_hand(cache: &Cache, idx: u64) -> cacheness::Result<Record> {
    let key = key!(experiment = "w8", idx = idx);
    if let Some(record) = cache.get(&key)? {
        return Ok(record);
    }
    let record = Record::new(idx);
    cache.put(&key, &record)?;
    Ok(record)
}

/// A memoized function returning what [`by_hand`] returns.
#[cacheness::memoize(cache = cache, skip(cache))]
fn memoized(cache: &Cache, idx: u64) -> Record {
    Record::new(idx)
}

/// How many Tokio worker threads W8's runtime has (the machine's cores).
fn runtime_workers() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

impl Runner<'_> {
    pub(super) fn w8(&mut self) -> Result<()> {
        let (entries, tasks, threads) = self.plan.mode.w8_sizes();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(runtime_workers())
            .build()
            .map_err(|source| BenchError::io("the tokio runtime", source))?;
        let params = [
            ("entries", Param::Int(entries)),
            ("tasks", Param::Int(tasks)),
            ("threads", Param::Int(threads)),
            ("workers", Param::Int(runtime_workers() as u64)),
        ];
        for backend in W8_BACKENDS {
            if !self.plan.backends.iter().any(|name| name == backend) {
                continue;
            }
            if let Some(reason) = not_compiled(backend) {
                self.push("w8", backend, RowKind::Cacheness, &params, Err(reason));
                continue;
            }
            let mut samples = Vec::new();
            for rep in 1..=self.reps() {
                self.step(format!("w8 {backend} rep {rep}/{}", self.reps()));
                let sample = W8 {
                    backend,
                    entries,
                    tasks,
                    threads,
                    runtime: &runtime,
                }
                .rep(self, rep)?;
                samples.push(sample);
            }
            self.push("w8", backend, RowKind::Cacheness, &params, Ok(samples));
        }
        Ok(())
    }
}

/// One W8 repetition's settings.
struct W8<'a> {
    backend: &'a str,
    entries: u64,
    tasks: u64,
    threads: u64,
    runtime: &'a tokio::runtime::Runtime,
}

impl W8<'_> {
    /// A fresh cache of the backend (in a fresh dir, for a disk backend).
    fn open(&self, runner: &mut Runner<'_>, label: &str) -> Result<Arc<Cache>> {
        let mut config = CacheConfig::new().backend(self.backend);
        if self.backend != "memory" {
            config = config.dir(runner.fresh_dir(&format!("w8-{}-{label}", self.backend))?);
        }
        config
            .open()
            .map(Arc::new)
            .map_err(|source| BenchError::cache("w8", self.backend, source))
    }

    fn fail(&self, source: cacheness::Error) -> BenchError {
        BenchError::cache("w8", self.backend, source)
    }

    fn rate(&self, started: Instant) -> f64 {
        self.entries as f64 / started.elapsed().as_secs_f64().max(1e-12)
    }

    /// Each sync figure is measured next to its async counterpart, first on
    /// odd repetitions and second on even ones.
    fn rep(&self, runner: &mut Runner<'_>, rep: u32) -> Result<Sample> {
        let mut sample = Sample::new();
        let records: Arc<Vec<Record>> = Arc::new((0..self.entries).map(Record::new).collect());
        let sync_first = rep % 2 == 1;
        // Times `baseline` and `measured` one after the other, in an order
        // that alternates between repetitions.
        let mut pair = |name: &'static str,
                        sync: &mut dyn FnMut() -> Result<()>,
                        asynchronous: &mut dyn FnMut() -> Result<()>|
         -> Result<()> {
            let time = |run: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
                let started = Instant::now();
                run()?;
                Ok(self.rate(started))
            };
            let (sync_rate, async_rate) = if sync_first {
                let sync_rate = time(sync)?;
                (sync_rate, time(asynchronous)?)
            } else {
                let async_rate = time(asynchronous)?;
                (time(sync)?, async_rate)
            };
            let (_, sync_metric, async_metric) = W8_FIGURES
                .into_iter()
                .find(|(figure, _, _)| *figure == name)
                .expect("every W8 figure is listed");
            sample.insert(sync_metric, sync_rate);
            sample.insert(async_metric, async_rate);
            Ok(())
        };

        // PUT from one caller, each API into a fresh cache of its own.
        let cache = self.open(runner, "put-sync")?;
        let other = AsyncCache::from(self.open(runner, "put-async")?);
        pair(
            "put_1",
            &mut || {
                for (idx, record) in records.iter().enumerate() {
                    cache
                        .put(&key!(experiment = "w8", idx = idx as u64), record)
                        .map_err(|source| self.fail(source))?;
                }
                Ok(())
            },
            &mut || {
                self.runtime
                    .block_on(async {
                        for (idx, record) in records.iter().enumerate() {
                            other
                                .put(&key!(experiment = "w8", idx = idx as u64), record)
                                .await?;
                        }
                        Ok::<(), cacheness::Error>(())
                    })
                    .map_err(|source| self.fail(source))
            },
        )?;

        // A memoized call on a hit against a hand-written get of the same
        // record, the same cache (both filled above; memoized entries now).
        for idx in 0..self.entries {
            check(Some(memoized(&cache, idx)), idx, self.backend)?;
        }
        pair(
            "memoized",
            &mut || {
                for idx in 0..self.entries {
                    let record = by_hand(&cache, idx).map_err(|source| self.fail(source))?;
                    check(Some(record), idx, self.backend)?;
                }
                Ok(())
            },
            &mut || {
                for idx in 0..self.entries {
                    check(Some(memoized(&cache, idx)), idx, self.backend)?;
                }
                Ok(())
            },
        )?;

        // GET from one caller, the same cache.
        let shared = AsyncCache::from(Arc::clone(&cache));
        pair(
            "get_1",
            &mut || {
                for idx in 0..self.entries {
                    let record: Option<Record> = cache
                        .get(&key!(experiment = "w8", idx = idx))
                        .map_err(|source| self.fail(source))?;
                    check(record, idx, self.backend)?;
                }
                Ok(())
            },
            &mut || {
                self.runtime.block_on(async {
                    for idx in 0..self.entries {
                        let record: Option<Record> = shared
                            .get(&key!(experiment = "w8", idx = idx))
                            .await
                            .map_err(|source| self.fail(source))?;
                        check(record, idx, self.backend)?;
                    }
                    Ok(())
                })
            },
        )?;

        // GET from many callers: threads of the sync API, tasks of the async one.
        pair(
            "get_many",
            &mut || {
                self.sync_callers(|idx| {
                    let record: Option<Record> = cache
                        .get(&key!(experiment = "w8", idx = idx))
                        .map_err(|source| self.fail(source))?;
                    check(record, idx, self.backend)
                })
            },
            &mut || {
                self.async_callers(&shared, |cache, idx| async move {
                    let record: Option<Record> =
                        cache.get(&key!(experiment = "w8", idx = idx)).await?;
                    Ok(record.map(|record| record.id == idx))
                })
            },
        )?;

        // PUT from many callers, each API into a fresh cache of its own.
        let many = self.open(runner, "put-sync-many")?;
        let many_async = AsyncCache::from(self.open(runner, "put-async-many")?);
        pair(
            "put_many",
            &mut || {
                self.sync_callers(|idx| {
                    many.put(&key!(experiment = "w8", idx = idx), &records[idx as usize])
                        .map_err(|source| self.fail(source))
                })
            },
            &mut || {
                let records = Arc::clone(&records);
                self.async_callers(&many_async, move |cache, idx| {
                    let records = Arc::clone(&records);
                    async move {
                        cache
                            .put(&key!(experiment = "w8", idx = idx), &records[idx as usize])
                            .await?;
                        Ok(Some(true))
                    }
                })
            },
        )?;
        Ok(sample)
    }

    /// Runs `call` for every item, split between `threads` threads.
    fn sync_callers(&self, call: impl Fn(u64) -> Result<()> + Sync) -> Result<()> {
        let threads = self.threads.max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|first| {
                    let call = &call;
                    scope.spawn(move || {
                        (first..self.entries)
                            .step_by(threads as usize)
                            .try_for_each(call)
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|worker| worker.join().expect("a W8 thread does not panic"))
        })
    }

    /// Runs `call` for every item, split between `tasks` tasks; `call` says
    /// whether the value read was the right one (`None`: missing).
    fn async_callers<F, Fut>(&self, cache: &AsyncCache, call: F) -> Result<()>
    where
        F: Fn(AsyncCache, u64) -> Fut + Send + Sync + Clone + 'static,
        Fut: std::future::Future<Output = cacheness::Result<Option<bool>>> + Send,
    {
        let (entries, tasks) = (self.entries, self.tasks.max(1));
        let outcome = self.runtime.block_on(async {
            let handles: Vec<_> = (0..tasks)
                .map(|first| {
                    let (cache, call) = (cache.clone(), call.clone());
                    tokio::spawn(async move {
                        for idx in (first..entries).step_by(tasks as usize) {
                            if call(cache.clone(), idx).await? != Some(true) {
                                return Ok(Some(idx));
                            }
                        }
                        Ok::<_, cacheness::Error>(None)
                    })
                })
                .collect();
            let mut wrong_item = None;
            for handle in handles {
                if let Some(idx) = handle.await.expect("a W8 task does not panic")? {
                    wrong_item = Some(idx);
                }
            }
            Ok::<_, cacheness::Error>(wrong_item)
        });
        match outcome.map_err(|source| self.fail(source))? {
            Some(idx) => Err(wrong("w8", self.backend, idx)),
            None => Ok(()),
        }
    }
}

fn check(record: Option<Record>, idx: u64, backend: &str) -> Result<()> {
    match record {
        Some(record) if record.id == idx => Ok(()),
        _ => Err(wrong("w8", backend, idx)),
    }
}
