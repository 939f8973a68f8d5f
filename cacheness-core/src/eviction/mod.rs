//! Eviction policies: which entries the size limit removes first.
//!
//! Past its `max_size` a cache evicts down to the low watermark, taking entries
//! in the order a backend's
//! [`eviction_candidates`](crate::MetadataBackend::eviction_candidates) gives for
//! the cache's [`EvictionPolicy`]. That order is owned here, by
//! [`EvictionPolicy::compare`]:
//!
//! 1. **expired entries first**, whatever the policy, the soonest expired first:
//!    they are served to no one;
//! 2. then live entries in the policy's order: [`lru`] (least recently used, the
//!    default), [`lrs`] (least recently stored) or [`lfu`] (least frequently
//!    used), each in a file of its own;
//! 3. ties by key.
//!
//! Backends that sort in memory use [`EvictionPolicy::select`]; a backend that
//! answers with a query (SQLite's indexed `ORDER BY`) gives the same order, which
//! the conformance suite checks against [`EvictionPolicy::compare`].
//!
//! A policy is named in configuration by a short name (`"lru"`, `"lrs"`,
//! `"lfu"`), which [`FromStr`] parses and [`Display`](fmt::Display) shows:
//!
//! ```
//! use cacheness_core::EvictionPolicy;
//!
//! let policy: EvictionPolicy = "lfu".parse()?;
//! assert_eq!(policy, EvictionPolicy::Lfu);
//! assert_eq!(policy.to_string(), "lfu");
//! assert_eq!(EvictionPolicy::default(), EvictionPolicy::Lru);
//! assert!("random".parse::<EvictionPolicy>().is_err());
//! # Ok::<(), cacheness_core::eviction::UnknownPolicy>(())
//! ```

pub mod lfu;
pub mod lrs;
pub mod lru;

use std::cmp::Ordering;
use std::fmt;
use std::ops::ControlFlow;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::backend::{MetadataBackend, ScanFilter};
use crate::entry::Entry;
use crate::error::Result;

/// Which live entries a cache evicts first when it is over its size limit
/// (expired entries always go before them); see the [module](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EvictionPolicy {
    /// Least recently used (`"lru"`): the entry read longest ago ([`lru`]).
    #[default]
    Lru,
    /// Least recently stored (`"lrs"`): the entry put longest ago, reads or not
    /// ([`lrs`]).
    Lrs,
    /// Least frequently used (`"lfu"`): the entry read the fewest times, ties by
    /// least recently used ([`lfu`]).
    Lfu,
}

impl EvictionPolicy {
    /// Every policy, the default first.
    pub const ALL: [EvictionPolicy; 3] = [
        EvictionPolicy::Lru,
        EvictionPolicy::Lrs,
        EvictionPolicy::Lfu,
    ];

    /// The policy's short name in configuration: `"lru"`, `"lrs"` or `"lfu"`.
    pub const fn name(self) -> &'static str {
        match self {
            EvictionPolicy::Lru => "lru",
            EvictionPolicy::Lrs => "lrs",
            EvictionPolicy::Lfu => "lfu",
        }
    }

    /// The eviction order at `now_ms`: `Less` if `a` goes before `b`. Expired
    /// entries first (soonest expired first), then live ones in the policy's
    /// order, ties by key. Distinct keys never compare equal.
    pub fn compare(self, a: &Entry, b: &Entry, now_ms: u64) -> Ordering {
        let expired_at = |entry: &Entry| entry.expires_at.filter(|_| entry.is_expired(now_ms));
        match (expired_at(a), expired_at(b)) {
            (Some(a_at), Some(b_at)) => a_at.cmp(&b_at),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => self.compare_live(a, b),
        }
        .then_with(|| a.key.cmp(&b.key))
    }

    /// The policy's own order of two live entries, without the tie by key.
    fn compare_live(self, a: &Entry, b: &Entry) -> Ordering {
        match self {
            EvictionPolicy::Lru => lru::compare(a, b),
            EvictionPolicy::Lrs => lrs::compare(a, b),
            EvictionPolicy::Lfu => lfu::compare(a, b),
        }
    }

    /// The first `limit` of `items` in the eviction order at `now_ms`
    /// ([`compare`](Self::compare)), in that order; `entry` gives each item's
    /// entry. For backends that hold their entries in memory: only the
    /// candidates are sorted, not every item.
    pub fn select<T>(
        self,
        now_ms: u64,
        limit: usize,
        mut items: Vec<T>,
        entry: impl Fn(&T) -> &Entry,
    ) -> Vec<T> {
        let order = |a: &T, b: &T| self.compare(entry(a), entry(b), now_ms);
        if limit == 0 {
            return Vec::new();
        }
        if limit < items.len() {
            items.select_nth_unstable_by(limit - 1, order);
            items.truncate(limit);
        }
        items.sort_unstable_by(order);
        items
    }
}

/// The first `limit` entries of `backend` in `policy`'s eviction order at
/// `now_ms`, by a scan of every entry: the default of
/// [`MetadataBackend::eviction_candidates`], for backends that override it for
/// some policies only.
pub fn candidates_by_scan<B: MetadataBackend + ?Sized>(
    backend: &B,
    policy: EvictionPolicy,
    now_ms: u64,
    limit: usize,
) -> Result<Vec<Entry>> {
    let mut all = Vec::new();
    if limit == 0 {
        return Ok(all);
    }
    backend.scan(&ScanFilter::all(), &mut |entry| {
        all.push(entry);
        ControlFlow::Continue(())
    })?;
    Ok(policy.select(now_ms, limit, all, |entry| entry))
}

impl fmt::Display for EvictionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EvictionPolicy {
    type Err = UnknownPolicy;

    /// Parses a short name (`"lru"`, `"lrs"`, `"lfu"`), in any case, with
    /// surrounding whitespace ignored (config files and the environment alike).
    fn from_str(name: &str) -> Result<Self, UnknownPolicy> {
        EvictionPolicy::ALL
            .into_iter()
            .find(|policy| policy.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| UnknownPolicy {
                name: name.to_owned(),
            })
    }
}

impl Serialize for EvictionPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for EvictionPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A name that is not an [`EvictionPolicy`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown eviction policy `{name}` (known: {known})", known = known_names())]
pub struct UnknownPolicy {
    /// The name given.
    pub name: String,
}

/// The names of every policy, for messages: "lru, lrs, lfu".
fn known_names() -> String {
    EvictionPolicy::ALL.map(EvictionPolicy::name).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Compression, ContentHash, Location};
    use crate::key::CacheKey;

    fn entry(key: u8, accessed_at: u64) -> Entry {
        Entry {
            key: CacheKey::from_bytes([key; 16]),
            prefix: String::new(),
            description: String::new(),
            type_tag: String::new(),
            codec: "raw".into(),
            params: None,
            created_at: 0,
            accessed_at,
            expires_at: None,
            access_count: 0,
            stored_size: 0,
            raw_size: 0,
            compression: Compression::None,
            content_hash: ContentHash::of(&[]),
            location: Location::Inline(Vec::new()),
            signature: None,
            user_metadata: Default::default(),
        }
    }

    #[test]
    fn names_round_trip_and_an_unknown_name_is_refused() {
        for policy in EvictionPolicy::ALL {
            assert_eq!(policy.name().parse(), Ok(policy));
            assert_eq!(policy.to_string().to_uppercase().parse(), Ok(policy));
            let json = serde_json::to_string(&policy).unwrap();
            assert_eq!(json, format!("\"{}\"", policy.name()));
            assert_eq!(
                serde_json::from_str::<EvictionPolicy>(&json).unwrap(),
                policy
            );
        }
        let unknown = "arc".parse::<EvictionPolicy>().unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "unknown eviction policy `arc` (known: lru, lrs, lfu)"
        );
        assert_eq!(
            serde_json::from_str::<EvictionPolicy>("\" LFU \"").unwrap(),
            EvictionPolicy::Lfu
        );
        let from_config = serde_json::from_str::<EvictionPolicy>("\"fifo\"").unwrap_err();
        assert!(
            from_config
                .to_string()
                .contains("unknown eviction policy `fifo`"),
            "{from_config}"
        );
    }

    #[test]
    fn select_gives_the_first_candidates_in_order() {
        let entries: Vec<Entry> = (0..20u8)
            .map(|key| entry(key, u64::from((key * 7) % 20)))
            .collect();
        let mut all = entries.clone();
        all.sort_by(|a, b| EvictionPolicy::Lru.compare(a, b, 0));
        for limit in [0, 1, 5, 20, 30] {
            let selected = EvictionPolicy::Lru.select(0, limit, entries.clone(), |entry| entry);
            assert_eq!(selected, all[..limit.min(20)], "limit {limit}");
        }
    }
}
