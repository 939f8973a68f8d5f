//! Least recently stored (`"lrs"`): the entry put longest ago goes first,
//! however often it was read since (first in, first out).
//!
//! A put that replaces an entry stores it anew: its `created_at` moves.

use std::cmp::Ordering;

use crate::entry::Entry;

/// Earlier `created_at` first.
pub(super) fn compare(a: &Entry, b: &Entry) -> Ordering {
    a.created_at.cmp(&b.created_at)
}
