//! [`MemLayer`]: copies of entries in a quick_cache, in front of any backend.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cacheness_core::EvictionPolicy;
use cacheness_core::ops::InlineLoss;
use cacheness_core::{
    AccessBatch, BackendStats, CacheKey, Capabilities, Clock, Entry, LayerStats, ListedEntry,
    Location, MetadataBackend, Result, ScanFilter, SharedEntry, SystemClock,
};
use quick_cache::sync::Cache as QuickCache;
use quick_cache::sync::EntryAction;
use quick_cache::{DefaultHashBuilder, Lifecycle, Options, OptionsBuilder, Weighter};

use crate::config::{Capacity, MemLayerConfig};

/// Writes and fills of one key are serialized by one of this many locks (chosen
/// by the key), so a fill never puts back a copy older than a write.
const STRIPES: usize = 64;
/// `known_version` before the backend has told us anything.
const VERSION_UNKNOWN: u64 = 0;
/// quick_cache grows its tables as needed; this only sizes its shards.
const MAX_ESTIMATED_ITEMS: u64 = 1 << 16;
/// The average entry size assumed to size shards under a byte capacity.
const ASSUMED_ENTRY_BYTES: u64 = 512;

/// An entry held in memory, with the time it was read from the backend and its
/// weight in bytes (computed once: quick_cache requires weights not to change).
#[derive(Clone)]
struct Held {
    entry: Arc<SharedEntry>,
    read_at: u64,
    bytes: u64,
}

impl Weighed for Held {
    fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// What a capacity in bytes counts of an item held: its size in memory.
pub(crate) trait Weighed {
    fn bytes(&self) -> u64;
}

/// Weighs items by their size in bytes under a byte capacity, else as one.
#[derive(Clone, Copy)]
pub(crate) struct CapacityWeighter {
    by_bytes: bool,
}

impl<K, V: Weighed> Weighter<K, V> for CapacityWeighter {
    fn weight(&self, _key: &K, item: &V) -> u64 {
        if self.by_bytes {
            item.bytes().max(1)
        } else {
            1
        }
    }
}

/// quick_cache options for `capacity`, and the weighter that goes with them.
/// Under a byte capacity, shards are sized for items of `assumed_item_bytes`.
pub(crate) fn options_for(
    capacity: Capacity,
    assumed_item_bytes: u64,
) -> (Options, CapacityWeighter) {
    let (by_bytes, weight_capacity, estimated_items) = match capacity {
        Capacity::Entries(items) => (false, items, items),
        Capacity::Bytes(bytes) => (true, bytes, bytes / assumed_item_bytes),
    };
    let estimated_items = estimated_items.clamp(1, MAX_ESTIMATED_ITEMS);
    let options = OptionsBuilder::new()
        .estimated_items_capacity(usize::try_from(estimated_items).unwrap_or(usize::MAX))
        .weight_capacity(weight_capacity)
        .build()
        .expect("both required options are set");
    (options, CapacityWeighter { by_bytes })
}

#[derive(Debug, Default)]
struct LayerCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    /// Signed so that a momentary order of add and subtract across threads can
    /// never wrap; read clamped at zero.
    bytes_held: AtomicI64,
}

impl LayerCounters {
    fn released(&self, held: &Held) {
        self.bytes_held
            .fetch_sub(weight_i64(held.bytes), Ordering::Relaxed);
    }
}

/// Counts what quick_cache evicts (or refuses: an entry heavier than a shard).
#[derive(Clone)]
struct EvictionAccounting(Arc<LayerCounters>);

impl Lifecycle<CacheKey, Held> for EvictionAccounting {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: CacheKey, held: Held) {
        self.0.evictions.fetch_add(1, Ordering::Relaxed);
        self.0.released(&held);
    }
}

type HeldCache =
    QuickCache<CacheKey, Held, CapacityWeighter, DefaultHashBuilder, EvictionAccounting>;

/// A memory layer: recently read entries of `B` kept in memory, so that reads of
/// hot keys skip the backend. It is a [`MetadataBackend`] itself, so it goes
/// wherever a backend does and can stack on any backend, a user's included.
///
/// - Reads: a copy younger than the TTL is returned from memory (no syscall for
///   the layer itself); otherwise the backend is read and the copy kept.
/// - Writes (`put`, `remove`, `remove_if_unchanged`, `touch`, `clear`) go to the
///   backend first; the copy is updated or dropped afterwards, under a lock that
///   also covers fills of the same key, so a read never brings back an older copy.
///   `put` returns the entry the backend replaced.
/// - Other processes: before a read (at most once per `check_interval`) the layer
///   asks the backend's [`data_version`](MetadataBackend::data_version); if it
///   moved, or the backend cannot tell, every copy is dropped.
/// - Scans and the other bulk methods go to the backend.
///
/// ```
/// use cacheness_core::{Cache, key};
/// use cacheness_memlayer::{MemLayer, MemLayerConfig};
/// use cacheness_memory::MemoryBackend;
///
/// let layer = MemLayer::new(MemoryBackend::new(), MemLayerConfig::default())?;
/// let cache = Cache::builder().open(layer)?;
/// cache.put(&key!(user = 7), &"Grace")?;
/// for _ in 0..3 {
///     assert_eq!(cache.get::<String>(&key!(user = 7))?.as_deref(), Some("Grace"));
/// }
/// let layer = cache.stats()?.layer.expect("a memory layer reports its stats");
/// assert_eq!(layer.hits, 3);
/// # Ok::<(), cacheness_core::Error>(())
/// ```
pub struct MemLayer<B> {
    backend: B,
    config: MemLayerConfig,
    name: String,
    clock: Arc<dyn Clock>,
    held: HeldCache,
    counters: Arc<LayerCounters>,
    stripes: Box<[Mutex<()>]>,
    /// Moves every time all copies are dropped, so a fill that read the backend
    /// before the drop does not keep its copy.
    generation: AtomicU64,
    /// The backend's data version plus one as of the last check (0: unknown).
    known_version: AtomicU64,
    next_check_ms: AtomicU64,
    ttl_ms: u64,
    check_interval_ms: u64,
}

impl<B: MetadataBackend> MemLayer<B> {
    /// A layer over `backend` with the system clock. Fails if `config` is invalid
    /// or the backend cannot report its data version.
    pub fn new(backend: B, config: MemLayerConfig) -> Result<Self> {
        MemLayer::with_clock(backend, config, SystemClock)
    }

    /// A layer whose TTL and check interval run on `clock` (tests pass a
    /// [`ManualClock`](cacheness_core::ManualClock)).
    pub fn with_clock(
        backend: B,
        config: MemLayerConfig,
        clock: impl Clock + 'static,
    ) -> Result<Self> {
        config.validate()?;
        let counters = Arc::new(LayerCounters::default());
        let held = new_held_cache(config.capacity, &counters);
        let known_version = if config.enabled {
            encode_version(backend.data_version()?)
        } else {
            VERSION_UNKNOWN
        };
        Ok(MemLayer {
            name: format!("memlayer+{}", backend.name()),
            ttl_ms: whole_ms(config.ttl),
            check_interval_ms: whole_ms(config.check_interval),
            backend,
            config,
            clock: Arc::new(clock),
            held,
            counters,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            generation: AtomicU64::new(0),
            known_version: AtomicU64::new(known_version),
            next_check_ms: AtomicU64::new(0),
        })
    }

    /// The backend behind the layer.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The configuration the layer was made with.
    pub fn config(&self) -> &MemLayerConfig {
        &self.config
    }

    /// The backend, dropping the layer.
    pub fn into_inner(self) -> B {
        self.backend
    }

    /// Drops every copy held in memory; the next reads go to the backend.
    pub fn invalidate_all(&self) {
        // The bump comes first: a fill that read the backend before this point
        // either sees it and drops its copy, or put its copy in before the drain.
        self.generation.fetch_add(1, Ordering::SeqCst);
        for (_, held) in self.held.drain() {
            self.counters.released(&held);
        }
    }

    /// The layer's hits, misses, evictions and the entries and bytes it holds.
    pub fn layer_counters(&self) -> LayerStats {
        LayerStats {
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            evictions: self.counters.evictions.load(Ordering::Relaxed),
            entries: self.held.len() as u64,
            bytes_held: self.counters.bytes_held.load(Ordering::Relaxed).max(0) as u64,
        }
    }

    /// Asks the backend whether anything changed elsewhere (unless checked within
    /// `check_interval`) and drops every copy if so. Returns whether copies may
    /// be served: not when the backend cannot tell and every read must check.
    fn check_version(&self, now: u64) -> Result<bool> {
        if self.check_interval_ms > 0 && now < self.next_check_ms.load(Ordering::Acquire) {
            return Ok(true);
        }
        let current = encode_version(self.backend.data_version()?);
        let known = self.known_version.load(Ordering::SeqCst);
        if current == VERSION_UNKNOWN || known != current {
            if current != VERSION_UNKNOWN {
                tracing::debug!(
                    backend = self.backend.name(),
                    "data version moved: dropping every copy held in memory"
                );
            }
            if !self.held.is_empty() {
                self.invalidate_all();
            } else {
                self.generation.fetch_add(1, Ordering::SeqCst);
            }
            self.known_version.store(current, Ordering::SeqCst);
        }
        if self.check_interval_ms > 0 {
            self.next_check_ms.store(
                now.saturating_add(self.check_interval_ms),
                Ordering::Release,
            );
            return Ok(true);
        }
        Ok(current != VERSION_UNKNOWN)
    }

    /// Reads `key` from the backend and keeps a copy. The stripe lock keeps
    /// writes of the key out until the copy is in place.
    fn fill(&self, key: &CacheKey, now: u64) -> Result<Option<Arc<SharedEntry>>> {
        let _stripe = self.lock_stripe(key);
        let generation = self.generation.load(Ordering::SeqCst);
        let found = self.backend.get_shared(key);
        match &found {
            Ok(Some(entry)) => self.hold(Arc::clone(entry), now),
            Ok(None) | Err(_) => self.forget(key),
        }
        self.forget_if_invalidated(key, generation);
        found
    }

    /// Keeps `entry` in memory, replacing any copy. Caller holds the key's stripe.
    fn hold(&self, entry: Arc<SharedEntry>, now: u64) {
        let key = entry.key;
        self.forget(&key);
        let bytes = entry_bytes(&entry);
        self.counters
            .bytes_held
            .fetch_add(weight_i64(bytes), Ordering::Relaxed);
        self.held.insert(
            key,
            Held {
                entry,
                read_at: now,
                bytes,
            },
        );
    }

    /// Drops the copy of `key`, if any.
    fn forget(&self, key: &CacheKey) {
        if let Some((_, held)) = self.held.remove(key) {
            self.counters.released(&held);
        }
    }

    fn forget_if_invalidated(&self, key: &CacheKey, generation: u64) {
        if self.generation.load(Ordering::SeqCst) != generation {
            self.forget(key);
        }
    }

    fn lock_stripe(&self, key: &CacheKey) -> MutexGuard<'_, ()> {
        let index = usize::from(key.as_bytes()[15]) % STRIPES;
        lock_ignoring_poison(&self.stripes[index])
    }

    /// Writes `key` through to the backend with `write`, then keeps `keep` (the
    /// entry written) or drops the copy.
    fn write_through<T>(
        &self,
        key: &CacheKey,
        keep: Option<Arc<SharedEntry>>,
        write: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let now = self.clock.now_ms();
        let _stripe = self.lock_stripe(key);
        let generation = self.generation.load(Ordering::SeqCst);
        let result = write();
        match (&result, keep) {
            (Ok(_), Some(entry)) => self.hold(entry, now),
            _ => self.forget(key),
        }
        self.forget_if_invalidated(key, generation);
        result
    }
}

impl<B: MetadataBackend> MetadataBackend for MemLayer<B> {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    fn get(&self, key: &CacheKey) -> Result<Option<Entry>> {
        Ok(self.get_shared(key)?.map(SharedEntry::into_entry))
    }

    fn get_shared(&self, key: &CacheKey) -> Result<Option<Arc<SharedEntry>>> {
        if !self.config.enabled {
            return self.backend.get_shared(key);
        }
        let now = self.clock.now_ms();
        if !self.check_version(now)? {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return self.backend.get_shared(key);
        }
        if let Some(held) = self.held.get(key)
            && now.saturating_sub(held.read_at) < self.ttl_ms
        {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(held.entry));
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        self.fill(key, now)
    }

    fn put(&self, entry: Entry) -> Result<Option<Entry>> {
        if !self.config.enabled {
            return self.backend.put(entry);
        }
        let key = entry.key;
        let copy = Arc::new(SharedEntry::new(entry.clone()));
        self.write_through(&key, Some(copy), || self.backend.put(entry))
    }

    fn remove(&self, key: &CacheKey) -> Result<Option<Entry>> {
        if !self.config.enabled {
            return self.backend.remove(key);
        }
        self.write_through(key, None, || self.backend.remove(key))
    }

    fn touch(&self, batch: &AccessBatch) -> Result<()> {
        if !self.config.enabled || batch.touches.is_empty() {
            return self.backend.touch(batch);
        }
        // Every stripe stays locked while the backend applies the batch and the
        // copies are updated, so no fill can read an entry before the touch and
        // keep it after (or read it after and have the touch counted twice).
        let _stripes: Vec<MutexGuard<'_, ()>> =
            self.stripes.iter().map(lock_ignoring_poison).collect();
        let result = self.backend.touch(batch);
        for touch in &batch.touches {
            if result.is_err() {
                // The backend may have applied part of it: drop what may differ.
                self.forget(&touch.key);
                continue;
            }
            // In place (cloned only if a reader still shares the copy), and the
            // weight (`bytes`) stays as it was. A vacant key yields a placeholder
            // guard, dropped at once.
            drop(self.held.entry(&touch.key, None, |_, held| {
                let entry = SharedEntry::make_mut(&mut held.entry);
                entry.accessed_at = entry.accessed_at.max(touch.accessed_at);
                entry.access_count = entry.access_count.saturating_add(touch.count);
                EntryAction::Retain(())
            }));
        }
        result
    }

    fn scan(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
    ) -> Result<()> {
        self.backend.scan(filter, visit)
    }

    fn scan_listed(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(ListedEntry) -> ControlFlow<()>,
    ) -> Result<()> {
        self.backend.scan_listed(filter, visit)
    }

    fn len(&self) -> Result<u64> {
        self.backend.len()
    }

    fn is_empty(&self) -> Result<bool> {
        self.backend.is_empty()
    }

    fn total_size(&self) -> Result<u64> {
        self.backend.total_size()
    }

    fn stats(&self) -> Result<BackendStats> {
        self.backend.stats()
    }

    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Entry>> {
        self.backend.expired(now_ms, limit)
    }

    fn eviction_candidates(
        &self,
        policy: EvictionPolicy,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        self.backend.eviction_candidates(policy, now_ms, limit)
    }

    fn remove_if_unchanged(&self, expected: &Entry) -> Result<Option<Entry>> {
        if !self.config.enabled {
            return self.backend.remove_if_unchanged(expected);
        }
        self.write_through(&expected.key, None, || {
            self.backend.remove_if_unchanged(expected)
        })
    }

    fn clear(&self) -> Result<Vec<Entry>> {
        let result = self.backend.clear();
        self.invalidate_all();
        result
    }

    fn unreadable(&self, visit: &mut dyn FnMut(CacheKey, String)) -> Result<()> {
        self.backend.unreadable(visit)
    }

    fn remove_unreadable(&self, key: &CacheKey) -> Result<bool> {
        // An unreadable entry was never served, so the layer holds none of it.
        self.backend.remove_unreadable(key)
    }

    fn flush(&self) -> Result<()> {
        self.backend.flush()
    }

    fn data_version(&self) -> Result<Option<u64>> {
        self.backend.data_version()
    }

    fn layer_stats(&self) -> Option<LayerStats> {
        self.config.enabled.then(|| self.layer_counters())
    }

    fn inline_lost(&self) -> InlineLoss {
        self.backend.inline_lost()
    }
}

impl<B: fmt::Debug> fmt::Debug for MemLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemLayer")
            .field("backend", &self.backend)
            .field("config", &self.config)
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

fn new_held_cache(capacity: Capacity, counters: &Arc<LayerCounters>) -> HeldCache {
    let (options, weighter) = options_for(capacity, ASSUMED_ENTRY_BYTES);
    QuickCache::with_options(
        options,
        weighter,
        DefaultHashBuilder::default(),
        EvictionAccounting(Arc::clone(counters)),
    )
}

/// `Some(v)` as `v + 1`, so that 0 can mean unknown. A backend reporting
/// `u64::MAX` wraps to "unknown" and merely gets every copy dropped at each check.
fn encode_version(version: Option<u64>) -> u64 {
    version.map_or(VERSION_UNKNOWN, |version| version.wrapping_add(1))
}

fn weight_i64(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

fn lock_ignoring_poison(stripe: &Mutex<()>) -> MutexGuard<'_, ()> {
    // The mutex guards no data, so a panic while it was held leaves nothing broken.
    stripe
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// About how many bytes an entry takes in memory: the struct and what it owns.
fn entry_bytes(entry: &Entry) -> u64 {
    let location = match &entry.location {
        Location::Inline(bytes) => bytes.len(),
        Location::Blob(name) => name.len(),
    };
    let params = entry
        .params
        .as_ref()
        .map_or(0, |params| params.encode().len());
    let metadata: usize = entry
        .user_metadata
        .iter()
        .map(|(name, value)| name.len() + json_bytes(value))
        .sum();
    let owned = entry.prefix.len()
        + entry.description.len()
        + entry.type_tag.len()
        + entry.codec.len()
        + entry.signature.as_ref().map_or(0, String::len)
        + location
        + params
        + metadata;
    (size_of::<Held>() + size_of::<CacheKey>() + owned) as u64
}

fn json_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    size_of::<Value>()
        + match value {
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
            Value::String(text) => text.len(),
            Value::Array(items) => items.iter().map(json_bytes).sum(),
            Value::Object(fields) => fields
                .iter()
                .map(|(name, value)| name.len() + json_bytes(value))
                .sum(),
        }
}

/// Whole milliseconds of a duration, saturating at `u64::MAX`.
fn whole_ms(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
