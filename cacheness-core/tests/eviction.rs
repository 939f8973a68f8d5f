//! Eviction through the engine: which entries the size limit removes under each
//! policy, with reads recorded at the default granularity.

use std::time::Duration;

use cacheness_core::{Cache, CacheKey, EvictionPolicy, ManualClock, PutOptions, ToKey, key};
use cacheness_memory::MemoryBackend;

/// The stored size of every value these tests put.
const VALUE_LEN: usize = 100;

/// Incompressible bytes (so stored sizes are exactly [`VALUE_LEN`]).
fn noise(seed: u64) -> Vec<u8> {
    let mut bytes = vec![0; VALUE_LEN];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut bytes);
    bytes
}

/// A cache over the memory backend that holds `entries` values of
/// [`VALUE_LEN`] bytes, on a manual clock, at the default access granularity,
/// evicting by `policy`.
fn cache_with(entries: u64, clock: &ManualClock, policy: EvictionPolicy) -> Cache {
    Cache::builder()
        .clock(clock.clone())
        .max_size(entries * VALUE_LEN as u64)
        .eviction(policy)
        .open(MemoryBackend::new())
        .unwrap()
}

/// Which of `keys` the cache holds no more.
fn gone(cache: &Cache, keys: impl IntoIterator<Item = u64>) -> Vec<u64> {
    keys.into_iter()
        .filter(|index| !cache.contains(&key!(index = *index)).unwrap())
        .collect()
}

/// Puts `key!(index = index)` for each index, 100 ms apart.
fn put_each(cache: &Cache, clock: &ManualClock, indexes: impl IntoIterator<Item = u64>) {
    for index in indexes {
        clock.advance(Duration::from_millis(100));
        cache
            .put_bytes(&key!(index = index), &noise(index))
            .unwrap();
    }
}

/// Least recently stored ignores reads: a key read after every put goes at the
/// first eviction, as the oldest, and the keys go in the order they were put.
#[test]
fn lrs_evicts_in_put_order_whatever_is_read() {
    let clock = ManualClock::new(1_000_000);
    let cache = cache_with(30, &clock, EvictionPolicy::Lrs);
    let hot = key!(name = "hot");
    cache.put_bytes(&hot, &noise(u64::MAX)).unwrap();
    for index in 0..29u64 {
        put_each(&cache, &clock, [index]);
        assert!(cache.get_bytes(&hot).unwrap().is_some());
    }
    // The 31st entry passes the limit: down to 24 entries, the first seven
    // stored go.
    put_each(&cache, &clock, [29]);
    assert!(
        !cache.contains(&hot).unwrap(),
        "the oldest goes, read or not"
    );
    assert_eq!(gone(&cache, 0..30), [0, 1, 2, 3, 4, 5]);
    put_each(&cache, &clock, 30..100);
    let kept: Vec<u64> = (0..100)
        .filter(|index| !gone(&cache, [*index]).contains(index))
        .collect();
    assert_eq!(
        kept,
        (kept[0]..100).collect::<Vec<u64>>(),
        "the latest stored stay"
    );
}

/// Expired entries go first under every policy, even one read just before it
/// expired (the most recently and most frequently used, and not the oldest
/// stored either).
#[test]
fn every_policy_evicts_expired_entries_first() {
    for policy in EvictionPolicy::ALL {
        let clock = ManualClock::new(1_000_000);
        let cache = cache_with(30, &clock, policy);
        put_each(&cache, &clock, 0..29);
        let expiring = key!(name = "expiring");
        let five_seconds = PutOptions::new().ttl(Duration::from_secs(5));
        cache
            .put_bytes_with(&expiring, &noise(u64::MAX), &five_seconds)
            .unwrap();
        for _ in 0..10 {
            assert!(cache.get_bytes(&expiring).unwrap().is_some());
        }
        clock.advance(Duration::from_secs(10));
        // The 31st entry: seven go, the expired one first, then keys 0 to 5.
        put_each(&cache, &clock, [29]);
        assert!(cache.entry(&expiring).unwrap().is_none(), "{policy}");
        assert_eq!(gone(&cache, 0..30), [0, 1, 2, 3, 4, 5], "{policy}");
        let key: CacheKey = expiring.to_key();
        assert!(cache.backend().get(&key).unwrap().is_none(), "{policy}");
    }
}
