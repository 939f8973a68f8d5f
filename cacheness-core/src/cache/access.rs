//! Reads recorded in memory and written to the backend in batches.
//!
//! A read is written at most once per access granularity per key: reads closer
//! to the key's recorded access than that are *held back*. Held-back reads are
//! written only before an eviction, so the size limit orders by every read this
//! cache served (a key read after every put of a cache that turns over within
//! one granularity is the most recently used, not the oldest), while a cache
//! that does not evict never writes them. A cache without a size limit holds
//! none back.

use std::collections::HashMap;
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;

use super::Cache;
use crate::backend::{AccessBatch, Counters, Touch};
use crate::codec::Codec;
use crate::error::Result;
use crate::key::CacheKey;

/// Buffered reads are written to the backend after this many distinct keys...
const FLUSH_MAX_TOUCHES: usize = 4096;
/// ...or once this much time has passed since the last write.
const FLUSH_INTERVAL_MS: u64 = 1_000;
/// Held-back reads are remembered for at most this many keys; reads of further
/// keys count at the granularity alone until the next eviction writes them.
const HELD_BACK_MAX_KEYS: usize = 16 * 1024;

/// A key's reads not yet written: the latest read's time and how many.
type Reads = HashMap<CacheKey, (u64, u64)>;

#[derive(Debug, Default)]
pub(super) struct PendingAccess {
    /// Reads to write at the next flush.
    pub(super) touches: Reads,
    /// Reads within the granularity of the key's recorded access, written only
    /// before an eviction.
    pub(super) held_back: Reads,
    pub(super) counters: Counters,
    pub(super) last_flush_ms: u64,
}

impl<C: Codec> Cache<C> {
    /// Writes buffered reads to the backend and flushes it (nothing, on a
    /// read-only cache).
    pub fn flush(&self) -> Result<()> {
        if self.settings.read_only {
            return Ok(());
        }
        self.flush_access()?;
        self.backend.flush()
    }

    pub(super) fn lock_pending(&self) -> MutexGuard<'_, PendingAccess> {
        // The pending batch holds plain counters; a panic elsewhere cannot leave it
        // inconsistent, so a poisoned lock is still usable.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn record_hit(&self, key: CacheKey, now: u64, recorded_access: u64) {
        self.session.hits.fetch_add(1, Ordering::Relaxed);
        let record_access = !self.settings.read_only
            && now >= recorded_access.saturating_add(self.settings.access_granularity_ms);
        let due = {
            let mut pending = self.lock_pending();
            if record_access {
                add_read(&mut pending.touches, key, now, 1);
            } else if self.settings.max_size.is_some()
                && !self.settings.read_only
                && (pending.held_back.len() < HELD_BACK_MAX_KEYS
                    || pending.held_back.contains_key(&key))
            {
                add_read(&mut pending.held_back, key, now, 1);
            }
            pending.counters.hits += 1;
            !self.settings.read_only
                && (pending.touches.len() >= FLUSH_MAX_TOUCHES
                    || now.saturating_sub(pending.last_flush_ms) >= FLUSH_INTERVAL_MS)
        };
        if due {
            self.flush_access_logged();
        }
    }

    pub(super) fn record_miss(&self, now: u64) {
        self.session.misses.fetch_add(1, Ordering::Relaxed);
        let due = {
            let mut pending = self.lock_pending();
            pending.counters.misses += 1;
            !self.settings.read_only
                && now.saturating_sub(pending.last_flush_ms) >= FLUSH_INTERVAL_MS
        };
        if due {
            self.flush_access_logged();
        }
    }

    fn flush_access_logged(&self) {
        if let Err(error) = self.flush_access() {
            tracing::warn!(%error, "could not record cache reads");
        }
    }

    pub(super) fn flush_access(&self) -> Result<()> {
        self.write_reads(false)
    }

    /// Writes buffered reads and the held-back ones: every read this cache
    /// served, for an eviction to order by.
    pub(super) fn flush_every_read(&self) -> Result<()> {
        self.write_reads(true)
    }

    fn write_reads(&self, with_held_back: bool) -> Result<()> {
        if self.settings.read_only {
            // Reads of a read-only cache are counted in this process only.
            return Ok(());
        }
        let batch = {
            let mut pending = self.lock_pending();
            pending.last_flush_ms = self.clock.now_ms();
            if with_held_back {
                let PendingAccess {
                    touches, held_back, ..
                } = &mut *pending;
                for (key, (accessed_at, count)) in held_back.drain() {
                    add_read(touches, key, accessed_at, count);
                }
            }
            AccessBatch {
                touches: pending
                    .touches
                    .drain()
                    .map(|(key, (accessed_at, count))| Touch {
                        key,
                        accessed_at,
                        count,
                    })
                    .collect(),
                counters: std::mem::take(&mut pending.counters),
            }
        };
        if batch.is_empty() {
            return Ok(());
        }
        self.backend.touch(&batch)
    }
}

/// Adds `count` reads of `key`, the latest at `accessed_at`, to `reads`.
fn add_read(reads: &mut Reads, key: CacheKey, accessed_at: u64, count: u64) {
    let read = reads.entry(key).or_insert((accessed_at, 0));
    read.0 = read.0.max(accessed_at);
    read.1 += count;
}
