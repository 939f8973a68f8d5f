//! The options of a cache and of its operations, and their limits and defaults.

use std::time::Duration;

#[cfg(doc)]
use super::Cache;
use crate::backend::LayerStats;
use crate::entry::UserMetadata;
use crate::key::CacheKey;

/// The longest description a put accepts, in bytes. With the other limits
/// ([`MAX_USER_METADATA_LEN`], [`MAX_PARAMS_LEN`](crate::key::MAX_PARAMS_LEN),
/// [`MAX_NESTING`](crate::key::MAX_NESTING), a prefix of at most 255 bytes) it
/// keeps a blob file's header (which also carries the description, escaped as
/// JSON: at most six bytes per byte) far below the 64 MiB its reader accepts.
pub const MAX_DESCRIPTION_LEN: usize = 64 << 10;
/// The most bytes an entry's user metadata may take as JSON, checked at put.
/// Its nesting is limited to [`MAX_NESTING`](crate::key::MAX_NESTING) levels,
/// the object itself not counted.
pub const MAX_USER_METADATA_LEN: usize = 1 << 20;

/// Values up to this many stored bytes live inline in the entry by default.
pub const DEFAULT_INLINE_THRESHOLD: usize = 4 * 1024;
/// A read records an access only when the entry's recorded access is at least this
/// old, by default. Recording is a write to the backend (for SQLite a random page);
/// LRU eviction does not need millisecond recency.
pub const DEFAULT_ACCESS_GRANULARITY: Duration = Duration::from_secs(60);
/// The size limit evicts down to this fraction of the limit by default.
pub const DEFAULT_LOW_WATERMARK: f64 = 0.8;

/// When an entry stops being served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiry {
    /// The cache's default TTL.
    #[default]
    Default,
    /// Never, whatever the default.
    Never,
    /// This long after it is stored.
    After(Duration),
}

/// Options of one put; see [`Cache::put_with`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct PutOptions {
    /// When the entry expires.
    pub expiry: Expiry,
    /// Free text describing the value.
    pub description: String,
    /// A namespace label: no `/`, `\`, `..` or NUL, at most 255 bytes.
    pub prefix: String,
    /// Free user metadata.
    pub user_metadata: UserMetadata,
}

impl PutOptions {
    /// The defaults: the cache's TTL, no description, no prefix.
    pub fn new() -> Self {
        PutOptions::default()
    }

    /// Expire this long after the put.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.expiry = Expiry::After(ttl);
        self
    }

    /// Never expire.
    pub fn no_expiry(mut self) -> Self {
        self.expiry = Expiry::Never;
        self
    }

    /// Describe the value.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// File the entry under a prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Attach a user metadata field.
    pub fn metadata(
        mut self,
        name: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.user_metadata.insert(name.into(), value.into());
        self
    }
}

/// Options of one get; see [`Cache::get_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetOptions {
    /// Treat entries older than this (since their put) as missing.
    pub max_age: Option<Duration>,
}

impl GetOptions {
    /// The defaults: any age.
    pub fn new() -> Self {
        GetOptions::default()
    }

    /// Only accept entries stored at most `max_age` ago.
    pub fn max_age(max_age: Duration) -> Self {
        GetOptions {
            max_age: Some(max_age),
        }
    }
}

/// Which entries [`Cache::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListOptions {
    /// Only entries with this prefix.
    pub prefix: Option<String>,
    /// Only entries whose key comes after this one: pass the last key of a page to
    /// get the next.
    pub after: Option<CacheKey>,
    /// At most this many entries.
    pub limit: Option<usize>,
    /// Also list entries that have expired but were not yet cleaned up.
    pub include_expired: bool,
}

impl ListOptions {
    /// Every live entry, in key order.
    pub fn new() -> Self {
        ListOptions::default()
    }

    /// Only entries filed under `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Only entries whose key comes after `key` (the last key of a page).
    pub fn after(mut self, key: CacheKey) -> Self {
        self.after = Some(key);
        self
    }

    /// At most `limit` entries.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Also entries that have expired but were not yet cleaned up.
    pub fn include_expired(mut self, include: bool) -> Self {
        self.include_expired = include;
        self
    }
}

/// Statistics of a cache.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Number of entries (expired ones not yet cleaned up included).
    pub entries: u64,
    /// Stored bytes of all entries.
    pub total_size: u64,
    /// The size limit, if any.
    pub max_size: Option<u64>,
    /// Gets that returned a value.
    pub hits: u64,
    /// Gets that found nothing usable.
    pub misses: u64,
    /// Entries removed by the size limit.
    pub evictions: u64,
    /// The memory layer's own statistics, when the backend has one in front.
    pub layer: Option<LayerStats>,
}

impl Stats {
    /// Hits over all gets; 0 when there were none.
    pub fn hit_ratio(&self) -> f64 {
        let gets = self.hits + self.misses;
        if gets == 0 {
            0.0
        } else {
            self.hits as f64 / gets as f64
        }
    }
}
