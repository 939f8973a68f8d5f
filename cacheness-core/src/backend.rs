//! The seam every metadata backend plugs into.

use std::fmt::Debug;
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::entry::{Entry, ListedEntry, SharedEntry};
use crate::error::Result;
use crate::eviction::EvictionPolicy;
use crate::key::CacheKey;
use crate::ops::InlineLoss;

/// Stores the index of entries (the *metadata*) of one cache.
///
/// The trait is object-safe, `Send + Sync` and synchronous. A backend implements
/// five required methods: [`get`](Self::get), [`put`](Self::put),
/// [`remove`](Self::remove), [`touch`](Self::touch) and [`scan`](Self::scan). The
/// others have default implementations built on `scan`, which a real backend
/// overrides for speed (an indexed SQL query instead of a full scan).
///
/// Contract every implementation keeps (the `conformance` suite checks it):
/// - each method is atomic for its key: a reader sees an entry as it was before or
///   after a write, never a mix;
/// - [`put`](Self::put) replaces and returns the previous entry *in the same atomic
///   step*, so the engine deletes exactly the blob that the replaced entry owned and
///   never one that a concurrent writer just stored;
/// - entries come back exactly as they were put (every field), except that
///   [`touch`](Self::touch) moves `accessed_at` and `access_count`;
/// - a backend never interprets `location`, `params` or `user_metadata`, and never
///   drops an entry on its own (expiry and eviction are the engine's decisions).
///
/// A custom backend proves itself with one line in its tests, under the core's
/// `conformance` feature: `cacheness_core::conformance_tests!(|dir| MyBackend::open(dir));`
pub trait MetadataBackend: Send + Sync + Debug {
    /// The backend's name, as used in configuration and error messages.
    fn name(&self) -> &str {
        "custom"
    }

    /// What this backend can do; the engine and the facade choose by it.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// The entry stored under `key`, expired or not; `None` if there is none.
    fn get(&self, key: &CacheKey) -> Result<Option<Entry>>;

    /// [`get`](Self::get), sharing the entry instead of copying it.
    ///
    /// The engine reads through this method. Backends that keep entries in memory
    /// (the `memory` backend, the memory layer) override it to hand out a reference
    /// to their own copy, so a read allocates nothing for the entry's strings,
    /// parameters and inline bytes, and the engine's check of the entry is kept
    /// with it; the default wraps [`get`](Self::get). Either way the entry is the
    /// one [`get`](Self::get) would return.
    fn get_shared(&self, key: &CacheKey) -> Result<Option<Arc<SharedEntry>>> {
        Ok(self
            .get(key)?
            .map(|entry| Arc::new(SharedEntry::new(entry))))
    }

    /// Stores `entry` under `entry.key`, returning the entry it replaced, atomically.
    fn put(&self, entry: Entry) -> Result<Option<Entry>>;

    /// Removes the entry under `key`, returning it; `None` if there was none.
    fn remove(&self, key: &CacheKey) -> Result<Option<Entry>>;

    /// Records reads in one batch: for each touch of a key that exists, sets
    /// `accessed_at` to the later of the stored and the touched time and adds `count`
    /// to `access_count`; touches of missing keys are ignored. Backends that report
    /// [`Capabilities::counters`] also add `batch.counters` to their totals.
    fn touch(&self, batch: &AccessBatch) -> Result<()>;

    /// Calls `visit` with each entry matching `filter`, in ascending key order,
    /// starting after `filter.after`, at most `filter.limit` entries, until `visit`
    /// breaks.
    fn scan(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
    ) -> Result<()>;

    /// [`scan`](Self::scan), handing out [`ListedEntry`] values: listings go
    /// through this method.
    ///
    /// Backends that keep entries in memory override it to share their own
    /// copies (a reference count each) instead of copying every entry; the
    /// default wraps the entries [`scan`](Self::scan) gives. The entries, their
    /// order and the filter's meaning are those of [`scan`](Self::scan).
    fn scan_listed(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(ListedEntry) -> ControlFlow<()>,
    ) -> Result<()> {
        self.scan(filter, &mut |entry| visit(ListedEntry::from(entry)))
    }

    /// The number of entries.
    fn len(&self) -> Result<u64> {
        let mut count = 0;
        self.scan(&ScanFilter::all(), &mut |_| {
            count += 1;
            ControlFlow::Continue(())
        })?;
        Ok(count)
    }

    /// Whether there are no entries.
    fn is_empty(&self) -> Result<bool> {
        let mut empty = true;
        self.scan(&ScanFilter::all().limit(1), &mut |_| {
            empty = false;
            ControlFlow::Break(())
        })?;
        Ok(empty)
    }

    /// The sum of `stored_size` over all entries.
    fn total_size(&self) -> Result<u64> {
        let mut total = 0u64;
        self.scan(&ScanFilter::all(), &mut |entry| {
            total = total.saturating_add(entry.stored_size);
            ControlFlow::Continue(())
        })?;
        Ok(total)
    }

    /// Entry count, total size and, where the backend keeps them, the counters it
    /// was given through [`touch`](Self::touch).
    fn stats(&self) -> Result<BackendStats> {
        let mut stats = BackendStats::default();
        self.scan(&ScanFilter::all(), &mut |entry| {
            stats.entries += 1;
            stats.total_size = stats.total_size.saturating_add(entry.stored_size);
            ControlFlow::Continue(())
        })?;
        Ok(stats)
    }

    /// Up to `limit` entries that have expired at `now_ms`.
    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Entry>> {
        let mut expired = Vec::new();
        if limit == 0 {
            return Ok(expired);
        }
        self.scan(&ScanFilter::all(), &mut |entry| {
            if entry.is_expired(now_ms) {
                expired.push(entry);
            }
            if expired.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(expired)
    }

    /// The first `limit` entries in `policy`'s eviction order at `now_ms`: the
    /// ones the size limit evicts first.
    ///
    /// The order is [`EvictionPolicy::compare`]'s: expired entries first (the
    /// soonest expired first), then live ones in the policy's order, ties by
    /// key. The default scans every entry and keeps the first `limit`
    /// ([`candidates_by_scan`](crate::eviction::candidates_by_scan)); a
    /// backend with indexes answers with one query per policy, in the same
    /// order.
    fn eviction_candidates(
        &self,
        policy: EvictionPolicy,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        crate::eviction::candidates_by_scan(self, policy, now_ms, limit)
    }

    /// Removes the entry under `expected.key` only if it is still the same version
    /// as `expected` (see [`Entry::same_version`]), returning it.
    ///
    /// The default is a `get` then a `remove`, which another writer can slip
    /// between; backends that can, override it with one atomic step.
    fn remove_if_unchanged(&self, expected: &Entry) -> Result<Option<Entry>> {
        match self.get(&expected.key)? {
            Some(current) if current.same_version(expected) => self.remove(&expected.key),
            _ => Ok(None),
        }
    }

    /// Removes every entry, returning them so their blobs can be deleted.
    fn clear(&self) -> Result<Vec<Entry>> {
        let mut keys = Vec::new();
        self.scan(&ScanFilter::all(), &mut |entry| {
            keys.push(entry.key);
            ControlFlow::Continue(())
        })?;
        let mut removed = Vec::with_capacity(keys.len());
        for key in keys {
            removed.extend(self.remove(&key)?);
        }
        Ok(removed)
    }

    /// Calls `visit` with the key of each entry the backend holds but cannot read
    /// (a damaged row or line: bad JSON, nesting past the parser's limit, a column
    /// of the wrong type), and why. Such an entry never blocks the rest: `scan`
    /// passes over it and `get` of its key fails naming it. `verify` reports these
    /// entries and `verify --repair` removes them with
    /// [`remove_unreadable`](Self::remove_unreadable). The default knows of none.
    fn unreadable(&self, visit: &mut dyn FnMut(CacheKey, String)) -> Result<()> {
        let _ = visit;
        Ok(())
    }

    /// Removes the unreadable entry under `key` without decoding it; whether one
    /// was removed. The default removes nothing.
    fn remove_unreadable(&self, key: &CacheKey) -> Result<bool> {
        let _ = key;
        Ok(false)
    }

    /// Makes buffered writes durable to the level the backend promises.
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// A number that changes whenever a write made through *another* handle (another
    /// process, or another connection) may have become visible, like SQLite's
    /// `PRAGMA data_version`; writes through this handle need not change it.
    /// `None` if the backend cannot tell, in which case copies of its entries held
    /// elsewhere (a memory layer) must be treated as possibly stale. It must be cheap:
    /// a memory layer may ask before every read.
    fn data_version(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// The statistics of an in-memory layer in front of the backend (a memory
    /// layer reports its own); `None` for plain backends.
    fn layer_stats(&self) -> Option<LayerStats> {
        None
    }

    /// Entries whose value was stored inline in metadata that this handle
    /// found lost or damaged and rebuilt from the blob files on its own (at
    /// open): no file held their bytes.
    /// [`Cache::rebuild`](crate::Cache::rebuild) reports it
    /// ([`RebuildReport::inline_lost`](crate::ops::RebuildReport::inline_lost)).
    /// The default: the backend repairs nothing itself.
    fn inline_lost(&self) -> InlineLoss {
        InlineLoss::default()
    }
}

/// What a backend can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Entries survive the process.
    pub persistent: bool,
    /// Several processes may open the same cache dir at once.
    pub multi_process: bool,
    /// Entries may carry their bytes inline ([`Location::Inline`](crate::Location::Inline)).
    pub inline_values: bool,
    /// The backend keeps the hit/miss/eviction counters given to `touch` and
    /// reports them in `stats`.
    pub counters: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            persistent: false,
            multi_process: false,
            inline_values: true,
            counters: false,
        }
    }
}

/// Named setters, so a backend says what it can do by name and a field added
/// later keeps its default:
///
/// ```
/// use cacheness_core::Capabilities;
///
/// let sqlite_like = Capabilities::default().persistent(true).multi_process(true).counters(true);
/// assert!(sqlite_like.inline_values);
/// ```
impl Capabilities {
    /// Whether entries survive the process.
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// Whether several processes may open the same cache dir at once.
    pub fn multi_process(mut self, multi_process: bool) -> Self {
        self.multi_process = multi_process;
        self
    }

    /// Whether entries may carry their bytes inline.
    pub fn inline_values(mut self, inline_values: bool) -> Self {
        self.inline_values = inline_values;
        self
    }

    /// Whether the backend keeps the counters given to `touch`.
    pub fn counters(mut self, counters: bool) -> Self {
        self.counters = counters;
        self
    }
}

/// Which entries a [`MetadataBackend::scan`] visits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanFilter {
    /// Only entries whose `prefix` is exactly this.
    pub prefix: Option<String>,
    /// Only entries whose key is strictly greater (for paging).
    pub after: Option<CacheKey>,
    /// At most this many entries.
    pub limit: Option<usize>,
}

impl ScanFilter {
    /// Every entry.
    pub fn all() -> Self {
        ScanFilter::default()
    }

    /// Only entries with this prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Only entries after this key.
    pub fn after(mut self, key: CacheKey) -> Self {
        self.after = Some(key);
        self
    }

    /// At most `limit` entries.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether `entry` passes the prefix and `after` conditions (not the limit).
    pub fn matches(&self, entry: &Entry) -> bool {
        self.prefix
            .as_deref()
            .is_none_or(|prefix| entry.prefix == prefix)
            && self.after.is_none_or(|after| entry.key > after)
    }
}

/// One key's reads since the last flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    /// The key read.
    pub key: CacheKey,
    /// The time of the latest read.
    pub accessed_at: u64,
    /// How many reads.
    pub count: u64,
}

/// Hit, miss and eviction counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Gets that returned a value.
    pub hits: u64,
    /// Gets that found nothing usable (missing, expired or corrupted).
    pub misses: u64,
    /// Entries removed by the size limit.
    pub evictions: u64,
}

impl Counters {
    /// Adds `other` to these counters.
    pub fn add(&mut self, other: Counters) {
        self.hits = self.hits.saturating_add(other.hits);
        self.misses = self.misses.saturating_add(other.misses);
        self.evictions = self.evictions.saturating_add(other.evictions);
    }

    /// Whether every counter is zero.
    pub fn is_zero(&self) -> bool {
        *self == Counters::default()
    }
}

/// Reads recorded by the engine, written to the backend in one go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessBatch {
    /// Per-key access updates, at most one per key.
    pub touches: Vec<Touch>,
    /// Counter increments since the last batch.
    pub counters: Counters,
}

impl AccessBatch {
    /// Whether the batch carries nothing.
    pub fn is_empty(&self) -> bool {
        self.touches.is_empty() && self.counters.is_zero()
    }
}

/// What a backend knows about its entries as a whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Number of entries.
    pub entries: u64,
    /// Sum of `stored_size`.
    pub total_size: u64,
    /// Persisted counters (zero for backends without [`Capabilities::counters`]).
    pub counters: Counters,
}

/// What an in-memory layer in front of a backend reports about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Reads served from the layer.
    pub hits: u64,
    /// Reads that went to the backend.
    pub misses: u64,
    /// Entries the layer dropped to stay within its capacity.
    pub evictions: u64,
    /// Entries held now.
    pub entries: u64,
    /// Approximate bytes held now by the entries.
    pub bytes_held: u64,
}

impl LayerStats {
    /// Hits over all reads; 0 when there were none.
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits.saturating_add(self.misses);
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}

/// Backends behind smart pointers are backends too, so a `Box<dyn
/// MetadataBackend>` or an `Arc<B>` can go wherever a backend is expected.
macro_rules! forward_backend {
    ($($pointer:ident),*) => {$(
        impl<B: MetadataBackend + ?Sized> MetadataBackend for $pointer<B> {
            fn name(&self) -> &str { (**self).name() }
            fn capabilities(&self) -> Capabilities { (**self).capabilities() }
            fn get(&self, key: &CacheKey) -> Result<Option<Entry>> { (**self).get(key) }
            fn get_shared(&self, key: &CacheKey) -> Result<Option<Arc<SharedEntry>>> { (**self).get_shared(key) }
            fn put(&self, entry: Entry) -> Result<Option<Entry>> { (**self).put(entry) }
            fn remove(&self, key: &CacheKey) -> Result<Option<Entry>> { (**self).remove(key) }
            fn touch(&self, batch: &AccessBatch) -> Result<()> { (**self).touch(batch) }
            fn scan(&self, filter: &ScanFilter, visit: &mut dyn FnMut(Entry) -> ControlFlow<()>) -> Result<()> {
                (**self).scan(filter, visit)
            }
            fn scan_listed(&self, filter: &ScanFilter, visit: &mut dyn FnMut(ListedEntry) -> ControlFlow<()>) -> Result<()> {
                (**self).scan_listed(filter, visit)
            }
            fn len(&self) -> Result<u64> { (**self).len() }
            fn is_empty(&self) -> Result<bool> { (**self).is_empty() }
            fn total_size(&self) -> Result<u64> { (**self).total_size() }
            fn stats(&self) -> Result<BackendStats> { (**self).stats() }
            fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Entry>> { (**self).expired(now_ms, limit) }
            fn eviction_candidates(&self, policy: EvictionPolicy, now_ms: u64, limit: usize) -> Result<Vec<Entry>> {
                (**self).eviction_candidates(policy, now_ms, limit)
            }
            fn remove_if_unchanged(&self, expected: &Entry) -> Result<Option<Entry>> { (**self).remove_if_unchanged(expected) }
            fn clear(&self) -> Result<Vec<Entry>> { (**self).clear() }
            fn unreadable(&self, visit: &mut dyn FnMut(CacheKey, String)) -> Result<()> { (**self).unreadable(visit) }
            fn remove_unreadable(&self, key: &CacheKey) -> Result<bool> { (**self).remove_unreadable(key) }
            fn flush(&self) -> Result<()> { (**self).flush() }
            fn data_version(&self) -> Result<Option<u64>> { (**self).data_version() }
            fn layer_stats(&self) -> Option<LayerStats> { (**self).layer_stats() }
            fn inline_lost(&self) -> InlineLoss { (**self).inline_lost() }
        }
    )*};
}

forward_backend!(Box, Arc);
