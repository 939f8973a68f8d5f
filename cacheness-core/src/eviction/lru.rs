//! Least recently used (`"lru"`, the default): the entry read longest ago goes
//! first.
//!
//! "Read" is what the engine records in `accessed_at`: a put sets it, and a read
//! moves it, at most once per access granularity per key
//! (`CacheBuilder::access_granularity`, 60 s by default).

use std::cmp::Ordering;

use crate::entry::Entry;

/// Earlier `accessed_at` first.
pub(super) fn compare(a: &Entry, b: &Entry) -> Ordering {
    a.accessed_at.cmp(&b.accessed_at)
}
