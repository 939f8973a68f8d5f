//! Least recently used (`"lru"`, the default): the entry read longest ago goes
//! first.
//!
//! "Read" is what the engine records in `accessed_at`: a put sets it, and a read
//! moves it, written to the backend at most once per access granularity per key
//! (`CacheBuilder::access_granularity`, 60 s by default). The reads a cache
//! holds back in between are written before it evicts, so its evictions see
//! every read it served; reads served by other processes count at the
//! granularity.

use std::cmp::Ordering;

use crate::entry::Entry;

/// Earlier `accessed_at` first.
pub(super) fn compare(a: &Entry, b: &Entry) -> Ordering {
    a.accessed_at.cmp(&b.accessed_at)
}
