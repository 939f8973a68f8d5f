//! The size limit (eviction to the low watermark) and expiry cleanup.

use std::sync::atomic::Ordering;

use super::{Cache, REMOVAL_BATCH};
use crate::codec::Codec;
use crate::error::Result;
use crate::key::CacheKey;

/// With a size limit, the exact total is re-read from the backend every this many
/// puts, so writes by other processes are noticed.
const SIZE_RESYNC_PUTS: u64 = 256;

impl<C: Codec> Cache<C> {
    /// Removes every expired entry and its blob; how many.
    pub fn cleanup_expired(&self) -> Result<u64> {
        self.check_writable("clean up expired entries")?;
        let now = self.clock.now_ms();
        let mut removed = 0;
        loop {
            let batch = self.backend.expired(now, REMOVAL_BATCH)?;
            let mut removed_in_batch = 0;
            for entry in &batch {
                if let Some(gone) = self.backend.remove_if_unchanged(entry)? {
                    self.delete_blob(&gone);
                    removed_in_batch += 1;
                }
            }
            removed += removed_in_batch;
            // A batch where every entry changed under us means others are at work;
            // stop rather than spin.
            if batch.len() < REMOVAL_BATCH || removed_in_batch == 0 {
                return Ok(removed);
            }
        }
    }

    /// Evicts down to the low watermark if the cache is over its size limit now;
    /// how many entries went.
    pub(crate) fn enforce_limit_now(&self) -> Result<u64> {
        self.check_writable("evict")?;
        let Some(limit) = self.settings.max_size else {
            return Ok(0);
        };
        let total = self.backend.total_size()?;
        self.approx_total_size.store(total, Ordering::Relaxed);
        if total <= limit {
            return Ok(0);
        }
        let before = self.session.evictions.load(Ordering::Relaxed);
        self.evict_to_low_watermark(total, limit, None)?;
        Ok(self.session.evictions.load(Ordering::Relaxed) - before)
    }

    pub(super) fn enforce_size_limit(
        &self,
        just_put: CacheKey,
        added: u64,
        removed: u64,
    ) -> Result<()> {
        let Some(limit) = self.settings.max_size else {
            return Ok(());
        };
        let estimate = self
            .approx_total_size
            .fetch_add(added, Ordering::Relaxed)
            .saturating_add(added)
            .saturating_sub(removed);
        self.approx_total_size.store(estimate, Ordering::Relaxed);
        let puts = self.puts_since_resync.fetch_add(1, Ordering::Relaxed) + 1;
        if estimate <= limit && !puts.is_multiple_of(SIZE_RESYNC_PUTS) {
            return Ok(());
        }
        let total = self.backend.total_size()?;
        self.approx_total_size.store(total, Ordering::Relaxed);
        if total > limit {
            self.evict_to_low_watermark(total, limit, Some(just_put))?;
        }
        Ok(())
    }

    /// Evicts entries in the configured policy's order (expired ones first)
    /// until the stored total is at most the low watermark, sparing the entry
    /// just put.
    fn evict_to_low_watermark(
        &self,
        mut total: u64,
        limit: u64,
        spare: Option<CacheKey>,
    ) -> Result<()> {
        // Reads not yet written, held back by the granularity included, would
        // make recently used entries look cold.
        self.flush_every_read()?;
        let target = (limit as f64 * self.settings.low_watermark) as u64;
        let mut evicted = 0u64;
        'batches: while total > target {
            let candidates = self.backend.eviction_candidates(
                self.settings.eviction,
                self.clock.now_ms(),
                REMOVAL_BATCH,
            )?;
            let mut removed_in_batch = 0;
            for candidate in candidates.iter().filter(|entry| Some(entry.key) != spare) {
                if total <= target {
                    break 'batches;
                }
                if let Some(gone) = self.backend.remove_if_unchanged(candidate)? {
                    self.delete_blob(&gone);
                    total = total.saturating_sub(gone.stored_size);
                    removed_in_batch += 1;
                    evicted += 1;
                }
            }
            if removed_in_batch == 0 {
                break;
            }
        }
        self.approx_total_size.store(total, Ordering::Relaxed);
        if evicted > 0 {
            self.session.evictions.fetch_add(evicted, Ordering::Relaxed);
            self.lock_pending().counters.evictions += evicted;
            tracing::debug!(
                evicted,
                total,
                limit,
                "evicted entries to the low watermark"
            );
        }
        Ok(())
    }
}
