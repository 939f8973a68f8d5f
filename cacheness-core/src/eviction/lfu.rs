//! Least frequently used (`"lfu"`): the entry read the fewest times goes first,
//! and of entries read as often, the least recently used.
//!
//! The count is `access_count`, the reads the engine recorded since the entry
//! was stored (see [`lru`] for how reads are recorded). A put that
//! replaces an entry starts its count at zero, so a new entry is the first
//! candidate until it is read: pair this policy with a size limit that leaves
//! new entries time to be read.

use std::cmp::Ordering;

use super::lru;
use crate::entry::Entry;

/// Lower `access_count` first, then [`lru`]'s order.
pub(super) fn compare(a: &Entry, b: &Entry) -> Ordering {
    a.access_count
        .cmp(&b.access_count)
        .then_with(|| lru::compare(a, b))
}
