//! [`AsyncCache`]: the cache's API as futures, for programs on Tokio.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cache;
use super::blocking;
use super::compute::{KeyLock, Leader, Leading, Turn};
use super::options::{GetOptions, ListOptions, PutOptions, Stats};
use super::write::Encoded;
use crate::codec::{Codec, NamedCodec};
use crate::entry::{Entry, ListedEntry};
use crate::error::{Error, Result};
use crate::key::{CacheKey, Params, ToKey};

/// A [`Cache`] for async code: the same operations, with the same meaning, as
/// futures that never block the runtime's worker threads.
///
/// Each operation that may wait for the disk (a read, a write) runs on the
/// cache's I/O threads, a small pool shared by the process, so a server's
/// other tasks keep running while it waits; values are encoded on the calling
/// task and decoded on the I/O thread. The pool is built for short calls: a
/// call whose job is first in line watches for its result for up to 50 µs
/// before its future yields, so a stream of calls from one task costs no
/// system call. Waiting for another process's lock
/// ([`SingleFlight::AcrossProcesses`](crate::SingleFlight)) runs on Tokio's
/// blocking threads. A cache that holds everything in memory (a backend that
/// does not persist, without a cache dir) has no disk to wait for, and runs
/// its operations on the calling task.
///
/// `AsyncCache` is a cheap handle (an [`Arc`] around the cache): clone it into
/// each task. [`sync`](AsyncCache::sync) gives the [`Cache`] behind it for
/// the sync API (maintenance such as [`Cache::gc`] included; run those with
/// `spawn_blocking`).
///
/// The futures own what they need (`'static`), so they can be spawned: a key
/// and a value are read when the method is called, not when it is awaited.
/// Dropping a future does not undo what its blocking part already started:
/// a put that was handed to a blocking thread completes.
///
/// ```
/// use cacheness_core::{AsyncCache, Cache, key};
/// use cacheness_memory::MemoryBackend;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let cache = AsyncCache::new(Cache::builder().open(MemoryBackend::new())?);
/// let key = key!(model = "xgboost", fold = 3);
/// cache.put(&key, &vec![0.91, 0.87]).await?;
/// assert_eq!(cache.get::<Vec<f64>>(&key).await?, Some(vec![0.91, 0.87]));
///
/// let score = cache.get_or_insert_with(&key!(model = "lgbm"), || async { 0.93 }).await?;
/// assert_eq!(score, 0.93);
/// # Ok::<(), cacheness_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct AsyncCache<C: Codec = NamedCodec> {
    cache: Arc<Cache<C>>,
    /// Operations run on the calling task: the cache has no disk to wait for.
    inline: bool,
}

impl<C: Codec> Clone for AsyncCache<C> {
    fn clone(&self) -> Self {
        AsyncCache {
            cache: Arc::clone(&self.cache),
            inline: self.inline,
        }
    }
}

impl<C: Codec> From<Cache<C>> for AsyncCache<C> {
    fn from(cache: Cache<C>) -> Self {
        AsyncCache::new(cache)
    }
}

impl<C: Codec> From<Arc<Cache<C>>> for AsyncCache<C> {
    fn from(cache: Arc<Cache<C>>) -> Self {
        let inline = !cache.backend().capabilities().persistent && cache.blob_store().is_none();
        AsyncCache { cache, inline }
    }
}

impl<C: Codec> AsyncCache<C> {
    /// The async API over `cache`.
    pub fn new(cache: Cache<C>) -> Self {
        AsyncCache::from(Arc::new(cache))
    }

    /// The cache behind this handle, for the sync API. Its calls block: in
    /// async code, run them with `spawn_blocking`.
    pub fn sync(&self) -> &Cache<C> {
        &self.cache
    }

    /// The cache behind this handle, shared.
    pub fn to_sync(&self) -> Arc<Cache<C>> {
        Arc::clone(&self.cache)
    }

    /// Runs `work` on the cache where it may block: a thread of the cache's
    /// I/O pool, or the calling task when there is no disk.
    async fn run<R, W>(&self, work: W) -> Result<R>
    where
        R: Send + 'static,
        W: FnOnce(&Cache<C>) -> Result<R> + Send + 'static,
    {
        if self.inline {
            return work(&self.cache);
        }
        let cache = Arc::clone(&self.cache);
        blocking::pool().run(move || work(&cache)).await
    }

    /// Waits for the key's lock file of
    /// [`SingleFlight::AcrossProcesses`](crate::SingleFlight) on one of
    /// Tokio's blocking threads: another process may hold it for as long as
    /// its computation takes, which no pool thread may wait for.
    async fn lock_across_processes(&self, key: CacheKey) -> Result<Option<KeyLock>> {
        let cache = Arc::clone(&self.cache);
        let wait = move || cache.lock_across_processes(key);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Ok(wait());
        };
        match runtime.spawn_blocking(wait).await {
            Ok(lock) => Ok(lock),
            Err(failed) => match failed.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => Err(Error::RuntimeShutdown { operation: "lock" }),
            },
        }
    }

    /// The value under `key`, as [`Cache::get`].
    pub async fn get<T>(&self, key: &impl ToKey) -> Result<Option<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.get_with(key, &GetOptions::default()).await
    }

    /// [`get`](AsyncCache::get) with options, as [`Cache::get_with`].
    pub async fn get_with<T>(&self, key: &impl ToKey, options: &GetOptions) -> Result<Option<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let key = key.to_key();
        let options = *options;
        self.run(move |cache| cache.get_with(&key, &options)).await
    }

    /// The value under `key` with its entry, as [`Cache::get_with_entry`].
    pub async fn get_with_entry<T>(&self, key: &impl ToKey) -> Result<Option<(T, Entry)>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let key = key.to_key();
        self.run(move |cache| cache.get_with_entry(&key)).await
    }

    /// The stored bytes under `key`, as [`Cache::get_bytes`].
    pub async fn get_bytes(&self, key: &impl ToKey) -> Result<Option<Vec<u8>>> {
        let key = key.to_key();
        self.run(move |cache| cache.get_bytes(&key)).await
    }

    /// Whether an unexpired entry exists under `key`, as [`Cache::contains`].
    pub async fn contains(&self, key: &impl ToKey) -> Result<bool> {
        let key = key.to_key();
        self.run(move |cache| cache.contains(&key)).await
    }

    /// The entry under `key`, as [`Cache::entry`].
    pub async fn entry(&self, key: &impl ToKey) -> Result<Option<Entry>> {
        let key = key.to_key();
        self.run(move |cache| cache.entry(&key)).await
    }

    /// Stores `value` under `key`, as [`Cache::put`]. The value is encoded
    /// when this is called; the write runs when the future is awaited.
    pub async fn put<T: Serialize + ?Sized>(&self, key: &impl ToKey, value: &T) -> Result<()> {
        self.put_with(key, value, &PutOptions::default()).await
    }

    /// Stores `value` under `key` with `options`, as [`Cache::put_with`].
    pub async fn put_with<T: Serialize + ?Sized>(
        &self,
        key: &impl ToKey,
        value: &T,
        options: &PutOptions,
    ) -> Result<()> {
        let encoded = self.cache.encode_value(key.to_key(), value);
        let key = OwnedKey::of(key);
        let options = options.clone();
        self.run(move |cache| cache.store_encoded(&key, &encoded?, &options))
            .await
    }

    /// Stores raw bytes under `key`, as [`Cache::put_bytes`].
    pub async fn put_bytes(&self, key: &impl ToKey, bytes: impl Into<Vec<u8>>) -> Result<()> {
        self.put_bytes_with(key, bytes, &PutOptions::default())
            .await
    }

    /// Stores raw bytes under `key` with `options`, as [`Cache::put_bytes_with`].
    pub async fn put_bytes_with(
        &self,
        key: &impl ToKey,
        bytes: impl Into<Vec<u8>>,
        options: &PutOptions,
    ) -> Result<()> {
        let bytes = bytes.into();
        let key = OwnedKey::of(key);
        let options = options.clone();
        self.run(move |cache| cache.put_bytes_with(&key, &bytes, &options))
            .await
    }

    /// Removes the entry under `key`, as [`Cache::remove`].
    pub async fn remove(&self, key: &impl ToKey) -> Result<bool> {
        let key = key.to_key();
        self.run(move |cache| cache.remove(&key)).await
    }

    /// Removes every entry filed under `prefix`, as [`Cache::remove_prefix`].
    pub async fn remove_prefix(&self, prefix: &str) -> Result<u64> {
        let prefix = prefix.to_owned();
        self.run(move |cache| cache.remove_prefix(&prefix)).await
    }

    /// The entries `options` select, as [`Cache::list`].
    pub async fn list(&self, options: &ListOptions) -> Result<Vec<ListedEntry>> {
        let options = options.clone();
        self.run(move |cache| cache.list(&options)).await
    }

    /// Counts, sizes and counters, as [`Cache::stats`].
    pub async fn stats(&self) -> Result<Stats> {
        self.run(|cache| cache.stats()).await
    }

    /// Removes every entry, as [`Cache::clear`].
    pub async fn clear(&self) -> Result<u64> {
        self.run(|cache| cache.clear()).await
    }

    /// Removes every expired entry, as [`Cache::cleanup_expired`].
    pub async fn cleanup_expired(&self) -> Result<u64> {
        self.run(|cache| cache.cleanup_expired()).await
    }

    /// Writes buffered reads to the backend, as [`Cache::flush`].
    pub async fn flush(&self) -> Result<()> {
        self.run(|cache| cache.flush()).await
    }

    /// The value under `key`; if there is none, awaits `make`'s future, stores
    /// its value and returns it. The same rules as
    /// [`Cache::get_or_insert_with`]: one computation per key (callers of the
    /// sync API on the same cache included, and other processes with
    /// [`SingleFlight::AcrossProcesses`](crate::SingleFlight)); a stored value
    /// that does not decode as `T` is a miss; a value that cannot be stored is
    /// returned all the same.
    ///
    /// Waiting for another caller's computation does not block a thread. The
    /// computation runs on the task that leads it; if that task drops its
    /// future (a timeout, a cancelled request), the computation stops and one
    /// of the tasks that waited computes in its place.
    pub async fn get_or_insert_with<T, F, Fut>(&self, key: &impl ToKey, make: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.get_or_try_insert_with(key, move || async move { Ok::<T, Error>(make().await) })
            .await
    }

    /// [`get_or_insert_with`](AsyncCache::get_or_insert_with) for a
    /// computation that can fail: its error is returned and nothing is
    /// stored, as [`Cache::get_or_try_insert_with`].
    pub async fn get_or_try_insert_with<T, E, F, Fut>(
        &self,
        key: &impl ToKey,
        make: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: From<Error>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.get_or_try_insert_with_options(key, &PutOptions::default(), make)
            .await
    }

    /// [`get_or_try_insert_with`](AsyncCache::get_or_try_insert_with) storing
    /// the value with `options`, as [`Cache::get_or_try_insert_with_options`].
    pub async fn get_or_try_insert_with_options<T, E, F, Fut>(
        &self,
        key: &impl ToKey,
        options: &PutOptions,
        make: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: From<Error>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = OwnedKey::of(key);
        let options = options.clone();
        let cache_key = key.to_key();
        let mut make = Some(make);
        loop {
            if let Some(value) = self.get_readable::<T>(cache_key).await? {
                return Ok(value);
            }
            let token = TaskToken::new();
            match self.cache.in_flight.turn(cache_key, Leader::Task(token)) {
                Turn::Reentrant => {
                    let make = make.take().expect("a computation runs once");
                    let value = make().await?;
                    self.store_computed(key, &value, options, None).await;
                    return Ok(value);
                }
                Turn::Wait(slot) => {
                    if let Some(value) = slot
                        .finished()
                        .await
                        .and_then(|shared| self.cache.decode_shared(&shared))
                    {
                        return Ok(value);
                    }
                    // Stored (read it above), abandoned or undecodable: again.
                }
                Turn::Lead(slot) => {
                    let leading = Leading::new(&self.cache.in_flight, cache_key, slot);
                    let process_lock = self.lock_across_processes(cache_key).await?;
                    // Stored meanwhile by another caller or process?
                    if let Some(value) = self.get_readable::<T>(cache_key).await? {
                        return Ok(value);
                    }
                    let make = make.take().expect("a computation runs once");
                    let value = token.scope(make()).await?;
                    let shared = self
                        .store_computed(key, &value, options, process_lock)
                        .await;
                    leading.finish(shared);
                    return Ok(value);
                }
            }
        }
    }

    /// [`Cache::get_readable`] on a blocking thread.
    async fn get_readable<T>(&self, key: CacheKey) -> Result<Option<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.run(move |cache| cache.get_readable(key)).await
    }

    /// Encodes and stores a computed value (a failure logged, not returned),
    /// then lets go of the key's lock file, if it holds one; the encoding,
    /// for waiters.
    async fn store_computed<T: Serialize>(
        &self,
        key: OwnedKey,
        value: &T,
        options: PutOptions,
        process_lock: Option<KeyLock>,
    ) -> Option<Arc<Encoded>> {
        let cache_key = key.to_key();
        let encoded = self.cache.encode_computed(cache_key, value)?;
        let stored = Arc::clone(&encoded);
        let put = self.run(move |cache| {
            let stored = cache.store_encoded(&key, &stored, &options);
            drop(process_lock);
            cache.log_unstored(cache_key, stored);
            Ok(())
        });
        // A runtime shutting down: the value is returned all the same.
        if let Err(error) = put.await {
            self.cache.log_unstored(cache_key, Err(error));
        }
        Some(encoded)
    }
}

/// A key that a future owns: the parameters, when the caller gave them (they
/// are stored with the entry), else the bare key.
enum OwnedKey {
    Params(Params),
    Key(CacheKey),
}

impl OwnedKey {
    fn of(key: &impl ToKey) -> OwnedKey {
        match key.params() {
            Some(params) => OwnedKey::Params(params.clone()),
            None => OwnedKey::Key(key.to_key()),
        }
    }
}

impl ToKey for OwnedKey {
    fn to_key(&self) -> CacheKey {
        match self {
            OwnedKey::Params(params) => params.key(),
            OwnedKey::Key(key) => *key,
        }
    }

    fn params(&self) -> Option<&Params> {
        match self {
            OwnedKey::Params(params) => Some(params),
            OwnedKey::Key(_) => None,
        }
    }
}

/// Names one async computation, so that a computation that asks for its own
/// key again (directly, or through the sync API inside it) is known to be
/// the leader's own, not another caller's to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TaskToken(u64);

tokio::task_local! {
    /// The computations the current task is running, innermost last.
    static COMPUTING: Arc<[TaskToken]>;
}

impl TaskToken {
    fn new() -> TaskToken {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        TaskToken(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether the caller runs inside this computation.
    pub(super) fn is_running_here(self) -> bool {
        COMPUTING
            .try_with(|computing| computing.contains(&self))
            .unwrap_or(false)
    }

    /// Runs `computation` as this token's.
    async fn scope<F: Future>(self, computation: F) -> F::Output {
        let mut computing = COMPUTING
            .try_with(|computing| computing.to_vec())
            .unwrap_or_default();
        computing.push(self);
        COMPUTING.scope(computing.into(), computation).await
    }
}
