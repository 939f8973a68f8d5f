//! `get_or_insert_with`: a missing value computed once per key, however many
//! threads (and, with [`SingleFlight::AcrossProcesses`], processes) ask for it
//! at once.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cache;
use super::options::PutOptions;
use super::write::Encoded;
use crate::codec::Codec;
use crate::codec::raw::decode_raw;
use crate::error::{Error, Result};
use crate::files::{create_private_dir, open_regular};
use crate::key::{CacheKey, ToKey};

/// The directory, in the cache dir, of the per-key lock files of
/// [`SingleFlight::AcrossProcesses`].
pub const LOCKS_DIR: &str = "locks";

/// Who waits for whom when a value of
/// [`get_or_insert_with`](Cache::get_or_insert_with) is missing.
///
/// Within one process a missing key is always computed once: the threads that
/// ask for it while it is being computed wait and get that value. Across
/// processes that share a cache dir, each process computes it, unless the
/// cache is opened with [`AcrossProcesses`](SingleFlight::AcrossProcesses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SingleFlight {
    /// One computation per key in this process (the default).
    #[default]
    InProcess,
    /// One computation per key across every process that opens the cache dir
    /// with this setting: a computing process holds a lock file
    /// (`locks/<key>.lock` in the cache dir) that the others wait for, then
    /// they read the stored value. A cache without a dir, or opened read-only,
    /// computes in-process only.
    AcrossProcesses,
}

/// The computations in progress in this process, by key.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    slots: Mutex<HashMap<CacheKey, Arc<Slot>>>,
}

/// One computation in progress and what its waiters need.
#[derive(Debug)]
pub(super) struct Slot {
    leader: Leader,
    outcome: Mutex<Outcome>,
    /// Wakes the threads that wait.
    finished: Condvar,
    /// Wakes the tasks that wait ([`AsyncCache`](super::AsyncCache)).
    #[cfg(feature = "tokio")]
    woken: tokio::sync::Notify,
}

/// Who computes a slot's value: a thread of the sync API, or a computation of
/// the async API (which may move between threads as it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leader {
    Thread(ThreadId),
    #[cfg(feature = "tokio")]
    Task(super::async_cache::TaskToken),
}

impl Leader {
    pub(super) fn this_thread() -> Leader {
        Leader::Thread(std::thread::current().id())
    }

    /// Whether the caller runs inside this leader's computation, where
    /// waiting for it would be waiting for itself.
    fn is_caller(self) -> bool {
        match self {
            Leader::Thread(id) => id == std::thread::current().id(),
            #[cfg(feature = "tokio")]
            Leader::Task(token) => token.is_running_here(),
        }
    }
}

#[derive(Debug)]
pub(super) enum Outcome {
    Running,
    /// The value as it was stored (`None` when it could not be encoded: the
    /// waiters then compute in turn). Dropped with the last waiter.
    Computed(Option<Arc<Encoded>>),
    /// The computation failed, panicked or was cancelled: each waiter tries
    /// again.
    Abandoned,
}

/// What a caller asking for a missing key does.
pub(super) enum Turn {
    /// Computes it (and holds the slot until done).
    Lead(Arc<Slot>),
    /// Waits for the computation of another thread or task.
    Wait(Arc<Slot>),
    /// Computes it without the slot: the caller is already computing this
    /// key further up its stack (waiting would be waiting for itself).
    Reentrant,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a computation never happens while these locks are held.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InFlight {
    /// What `me`, asking for the missing `key`, does.
    pub(super) fn turn(&self, key: CacheKey, me: Leader) -> Turn {
        let mut slots = lock(&self.slots);
        match slots.get(&key) {
            Some(slot) if slot.leader.is_caller() => Turn::Reentrant,
            Some(slot) => Turn::Wait(Arc::clone(slot)),
            None => {
                let slot = Arc::new(Slot {
                    leader: me,
                    outcome: Mutex::new(Outcome::Running),
                    finished: Condvar::new(),
                    #[cfg(feature = "tokio")]
                    woken: tokio::sync::Notify::new(),
                });
                slots.insert(key, Arc::clone(&slot));
                Turn::Lead(slot)
            }
        }
    }

    /// Ends `slot`'s computation with `outcome` and wakes its waiters.
    fn finish(&self, key: CacheKey, slot: &Arc<Slot>, outcome: Outcome) {
        {
            let mut slots = lock(&self.slots);
            if slots.get(&key).is_some_and(|held| Arc::ptr_eq(held, slot)) {
                slots.remove(&key);
            }
        }
        *lock(&slot.outcome) = outcome;
        slot.finished.notify_all();
        #[cfg(feature = "tokio")]
        slot.woken.notify_waiters();
    }
}

impl Slot {
    /// Blocks until the computation ends; its value, if there is one to share.
    fn wait(&self) -> Option<Arc<Encoded>> {
        let mut outcome = lock(&self.outcome);
        while matches!(*outcome, Outcome::Running) {
            outcome = self
                .finished
                .wait(outcome)
                .unwrap_or_else(PoisonError::into_inner);
        }
        outcome.shared()
    }

    /// Waits, without blocking the thread, until the computation ends; its
    /// value, if there is one to share.
    #[cfg(feature = "tokio")]
    pub(super) async fn finished(&self) -> Option<Arc<Encoded>> {
        loop {
            let woken = self.woken.notified();
            let mut woken = std::pin::pin!(woken);
            // Registered before the check, so a finish in between still wakes it.
            woken.as_mut().enable();
            {
                let outcome = lock(&self.outcome);
                if !matches!(*outcome, Outcome::Running) {
                    return outcome.shared();
                }
            }
            woken.await;
        }
    }
}

impl Outcome {
    fn shared(&self) -> Option<Arc<Encoded>> {
        match self {
            Outcome::Computed(shared) => shared.clone(),
            Outcome::Running | Outcome::Abandoned => None,
        }
    }
}

/// Holds a slot while its value is computed: ends it with the value, or, if
/// the computation returns early, panics or (async) is dropped, abandons it.
pub(super) struct Leading<'a> {
    in_flight: &'a InFlight,
    key: CacheKey,
    slot: Arc<Slot>,
    done: bool,
}

impl<'a> Leading<'a> {
    pub(super) fn new(in_flight: &'a InFlight, key: CacheKey, slot: Arc<Slot>) -> Self {
        Leading {
            in_flight,
            key,
            slot,
            done: false,
        }
    }

    /// Ends the computation, handing `shared` to the waiters.
    pub(super) fn finish(mut self, shared: Option<Arc<Encoded>>) {
        self.done = true;
        self.in_flight
            .finish(self.key, &self.slot, Outcome::Computed(shared));
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.in_flight
                .finish(self.key, &self.slot, Outcome::Abandoned);
        }
    }
}

impl<C: Codec> Cache<C> {
    /// The value under `key`; if there is none, computes it with `make`, stores it
    /// and returns it.
    ///
    /// - **Once per key.** Threads that ask for a key while another thread of
    ///   this process computes it wait and get that value (decoded from the
    ///   bytes the computing thread encoded, so `T` need not be `Clone`);
    ///   different keys compute in parallel. With
    ///   [`SingleFlight::AcrossProcesses`], processes sharing the cache dir
    ///   wait for each other too. A computation that panics wakes its waiters,
    ///   which then compute in turn; the panic reaches the caller that ran it.
    ///   A computation that asks for its own key again computes it again
    ///   rather than waiting for itself.
    /// - **A stored value that cannot be read as `T` is a miss**: after a type
    ///   change, or when the entry was written with another codec, the value is
    ///   computed again and replaces the entry. Other errors (I/O, a backend
    ///   failure) are returned.
    /// - **A value that cannot be stored is still returned**: when the put fails
    ///   (larger than the size limit, a read-only cache, a full disk), the
    ///   computed value is returned and the reason logged at `warn`. A value
    ///   the codec cannot encode (NaN under JSON) can be neither stored nor
    ///   handed to waiting threads: each of them computes it in turn.
    ///
    /// ```
    /// use cacheness_core::{Cache, key};
    /// use cacheness_memory::MemoryBackend;
    ///
    /// let cache = Cache::builder().open(MemoryBackend::new())?;
    /// let key = key!(model = "xgboost", fold = 3);
    /// let mut runs = 0;
    /// let score = cache.get_or_insert_with(&key, || { runs += 1; 0.91 })?;
    /// let again = cache.get_or_insert_with(&key, || { runs += 1; 0.0 })?;
    /// assert_eq!((score, again, runs), (0.91, 0.91, 1));
    /// # Ok::<(), cacheness_core::Error>(())
    /// ```
    pub fn get_or_insert_with<T, F>(&self, key: &impl ToKey, make: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        self.get_or_try_insert_with(key, || Ok::<T, Error>(make()))
    }

    /// Like [`get_or_insert_with`](Cache::get_or_insert_with) for a computation that
    /// can fail; its error is returned, nothing is stored, and the threads that
    /// waited for it compute in turn.
    pub fn get_or_try_insert_with<T, E, F>(&self, key: &impl ToKey, make: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnOnce() -> Result<T, E>,
    {
        self.get_or_try_insert_with_options(key, &PutOptions::default(), make)
    }

    /// Like [`get_or_try_insert_with`](Cache::get_or_try_insert_with), storing
    /// the computed value with `options` (a TTL, a prefix, a description).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cacheness_core::{Cache, PutOptions, key};
    /// use cacheness_memory::MemoryBackend;
    ///
    /// let cache = Cache::builder().open(MemoryBackend::new())?;
    /// let hourly = PutOptions::new().ttl(Duration::from_secs(3600)).prefix("rates");
    /// let rate = cache.get_or_try_insert_with_options(&key!(currency = "EUR"), &hourly, || {
    ///     Ok::<_, cacheness_core::Error>(1.08)
    /// })?;
    /// assert_eq!(rate, 1.08);
    /// # Ok::<(), cacheness_core::Error>(())
    /// ```
    pub fn get_or_try_insert_with_options<T, E, F>(
        &self,
        key: &impl ToKey,
        options: &PutOptions,
        make: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnOnce() -> Result<T, E>,
    {
        let cache_key = key.to_key();
        let mut make = Some(make);
        loop {
            if let Some(value) = self.get_readable(cache_key)? {
                return Ok(value);
            }
            match self.in_flight.turn(cache_key, Leader::this_thread()) {
                Turn::Reentrant => {
                    let make = make.take().expect("a computation runs once");
                    let value = make()?;
                    self.store_computed(key, &value, options);
                    return Ok(value);
                }
                Turn::Wait(slot) => {
                    if let Some(value) = slot.wait().and_then(|shared| self.decode_shared(&shared))
                    {
                        return Ok(value);
                    }
                    // Stored (read it above), abandoned or undecodable: again.
                }
                Turn::Lead(slot) => {
                    let leading = Leading::new(&self.in_flight, cache_key, slot);
                    let _process_lock = self.lock_across_processes(cache_key);
                    // Another thread may have stored it between this one's miss
                    // and its turn, or another process while this one waited.
                    if let Some(value) = self.get_readable(cache_key)? {
                        return Ok(value);
                    }
                    let make = make.take().expect("a computation runs once");
                    let value = make()?;
                    let stored = self.store_computed(key, &value, options);
                    leading.finish(stored);
                    return Ok(value);
                }
            }
        }
    }

    /// The stored value, with a value that does not decode as `T` (or was
    /// written with another codec) read as a miss.
    pub(super) fn get_readable<T: DeserializeOwned>(&self, key: CacheKey) -> Result<Option<T>> {
        match self.get(&key) {
            Err(error @ (Error::Decode { .. } | Error::CodecMismatch { .. })) => {
                tracing::info!(%key, %error, "the stored value cannot be read; computing it again");
                Ok(None)
            }
            read => read,
        }
    }

    /// Stores a computed value; a put that fails is logged, not returned (the
    /// value is returned all the same). The encoding, for waiters, unless the
    /// value could not be encoded.
    fn store_computed<T: Serialize>(
        &self,
        key: &impl ToKey,
        value: &T,
        options: &PutOptions,
    ) -> Option<Arc<Encoded>> {
        let encoded = self.encode_computed(key.to_key(), value)?;
        self.log_unstored(key.to_key(), self.store_encoded(key, &encoded, options));
        Some(encoded)
    }

    /// A computed value encoded for storing; `None`, logged, if it cannot be.
    pub(super) fn encode_computed<T: Serialize>(
        &self,
        key: CacheKey,
        value: &T,
    ) -> Option<Arc<Encoded>> {
        match self.encode_value(key, value) {
            Ok(encoded) => Some(Arc::new(encoded)),
            Err(error) => {
                self.log_unstored(key, Err(error));
                None
            }
        }
    }

    pub(super) fn log_unstored(&self, key: CacheKey, stored: Result<()>) {
        if let Err(error) = stored {
            tracing::warn!(%key, %error, "the computed value was not stored; returning it anyway");
        }
    }

    /// A value another caller computed, from its encoding; `None` if it does
    /// not decode as `T` (a caller asking for another type).
    pub(super) fn decode_shared<T: DeserializeOwned>(&self, shared: &Encoded) -> Option<T> {
        let decoded = if shared.raw {
            decode_raw(&shared.bytes)
        } else {
            self.codec.decode_slice(&shared.bytes)
        };
        decoded.ok()
    }

    /// With [`SingleFlight::AcrossProcesses`] and a writable cache dir, waits
    /// for and takes the key's lock file. `None` when there is nothing to lock
    /// or the lock cannot be taken (logged: the value is then computed without
    /// it, at worst twice).
    pub(super) fn lock_across_processes(&self, key: CacheKey) -> Option<KeyLock> {
        if self.settings.single_flight != SingleFlight::AcrossProcesses || self.settings.read_only {
            return None;
        }
        let dir = self.settings.dir.as_deref()?;
        match KeyLock::acquire(dir, key) {
            Ok(lock) => Some(lock),
            Err(error) => {
                tracing::warn!(%key, %error, "cannot take the key's lock file; computing without it");
                None
            }
        }
    }
}

/// A held per-key lock file, removed (then unlocked) on drop.
///
/// A process that was waiting on the removed file finds, once it holds it,
/// that it is no longer the file at the path, and takes the lock again on
/// the one there: two holders at once cannot happen through the removal.
pub(super) struct KeyLock {
    file: File,
    path: PathBuf,
}

impl KeyLock {
    fn acquire(dir: &Path, key: CacheKey) -> Result<KeyLock> {
        let locks = dir.join(LOCKS_DIR);
        create_private_dir(&locks)?;
        // Lock files go in the dir itself, never through a link out of it.
        let kind = std::fs::symlink_metadata(&locks)
            .map_err(|source| Error::io("inspect", &locks, source))?
            .file_type();
        if !kind.is_dir() {
            return Err(Error::io(
                "use as the lock dir",
                &locks,
                io::Error::new(io::ErrorKind::InvalidInput, "is not a directory"),
            ));
        }
        let path = locks.join(format!("{key}.lock"));
        // The holder before removes the file as it lets go: a lock taken on
        // the removed file is no lock, so take the one at the path again.
        for _ in 0..64 {
            let opened = open_regular(
                &path,
                OpenOptions::new().read(true).write(true).create(true),
            );
            let file = opened.map_err(|source| Error::io("open lock file", &path, source))?;
            file.lock()
                .map_err(|source| Error::io("lock", &path, source))?;
            if same_file(&file, &path) {
                return Ok(KeyLock { file, path });
            }
        }
        Err(Error::io(
            "lock",
            &path,
            io::Error::other("the lock file kept being replaced"),
        ))
    }
}

/// Whether `file` is the file at `path` now.
fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::symlink_metadata(path)) {
            (Ok(held), Ok(there)) => held.dev() == there.dev() && held.ino() == there.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::debug!(path = %self.path.display(), %error, "lock file not removed");
        }
        let _ = self.file.unlock();
    }
}
