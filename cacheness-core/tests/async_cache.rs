//! `AsyncCache`: the sync API's semantics as futures, the disk work off the
//! runtime's worker threads, one computation per key across tasks and threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use cacheness_core::{
    AsyncCache, Cache, CacheKey, Entry, Error, ListOptions, MetadataBackend, Params, PutOptions,
    key,
};
use cacheness_memory::MemoryBackend;

/// A cache with a dir, so its operations run on blocking threads.
fn on_disk() -> (tempfile::TempDir, AsyncCache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .dir(dir.path())
        .open(MemoryBackend::new())
        .unwrap();
    (dir, AsyncCache::new(cache))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

/// Yields until `done` holds: for states other tasks reach without a signal
/// of their own, never for a span of time.
async fn until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::task::yield_now().await;
    }
}

#[test]
fn every_operation_of_the_sync_api_works_as_a_future() {
    for (dir, cache) in [
        {
            let (dir, cache) = on_disk();
            (Some(dir), cache)
        },
        (
            None,
            AsyncCache::new(Cache::builder().open(MemoryBackend::new()).unwrap()),
        ),
    ] {
        runtime().block_on(async {
            let key = key!(model = "xgboost", fold = 3);
            assert_eq!(cache.get::<Vec<f64>>(&key).await.unwrap(), None);
            cache.put(&key, &vec![0.5_f64, 0.25]).await.unwrap();
            assert_eq!(
                cache.get::<Vec<f64>>(&key).await.unwrap(),
                Some(vec![0.5, 0.25])
            );
            assert!(cache.contains(&key).await.unwrap());
            let (value, entry) = cache
                .get_with_entry::<Vec<f64>>(&key)
                .await
                .unwrap()
                .unwrap();
            assert_eq!((value, entry.params), (vec![0.5, 0.25], Some(key.clone())));

            // A large value goes to a blob file where there is a dir.
            let large = vec![7_u8; 100_000];
            let bytes_key = key!(blob = true);
            cache
                .put_bytes_with(&bytes_key, large.clone(), &PutOptions::new().prefix("raw"))
                .await
                .unwrap();
            assert_eq!(cache.get_bytes(&bytes_key).await.unwrap(), Some(large));
            assert_eq!(
                cache.entry(&bytes_key).await.unwrap().unwrap().prefix,
                "raw"
            );

            let listed = cache.list(&ListOptions::new()).await.unwrap();
            assert_eq!(listed.len(), 2);
            cache.flush().await.unwrap();
            let stats = cache.stats().await.unwrap();
            assert_eq!((stats.entries, stats.hits), (2, 3));

            assert_eq!(cache.remove_prefix("raw").await.unwrap(), 1);
            assert!(cache.remove(&key).await.unwrap());
            assert!(!cache.remove(&key).await.unwrap());
            cache.put(&key, "again").await.unwrap();
            assert_eq!(cache.cleanup_expired().await.unwrap(), 0);
            assert_eq!(cache.clear().await.unwrap(), 1);
            assert_eq!(cache.sync().stats().unwrap().entries, 0);
        });
        drop(dir);
    }
}

#[test]
fn the_futures_can_be_spawned() {
    let (_dir, cache) = on_disk();
    runtime().block_on(async {
        let tasks: Vec<_> = (0..32_u32)
            .map(|n| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    cache.put(&key!(n = n), &n).await.unwrap();
                    let squared = cache
                        .get_or_insert_with(&key!(square = n), move || async move { n * n })
                        .await
                        .unwrap();
                    (cache.get::<u32>(&key!(n = n)).await.unwrap(), squared)
                })
            })
            .collect();
        for (n, task) in tasks.into_iter().enumerate() {
            let n = n as u32;
            assert_eq!(task.await.unwrap(), (Some(n), n * n));
        }
    });
}

#[test]
fn operations_need_no_tokio_runtime() {
    let (_dir, cache) = on_disk();
    let key = key!(outside = "tokio");
    // A minimal executor of one future: the I/O threads are the cache's own.
    let stored = futures_lite_block_on(cache.put(&key, &1_u8));
    stored.unwrap();
    assert_eq!(
        futures_lite_block_on(cache.get::<u8>(&key)).unwrap(),
        Some(1)
    );
}

/// Polls a future to completion on this thread, with a waker that unparks it.
fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

#[test]
fn tasks_racing_for_a_missing_key_compute_it_once_and_all_get_it() {
    const TASKS: u64 = 16;
    let (_dir, cache) = on_disk();
    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    runtime().block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (cache, runs, release) = (cache.clone(), runs.clone(), release.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_insert_with(&key!(model = "slow"), move || async move {
                            runs.fetch_add(1, Ordering::SeqCst);
                            release.notified().await;
                            vec![1.5_f64, 2.5]
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        // Every task has looked and missed before the computation may end.
        until(|| cache.sync().stats().unwrap().misses >= TASKS).await;
        until(|| runs.load(Ordering::SeqCst) == 1).await;
        release.notify_one();
        for task in tasks {
            assert_eq!(task.await.unwrap(), vec![1.5, 2.5]);
        }
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn a_cancelled_computation_is_taken_over_by_a_waiting_task() {
    let (_dir, cache) = on_disk();
    let key = key!(model = "cancelled");
    runtime().block_on(async {
        let started = Arc::new(tokio::sync::Notify::new());
        let leader = {
            let (cache, started) = (cache.clone(), started.clone());
            let key = key.clone();
            tokio::spawn(async move {
                cache
                    .get_or_insert_with(&key, move || async move {
                        started.notify_one();
                        std::future::pending::<u32>().await
                    })
                    .await
            })
        };
        started.notified().await;
        let waiter = {
            let (cache, key) = (cache.clone(), key.clone());
            tokio::spawn(async move { cache.get_or_insert_with(&key, || async { 2_u32 }).await })
        };
        until(|| cache.sync().stats().unwrap().misses >= 2).await;
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        assert_eq!(waiter.await.unwrap().unwrap(), 2);
        assert_eq!(cache.get::<u32>(&key).await.unwrap(), Some(2));
    });
}

#[test]
fn a_failed_computation_stores_nothing_and_returns_its_error() {
    let (_dir, cache) = on_disk();
    runtime().block_on(async {
        let key = key!(model = "fails");
        let failed = cache
            .get_or_try_insert_with(&key, || async {
                Err::<u32, Error>(Error::InvalidInput {
                    what: "model",
                    value: "fails".into(),
                    reason: "on purpose".into(),
                })
            })
            .await;
        assert!(matches!(failed, Err(Error::InvalidInput { .. })));
        assert_eq!(cache.get::<u32>(&key).await.unwrap(), None);
    });
}

#[test]
fn a_computation_asking_for_its_own_key_computes_it_instead_of_waiting() {
    let (_dir, cache) = on_disk();
    runtime().block_on(async {
        let key = key!(model = "recursive");
        let inner = cache.clone();
        let inner_key = key.clone();
        let value = cache
            .get_or_insert_with(&key, move || async move {
                // Through the async API, then through the sync API.
                let nested = inner
                    .get_or_insert_with(&inner_key, || async { 1_u32 })
                    .await
                    .unwrap();
                // The nested computation stored 1: the sync call reads it.
                let blocking = inner
                    .sync()
                    .get_or_insert_with(&inner_key, || 10_u32)
                    .unwrap();
                nested + blocking
            })
            .await
            .unwrap();
        assert_eq!(value, 2);
        assert_eq!(cache.get::<u32>(&key).await.unwrap(), Some(2));
    });
}

#[test]
fn sync_and_async_callers_of_one_cache_share_a_computation() {
    let (_dir, cache) = on_disk();
    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(AtomicBool::new(false));
    let key = key!(model = "shared");
    // A thread computes; a task waits for it without blocking a worker.
    let thread = {
        let (cache, runs, release, key) =
            (cache.to_sync(), runs.clone(), release.clone(), key.clone());
        std::thread::spawn(move || {
            cache
                .get_or_insert_with(&key, || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    while !release.load(Ordering::SeqCst) {
                        std::thread::yield_now();
                    }
                    "from the thread".to_owned()
                })
                .unwrap()
        })
    };
    runtime().block_on(async {
        until(|| runs.load(Ordering::SeqCst) == 1).await;
        let waiter = {
            let (cache, runs, key) = (cache.clone(), runs.clone(), key.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with(&key, move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        "from the task".to_owned()
                    })
                    .await
                    .unwrap()
            })
        };
        until(|| cache.sync().stats().unwrap().misses >= 2).await;
        release.store(true, Ordering::SeqCst);
        assert_eq!(waiter.await.unwrap(), "from the thread");
    });
    assert_eq!(thread.join().unwrap(), "from the thread");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// A backend whose reads wait at a gate, as reads of a disk under load do.
#[derive(Debug)]
struct Gated {
    inner: MemoryBackend,
    open: Mutex<bool>,
    opened: Condvar,
    waiting: AtomicUsize,
}

impl Gated {
    fn wait(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl MetadataBackend for Gated {
    fn name(&self) -> &str {
        "gated"
    }
    fn capabilities(&self) -> cacheness_core::Capabilities {
        self.inner.capabilities().persistent(true)
    }
    fn get(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        self.wait();
        self.inner.get(key)
    }
    fn get_shared(
        &self,
        key: &CacheKey,
    ) -> cacheness_core::Result<Option<Arc<cacheness_core::SharedEntry>>> {
        self.wait();
        self.inner.get_shared(key)
    }
    fn put(&self, entry: Entry) -> cacheness_core::Result<Option<Entry>> {
        self.inner.put(entry)
    }
    fn remove(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        self.inner.remove(key)
    }
    fn scan(
        &self,
        filter: &cacheness_core::ScanFilter,
        visit: &mut dyn FnMut(Entry) -> std::ops::ControlFlow<()>,
    ) -> cacheness_core::Result<()> {
        self.inner.scan(filter, visit)
    }
    fn touch(&self, batch: &cacheness_core::AccessBatch) -> cacheness_core::Result<()> {
        self.inner.touch(batch)
    }
    fn stats(&self) -> cacheness_core::Result<cacheness_core::BackendStats> {
        self.inner.stats()
    }
}

#[test]
fn ten_thousand_waiting_gets_do_not_stall_the_runtime() {
    // One worker thread: a get that blocked it would stop every other task,
    // and the task that opens the gate could never run.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let backend = Arc::new(Gated {
        inner: MemoryBackend::new(),
        open: Mutex::new(false),
        opened: Condvar::new(),
        waiting: AtomicUsize::new(0),
    });
    let cache = AsyncCache::new(
        Cache::builder()
            .open_shared(Arc::clone(&backend) as Arc<dyn MetadataBackend>)
            .unwrap(),
    );
    runtime.block_on(async {
        cache.sync().put(&key!(n = 1), &1_u32).unwrap();
        let gets: Vec<_> = (0..10_000)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get::<u32>(&key!(n = 1)).await })
            })
            .collect();
        // Other tasks still run while the gets wait on blocking threads.
        let other = tokio::spawn(async { "ran" });
        assert_eq!(other.await.unwrap(), "ran");
        until(|| backend.waiting.load(Ordering::SeqCst) > 0).await;
        backend.open();
        for get in gets {
            assert_eq!(get.await.unwrap().unwrap(), Some(1));
        }
    });
}

#[test]
fn params_given_to_put_are_stored_with_the_entry() {
    let (_dir, cache) = on_disk();
    runtime().block_on(async {
        let params: Params = key!(model = "xgboost");
        cache.put(&params, &1_u8).await.unwrap();
        let bare: CacheKey = params.key();
        cache.put(&bare, &2_u8).await.unwrap();
        let entry = cache.entry(&params).await.unwrap().unwrap();
        // The second put named the entry by its bare key: no params to store.
        assert_eq!(entry.params, None);
        cache.put(&params, &3_u8).await.unwrap();
        let entry = cache.entry(&params).await.unwrap().unwrap();
        assert_eq!(entry.params, Some(params));
    });
}

#[test]
fn across_processes_a_waiting_task_takes_the_value_the_lock_holder_stored() {
    // Two caches on one dir stand for two processes: each has its own
    // in-process slots, so only the lock file in `locks/` joins them.
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn MetadataBackend> = Arc::new(MemoryBackend::new());
    let open = || {
        AsyncCache::new(
            Cache::builder()
                .dir(dir.path())
                .single_flight(cacheness_core::SingleFlight::AcrossProcesses)
                .open_shared(Arc::clone(&backend))
                .unwrap(),
        )
    };
    let (first, second) = (open(), open());
    let runs = Arc::new(AtomicUsize::new(0));
    let key = key!(model = "across");
    runtime().block_on(async {
        let release = Arc::new(tokio::sync::Notify::new());
        let leader = {
            let (cache, runs, release, key) =
                (first.clone(), runs.clone(), release.clone(), key.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with(&key, move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                        "from the first".to_owned()
                    })
                    .await
                    .unwrap()
            })
        };
        until(|| runs.load(Ordering::SeqCst) == 1).await;
        let lock = dir.path().join("locks").join(format!("{}.lock", key.key()));
        assert!(lock.exists(), "the leader holds the key's lock file");
        let waiter = {
            let (cache, runs, key) = (second.clone(), runs.clone(), key.clone());
            tokio::spawn(async move {
                cache
                    .get_or_insert_with(&key, move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        "from the second".to_owned()
                    })
                    .await
                    .unwrap()
            })
        };
        // The waiter has missed and is waiting for the lock (on a blocking
        // thread: this runtime keeps running tasks meanwhile).
        until(|| second.sync().stats().unwrap().misses >= 1).await;
        assert_eq!(tokio::spawn(async { 7 }).await.unwrap(), 7);
        release.notify_one();
        assert_eq!(leader.await.unwrap(), "from the first");
        assert_eq!(waiter.await.unwrap(), "from the first");
        assert!(!lock.exists(), "the lock file is removed after use");
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
