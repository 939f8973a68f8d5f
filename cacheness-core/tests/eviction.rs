//! Eviction through the engine: which entries the size limit removes under each
//! policy, with reads recorded at the default granularity.

use std::time::Duration;

use cacheness_core::{Cache, CacheKey, Clock, EvictionPolicy, ManualClock, PutOptions, ToKey, key};
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
/// [`VALUE_LEN`] bytes, on a manual clock, at the default access granularity.
fn cache_of(entries: u64, clock: &ManualClock) -> Cache {
    cache_with(entries, clock, EvictionPolicy::default())
}

/// [`cache_of`], evicting by `policy`.
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

/// LRU means least recently *read*: a key read after every put survives a cache
/// that turns over many times within one access granularity, while the keys
/// put before it and never read go.
#[test]
fn lru_keeps_a_key_read_after_every_put_within_the_granularity() {
    let clock = ManualClock::new(1_000_000);
    let cache = cache_of(30, &clock);
    let hot = key!(name = "hot");
    cache.put_bytes(&hot, &noise(u64::MAX)).unwrap();
    // 200 puts, 100 ms apart: 20 s, a third of the 60 s granularity, and
    // nearly seven times the cache's size.
    for index in 0..200u64 {
        put_each(&cache, &clock, [index]);
        assert!(
            cache.get_bytes(&hot).unwrap().is_some(),
            "the hot key was evicted at put {index}"
        );
    }
    let stats = cache.stats().unwrap();
    assert!(stats.evictions > 150, "the cache churned: {stats:?}");
    assert!(!cache.contains(&key!(index = 0u64)).unwrap());
    assert!(!cache.contains(&key!(index = 150u64)).unwrap());
    assert!(cache.contains(&key!(index = 199u64)).unwrap());
}

/// Reads within the granularity write nothing, flushes included, until the
/// cache evicts: then they are written, every one counted, before the
/// candidates are chosen.
#[test]
fn reads_held_back_by_the_granularity_are_written_before_an_eviction() {
    let clock = ManualClock::new(1_000_000);
    let cache = cache_of(30, &clock);
    let read = key!(name = "read");
    cache.put_bytes(&read, &noise(u64::MAX)).unwrap();
    let stored_at = clock.now_ms();
    put_each(&cache, &clock, 0..29);
    for _ in 0..5 {
        clock.advance(Duration::from_secs(1));
        assert!(cache.get_bytes(&read).unwrap().is_some());
    }
    let last_read = clock.now_ms();
    cache.flush().unwrap();
    assert_eq!(cache.stats().unwrap().evictions, 0);
    let entry = cache.entry(&read).unwrap().unwrap();
    assert_eq!((entry.accessed_at, entry.access_count), (stored_at, 0));

    // The 31st entry: the reads are written, and the entry read stays.
    put_each(&cache, &clock, [29]);
    assert_eq!(gone(&cache, 0..30), [0, 1, 2, 3, 4, 5, 6]);
    let entry = cache.entry(&read).unwrap().unwrap();
    assert_eq!((entry.accessed_at, entry.access_count), (last_read, 5));
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

/// Least frequently used counts every read, those within the granularity too:
/// keys read outlive any number of keys never read, the keys read least go
/// first, and keys read as often go least recently used first.
#[test]
fn lfu_keeps_the_keys_read_most_within_the_granularity() {
    let clock = ManualClock::new(1_000_000);
    let cache = cache_with(30, &clock, EvictionPolicy::Lfu);
    put_each(&cache, &clock, 0..30);
    // Keys 0 to 9 are read, 0 the most and first, within seconds of their put.
    for (index, reads) in (0..10u64).zip([4, 3, 2, 2, 1, 1, 1, 1, 1, 1]) {
        for _ in 0..reads {
            clock.advance(Duration::from_millis(10));
            assert!(cache.get_bytes(&key!(index = index)).unwrap().is_some());
        }
    }
    // The 31st entry passes the limit: seven keys never read go, the least
    // recently used (the first put) first.
    put_each(&cache, &clock, [30]);
    assert_eq!(gone(&cache, 0..31), (10..17).collect::<Vec<u64>>());
    let entry = cache.entry(&key!(index = 0u64)).unwrap().unwrap();
    assert_eq!(entry.access_count, 4, "every read was counted");

    put_each(&cache, &clock, 31..100);
    assert_eq!(gone(&cache, 0..10), [] as [u64; 0], "the keys read stay");
    assert_eq!(gone(&cache, 10..30).len(), 20, "the keys never read go");

    // New keys read twice each: the keys read once (4 to 9) go before them,
    // least recently used first, and before the keys read more.
    let mut next = 100;
    while gone(&cache, 0..10).is_empty() {
        assert!(next < 1_000, "no key read once was evicted");
        put_each(&cache, &clock, [next]);
        for _ in 0..2 {
            assert!(cache.get_bytes(&key!(index = next)).unwrap().is_some());
        }
        next += 1;
    }
    let first_gone = gone(&cache, 0..10);
    assert_eq!(
        first_gone,
        (4..4 + first_gone.len() as u64).collect::<Vec<u64>>(),
        "the keys read once go first, least recently used first"
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

/// Reads held back before a `clear` are not counted for the key put again
/// after it: the cleared entry's reads died with it. Under LFU the new,
/// never-read entry is then the oldest of the least read, so it goes first.
#[test]
fn clear_forgets_the_reads_it_held_back() {
    let clock = ManualClock::new(1_000_000);
    let cache = cache_with(30, &clock, EvictionPolicy::Lfu);
    let hot = key!(name = "hot");
    cache.put_bytes(&hot, &noise(1)).unwrap();
    clock.advance(Duration::from_millis(100));
    for _ in 0..5 {
        assert!(cache.get_bytes(&hot).unwrap().is_some());
    }
    cache.clear().unwrap();
    cache.put_bytes(&hot, &noise(2)).unwrap();
    put_each(&cache, &clock, 0..40);
    assert!(
        !cache.contains(&hot).unwrap(),
        "reads of the cleared entry were counted for the one put after it"
    );
}

/// The same for `remove` and `remove_prefix`: reads of a removed entry are
/// not counted for the entry put again under its key.
#[test]
fn remove_forgets_the_reads_it_held_back() {
    for by_prefix in [false, true] {
        let clock = ManualClock::new(1_000_000);
        let cache = cache_with(30, &clock, EvictionPolicy::Lfu);
        let hot = key!(name = "hot");
        let filed = PutOptions::new().prefix("hot");
        cache.put_bytes_with(&hot, &noise(1), &filed).unwrap();
        clock.advance(Duration::from_millis(100));
        for _ in 0..5 {
            assert!(cache.get_bytes(&hot).unwrap().is_some());
        }
        if by_prefix {
            assert_eq!(cache.remove_prefix("hot").unwrap(), 1);
        } else {
            assert!(cache.remove(&hot).unwrap());
        }
        cache.put_bytes(&hot, &noise(2)).unwrap();
        put_each(&cache, &clock, 0..40);
        assert!(
            !cache.contains(&hot).unwrap(),
            "reads of the removed entry were counted (by prefix: {by_prefix})"
        );
    }
}

/// A put that replaces a key starts it afresh too: reads of the replaced
/// version held back by the granularity are not counted for the new one.
#[test]
fn a_put_over_a_key_forgets_the_reads_of_the_version_it_replaces() {
    let clock = ManualClock::new(1_000_000);
    let cache = cache_with(30, &clock, EvictionPolicy::Lfu);
    let hot = key!(name = "hot");
    cache.put_bytes(&hot, &noise(1)).unwrap();
    clock.advance(Duration::from_millis(100));
    for _ in 0..5 {
        assert!(cache.get_bytes(&hot).unwrap().is_some());
    }
    cache.put_bytes(&hot, &noise(2)).unwrap();
    put_each(&cache, &clock, 0..40);
    assert!(
        !cache.contains(&hot).unwrap(),
        "reads of the replaced version were counted for the new one"
    );
}
