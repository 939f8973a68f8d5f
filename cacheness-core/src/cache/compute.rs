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
use crate::codec::Codec;
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
struct Slot {
    leader: ThreadId,
    outcome: Mutex<Outcome>,
    finished: Condvar,
}

#[derive(Debug)]
enum Outcome {
    Running,
    /// The value, encoded with the cache's codec (`None` when nobody was
    /// waiting as it finished: latecomers read the stored value).
    Computed(Option<Arc<Vec<u8>>>),
    /// The computation failed or panicked: each waiter tries again.
    Abandoned,
}

/// What a thread asking for a missing key does.
enum Turn {
    /// Computes it (and holds the slot until done).
    Lead(Arc<Slot>),
    /// Waits for the computation of another thread.
    Wait(Arc<Slot>),
    /// Computes it without the slot: the same thread is already computing this
    /// key further up its stack (waiting would be waiting for itself).
    Reentrant,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a computation never happens while these locks are held.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InFlight {
    fn turn(&self, key: CacheKey) -> Turn {
        let me = std::thread::current().id();
        let mut slots = lock(&self.slots);
        match slots.get(&key) {
            Some(slot) if slot.leader == me => Turn::Reentrant,
            Some(slot) => Turn::Wait(Arc::clone(slot)),
            None => {
                let slot = Arc::new(Slot {
                    leader: me,
                    outcome: Mutex::new(Outcome::Running),
                    finished: Condvar::new(),
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
    }
}

impl Slot {
    /// Whether anyone but the table and the leader holds this slot.
    fn has_waiters(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) > 2
    }

    fn wait(&self) -> MutexGuard<'_, Outcome> {
        let mut outcome = lock(&self.outcome);
        while matches!(*outcome, Outcome::Running) {
            outcome = self
                .finished
                .wait(outcome)
                .unwrap_or_else(PoisonError::into_inner);
        }
        outcome
    }
}

/// Abandons the slot if the computation returns early or panics.
struct Leading<'a> {
    in_flight: &'a InFlight,
    key: CacheKey,
    slot: Arc<Slot>,
    done: bool,
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
        let key = key.to_key();
        let mut make = Some(make);
        loop {
            if let Some(value) = self.get_readable(key)? {
                return Ok(value);
            }
            match self.in_flight.turn(key) {
                Turn::Reentrant => {
                    let make = make.take().expect("a computation runs once");
                    return self.compute_and_store(key, make);
                }
                Turn::Wait(slot) => {
                    let outcome = slot.wait();
                    if let Outcome::Computed(Some(bytes)) = &*outcome
                        && let Ok(value) = self.codec.decode_slice::<T>(bytes)
                    {
                        return Ok(value);
                    }
                    // Stored (read it above), abandoned or undecodable: again.
                }
                Turn::Lead(slot) => {
                    let mut leading = Leading {
                        in_flight: &self.in_flight,
                        key,
                        slot,
                        done: false,
                    };
                    let _process_lock = self.lock_across_processes(key);
                    // Another thread may have stored it between this one's miss
                    // and its turn, or another process while this one waited.
                    if let Some(value) = self.get_readable(key)? {
                        return Ok(value);
                    }
                    let make = make.take().expect("a computation runs once");
                    let value = self.compute_and_store(key, make)?;
                    let shared = leading
                        .slot
                        .has_waiters()
                        .then(|| self.codec.encode(&value).ok().map(Arc::new))
                        .flatten();
                    leading.done = true;
                    self.in_flight
                        .finish(key, &leading.slot, Outcome::Computed(shared));
                    return Ok(value);
                }
            }
        }
    }

    /// The stored value, with a value that does not decode as `T` (or was
    /// written with another codec) read as a miss.
    fn get_readable<T: DeserializeOwned>(&self, key: CacheKey) -> Result<Option<T>> {
        match self.get(&key) {
            Err(error @ (Error::Decode { .. } | Error::CodecMismatch { .. })) => {
                tracing::info!(%key, %error, "the stored value cannot be read; computing it again");
                Ok(None)
            }
            read => read,
        }
    }

    fn compute_and_store<T, E, F>(&self, key: CacheKey, make: F) -> Result<T, E>
    where
        T: Serialize,
        E: From<Error>,
        F: FnOnce() -> Result<T, E>,
    {
        let value = make()?;
        if let Err(error) = self.put(&key, &value) {
            tracing::warn!(%key, %error, "the computed value was not stored; returning it anyway");
        }
        Ok(value)
    }

    /// With [`SingleFlight::AcrossProcesses`] and a writable cache dir, waits
    /// for and takes the key's lock file. `None` when there is nothing to lock
    /// or the lock cannot be taken (logged: the value is then computed without
    /// it, at worst twice).
    fn lock_across_processes(&self, key: CacheKey) -> Option<KeyLock> {
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
struct KeyLock {
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
