//! The cache engine: values in, values out, over any metadata backend.

mod access;
#[cfg(feature = "tokio")]
mod async_cache;
#[cfg(feature = "tokio")]
mod blocking;
mod builder;
mod compress;
mod compute;
mod evict;
mod options;
mod read;
mod write;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::{Counters, MetadataBackend, ScanFilter};
use crate::blob::BlobStore;
use crate::clock::Clock;
use crate::codec::{Codec, NamedCodec};
use crate::entry::{Entry, ListedEntry};
use crate::error::{Error, Result};
use crate::eviction::EvictionPolicy;
use crate::key::{CacheKey, ToKey};
use crate::signing::{MismatchLog, Signer};

use access::PendingAccess;
#[cfg(feature = "tokio")]
pub use async_cache::AsyncCache;
pub use builder::CacheBuilder;
pub(crate) use compress::decompress;
pub use compute::{LOCKS_DIR, SingleFlight};
pub use options::{
    DEFAULT_ACCESS_GRANULARITY, DEFAULT_INLINE_THRESHOLD, DEFAULT_LOW_WATERMARK, Expiry,
    GetOptions, ListOptions, MAX_DESCRIPTION_LEN, MAX_USER_METADATA_LEN, PutOptions, Stats,
};

/// Eviction and expiry work through the backend in batches of this many entries.
const REMOVAL_BATCH: usize = 256;

/// A persistent cache: serde values stored under keys, with TTLs, a size limit and
/// integrity checks, over a pluggable [`MetadataBackend`].
///
/// `Cache` is `Send + Sync`; share it between threads with an `Arc`. Reads are
/// recorded in memory and written to the backend in batches (on a size or time
/// threshold, on [`flush`](Cache::flush) and on drop), so a get never costs a
/// synchronous write.
///
/// ```
/// use std::time::Duration;
/// use cacheness_core::{Cache, ManualClock, key};
/// use cacheness_memory::MemoryBackend;
///
/// let clock = ManualClock::new(0);
/// let cache = Cache::builder()
///     .default_ttl(Duration::from_secs(60))
///     .clock(clock.clone())
///     .open(MemoryBackend::new())?;
///
/// let key = key!(model = "xgboost", version = 2);
/// cache.put(&key, &vec![0.5_f64, 0.25])?;
/// assert_eq!(cache.get::<Vec<f64>>(&key)?, Some(vec![0.5, 0.25]));
///
/// clock.advance(Duration::from_secs(61));
/// assert_eq!(cache.get::<Vec<f64>>(&key)?, None);
/// # Ok::<(), cacheness_core::Error>(())
/// ```
pub struct Cache<C: Codec = NamedCodec> {
    backend: Arc<dyn MetadataBackend>,
    blobs: Option<Arc<dyn BlobStore>>,
    codec: C,
    clock: Arc<dyn Clock>,
    signer: Option<Signer>,
    /// Entries whose signature did not match, logged once each.
    mismatches: MismatchLog,
    settings: Settings,
    pending: Mutex<PendingAccess>,
    in_flight: compute::InFlight,
    session: SessionCounters,
    approx_total_size: AtomicU64,
    puts_since_resync: AtomicU64,
    /// Kept alive as long as the cache, dropped after its last write (see
    /// [`CacheBuilder::hold`]).
    _held: Held,
}

/// Values a cache keeps alive for whoever opened it, such as a lock.
#[derive(Default)]
struct Held(Vec<Arc<dyn std::any::Any + Send + Sync>>);

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held({})", self.0.len())
    }
}

#[derive(Debug, Clone)]
struct Settings {
    dir: Option<PathBuf>,
    default_ttl: Option<Duration>,
    max_size: Option<u64>,
    low_watermark: f64,
    eviction: EvictionPolicy,
    verify_integrity: bool,
    access_granularity_ms: u64,
    /// Stored values up to this size go inline; `usize::MAX` without a blob store,
    /// and `None` when the backend cannot hold inline values.
    inline_limit: Option<usize>,
    /// Never write: see [`CacheBuilder::read_only`].
    read_only: bool,
    single_flight: SingleFlight,
}

#[derive(Debug, Default)]
struct SessionCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl<C: Codec> std::fmt::Debug for Cache<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.backend.name())
            .field("dir", &self.settings.dir)
            .field("codec", &self.codec.name())
            .field("max_size", &self.settings.max_size)
            .field("default_ttl", &self.settings.default_ttl)
            .finish_non_exhaustive()
    }
}

impl<C: Codec> Cache<C> {
    /// Removes the entry under `key` and its blob; whether there was one.
    pub fn remove(&self, key: &impl ToKey) -> Result<bool> {
        self.check_writable("remove")?;
        let removed = self.backend.remove(&key.to_key())?;
        if let Some(entry) = &removed {
            self.forget_reads(entry.key);
            self.delete_blob(entry);
        }
        Ok(removed.is_some())
    }

    /// Drops the reads of `key` not yet written, because its entry is gone
    /// (see [`clear`](Self::clear)).
    pub(super) fn forget_reads(&self, key: CacheKey) {
        let mut pending = self.lock_pending();
        pending.touches.remove(&key);
        pending.held_back.remove(&key);
    }

    /// Removes every entry filed under `prefix`; how many.
    pub fn remove_prefix(&self, prefix: &str) -> Result<u64> {
        self.check_writable("remove")?;
        validate_prefix(prefix)?;
        let mut removed = 0;
        loop {
            let batch = self.scan_keys(ScanFilter::all().prefix(prefix).limit(REMOVAL_BATCH))?;
            for key in &batch {
                if let Some(entry) = self.backend.remove(key)? {
                    self.forget_reads(entry.key);
                    self.delete_blob(&entry);
                    removed += 1;
                }
            }
            if batch.len() < REMOVAL_BATCH {
                return Ok(removed);
            }
        }
    }

    /// Entries in ascending key order, filtered and paged by `options`.
    ///
    /// A [`ListedEntry`] dereferences to the [`Entry`]; backends that keep
    /// entries in memory share theirs instead of copying them.
    pub fn list(&self, options: &ListOptions) -> Result<Vec<ListedEntry>> {
        let now = self.clock.now_ms();
        let filter = ScanFilter {
            prefix: options.prefix.clone(),
            after: options.after,
            limit: if options.include_expired {
                options.limit
            } else {
                None
            },
        };
        let limit = options.limit.unwrap_or(usize::MAX);
        let mut entries = Vec::new();
        if limit == 0 {
            return Ok(entries);
        }
        self.backend.scan_listed(&filter, &mut |entry| {
            if options.include_expired || !entry.is_expired(now) {
                entries.push(entry);
            }
            if entries.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(entries)
    }

    /// Entry count, size and hit/miss/eviction counters.
    ///
    /// Counters are the backend's persisted totals (plus reads not yet flushed)
    /// where the backend keeps them, else this process's since open.
    pub fn stats(&self) -> Result<Stats> {
        let backend_stats = self.backend.stats()?;
        let counters = if self.backend.capabilities().counters {
            let mut counters = backend_stats.counters;
            counters.add(self.lock_pending().counters);
            counters
        } else {
            Counters {
                hits: self.session.hits.load(Ordering::Relaxed),
                misses: self.session.misses.load(Ordering::Relaxed),
                evictions: self.session.evictions.load(Ordering::Relaxed),
            }
        };
        Ok(Stats {
            entries: backend_stats.entries,
            total_size: backend_stats.total_size,
            max_size: self.settings.max_size,
            hits: counters.hits,
            misses: counters.misses,
            evictions: counters.evictions,
            layer: self.backend.layer_stats(),
        })
    }

    /// Removes every entry and its blob; how many.
    pub fn clear(&self) -> Result<u64> {
        self.check_writable("clear")?;
        {
            // Reads of removed entries must not count for the next put of
            // their keys.
            let mut pending = self.lock_pending();
            pending.touches.clear();
            pending.held_back.clear();
        }
        let removed = self.backend.clear()?;
        for entry in &removed {
            self.delete_blob(entry);
        }
        self.approx_total_size.store(0, Ordering::Relaxed);
        Ok(removed.len() as u64)
    }

    /// The file holding an entry's bytes, when it has one.
    pub fn blob_path(&self, entry: &Entry) -> Option<PathBuf> {
        let name = entry.blob_name()?;
        self.blobs.as_ref()?.local_path(name)
    }

    /// The metadata backend.
    pub fn backend(&self) -> &dyn MetadataBackend {
        self.backend.as_ref()
    }

    /// The signer, when entries are signed.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    /// The blob store, when the cache has one.
    pub fn blob_store(&self) -> Option<&dyn BlobStore> {
        self.blobs.as_deref()
    }

    /// The codec values are stored with.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// The cache directory, when the cache has one.
    pub fn dir(&self) -> Option<&Path> {
        self.settings.dir.as_deref()
    }

    /// Whether the cache was opened read-only ([`CacheBuilder::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.settings.read_only
    }

    /// [`Error::ReadOnly`] naming `operation` if the cache is read-only: every
    /// operation that writes checks this first.
    pub(crate) fn check_writable(&self, operation: &'static str) -> Result<()> {
        if self.settings.read_only {
            Err(Error::ReadOnly { operation })
        } else {
            Ok(())
        }
    }

    /// The current time of the cache's clock, in ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Deletes the blob of an entry that is gone from the metadata (the one
    /// place that deletes blobs: puts, removals, expiry, eviction, damage,
    /// verify and rebuild); a failure is logged, not returned.
    pub(crate) fn delete_blob(&self, entry: &Entry) {
        if let Some(name) = entry.blob_name() {
            self.delete_blob_named(name);
        }
    }

    /// Deletes blob `name`, which no entry refers to any more; see
    /// [`delete_blob`](Self::delete_blob).
    pub(crate) fn delete_blob_named(&self, name: &str) {
        let Some(blobs) = &self.blobs else {
            return;
        };
        if let Err(error) = blobs.remove(name) {
            tracing::warn!(blob = name, %error, "could not delete blob");
        }
    }

    fn scan_keys(&self, filter: ScanFilter) -> Result<Vec<CacheKey>> {
        let mut keys = Vec::new();
        self.backend.scan(&filter, &mut |entry| {
            keys.push(entry.key);
            ControlFlow::Continue(())
        })?;
        Ok(keys)
    }
}

impl<C: Codec> Drop for Cache<C> {
    fn drop(&mut self) {
        if let Err(error) = self.flush() {
            tracing::warn!(%error, "could not flush the cache on drop");
        }
    }
}

/// Checks a prefix is a plain label: no path separators, `..` or NUL.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    let reason = if prefix.len() > 255 {
        Some("longer than 255 bytes")
    } else if prefix.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if prefix.contains("..") {
        Some("contains `..`")
    } else if prefix.contains('\0') {
        Some("contains a NUL byte")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidInput {
            what: "prefix",
            value: prefix.escape_debug().to_string(),
            reason: reason.into(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_that_could_be_paths_are_rejected() {
        for bad in ["a/b", "..", "a..b", "a\\b", "a\0b", &"x".repeat(256)] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
        for good in ["", "models", "v1.2", "with space"] {
            assert!(validate_prefix(good).is_ok(), "{good:?}");
        }
    }
}
