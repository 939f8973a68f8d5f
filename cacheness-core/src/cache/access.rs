//! Reads recorded in memory and written to the backend in batches.

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

#[derive(Debug, Default)]
pub(super) struct PendingAccess {
    pub(super) touches: HashMap<CacheKey, (u64, u64)>,
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
                let touch = pending.touches.entry(key).or_insert((now, 0));
                touch.0 = touch.0.max(now);
                touch.1 += 1;
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
        if self.settings.read_only {
            // Reads of a read-only cache are counted in this process only.
            return Ok(());
        }
        let batch = {
            let mut pending = self.lock_pending();
            pending.last_flush_ms = self.clock.now_ms();
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
