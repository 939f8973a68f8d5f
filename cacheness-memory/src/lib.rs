//! The `memory` metadata backend of cacheness: entries in a [`DashMap`] in this
//! process. The fastest backend, for temporary caches: nothing survives the
//! process and no other process can see it.
//!
//! Values small enough live inline in the entries, so a cache over this backend
//! without a directory holds everything in memory:
//!
//! ```
//! use cacheness_core::{Cache, key};
//! use cacheness_memory::MemoryBackend;
//!
//! let cache = Cache::builder().open(MemoryBackend::new())?;
//! cache.put(&key!(user = 42), &"Ada")?;
//! assert_eq!(cache.get::<String>(&key!(user = 42))?.as_deref(), Some("Ada"));
//! # Ok::<(), cacheness_core::Error>(())
//! ```

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cacheness_core::EvictionPolicy;
use cacheness_core::{
    AccessBatch, BackendStats, CacheKey, Capabilities, Counters, Entry, ListedEntry,
    MetadataBackend, Result, ScanFilter, SharedEntry,
};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;

/// Entries in a concurrent hash map; every operation is atomic for its key.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    entries: DashMap<CacheKey, Arc<SharedEntry>>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        MemoryBackend::default()
    }

    fn counters(&self) -> Counters {
        Counters {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// Matching entries in ascending key order. A hash map has no order, so scans
    /// collect and sort: fine for the sizes an in-process cache holds. Only the
    /// keys and shared handles are sorted; a scan copies an entry out when it
    /// visits it, a listing shares it.
    fn sorted(&self, filter: &ScanFilter) -> Vec<(CacheKey, Arc<SharedEntry>)> {
        let mut matching: Vec<(CacheKey, Arc<SharedEntry>)> = self
            .entries
            .iter()
            .filter(|item| filter.matches(item.value()))
            .map(|item| (*item.key(), Arc::clone(item.value())))
            .collect();
        matching.sort_unstable_by_key(|(key, _)| *key);
        matching
    }
}

impl MetadataBackend for MemoryBackend {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default().counters(true)
    }

    fn get(&self, key: &CacheKey) -> Result<Option<Entry>> {
        Ok(self
            .entries
            .get(key)
            .map(|entry| entry.value().entry().clone()))
    }

    fn get_shared(&self, key: &CacheKey) -> Result<Option<Arc<SharedEntry>>> {
        Ok(self.entries.get(key).map(|entry| Arc::clone(entry.value())))
    }

    fn put(&self, entry: Entry) -> Result<Option<Entry>> {
        Ok(self
            .entries
            .insert(entry.key, Arc::new(SharedEntry::new(entry)))
            .map(SharedEntry::into_entry))
    }

    fn remove(&self, key: &CacheKey) -> Result<Option<Entry>> {
        Ok(self
            .entries
            .remove(key)
            .map(|(_, entry)| SharedEntry::into_entry(entry)))
    }

    fn touch(&self, batch: &AccessBatch) -> Result<()> {
        for touch in &batch.touches {
            if let Some(mut shared) = self.entries.get_mut(&touch.key) {
                // Cloned only if a reader still shares this version.
                let entry = SharedEntry::make_mut(shared.value_mut());
                entry.accessed_at = entry.accessed_at.max(touch.accessed_at);
                entry.access_count = entry.access_count.saturating_add(touch.count);
            }
        }
        self.hits.fetch_add(batch.counters.hits, Ordering::Relaxed);
        self.misses
            .fetch_add(batch.counters.misses, Ordering::Relaxed);
        self.evictions
            .fetch_add(batch.counters.evictions, Ordering::Relaxed);
        Ok(())
    }

    fn scan(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
    ) -> Result<()> {
        self.scan_listed(filter, &mut |listed| visit(listed.entry().clone()))
    }

    fn scan_listed(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(ListedEntry) -> ControlFlow<()>,
    ) -> Result<()> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        for (_, entry) in self.sorted(filter).into_iter().take(limit) {
            if visit(ListedEntry::from(entry)).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn len(&self) -> Result<u64> {
        Ok(self.entries.len() as u64)
    }

    fn is_empty(&self) -> Result<bool> {
        Ok(self.entries.is_empty())
    }

    fn total_size(&self) -> Result<u64> {
        Ok(self.entries.iter().map(|entry| entry.stored_size).sum())
    }

    fn stats(&self) -> Result<BackendStats> {
        Ok(BackendStats {
            entries: self.entries.len() as u64,
            total_size: self.total_size()?,
            counters: self.counters(),
        })
    }

    fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Entry>> {
        Ok(self
            .entries
            .iter()
            .filter(|entry| entry.is_expired(now_ms))
            .take(limit)
            .map(|entry| entry.value().entry().clone())
            .collect())
    }

    /// Sorts the shared handles, not copies: only the candidates are copied.
    fn eviction_candidates(
        &self,
        policy: EvictionPolicy,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let all: Vec<Arc<SharedEntry>> = self
            .entries
            .iter()
            .map(|item| Arc::clone(item.value()))
            .collect();
        Ok(policy
            .select(now_ms, limit, all, |shared| shared.entry())
            .iter()
            .map(|shared| shared.entry().clone())
            .collect())
    }

    fn remove_if_unchanged(&self, expected: &Entry) -> Result<Option<Entry>> {
        // The shard lock held by `entry` makes the compare and the removal one step.
        match self.entries.entry(expected.key) {
            MapEntry::Occupied(current) if current.get().same_version(expected) => {
                Ok(Some(SharedEntry::into_entry(current.remove())))
            }
            _ => Ok(None),
        }
    }

    fn data_version(&self) -> Result<Option<u64>> {
        // Only handles of this very map can write to it: nothing changes elsewhere.
        Ok(Some(0))
    }

    fn clear(&self) -> Result<Vec<Entry>> {
        let keys: Vec<CacheKey> = self.entries.iter().map(|entry| entry.key).collect();
        Ok(keys
            .iter()
            .filter_map(|key| {
                self.entries
                    .remove(key)
                    .map(|(_, entry)| SharedEntry::into_entry(entry))
            })
            .collect())
    }
}
