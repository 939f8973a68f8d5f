//! Behaviour of the layer itself: capacity, TTL, staleness, write-through, stats.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cacheness_core::conformance::{key_of, sample_entry};
use cacheness_core::{
    AccessBatch, Cache, CacheKey, Entry, Error, ManualClock, MetadataBackend, Result, ScanFilter,
    Touch, key,
};
use cacheness_memlayer::{Capacity, MemLayer, MemLayerConfig};
use cacheness_memory::MemoryBackend;

/// One handle on storage shared by several handles, like one connection to an
/// SQLite file that other processes also write. Its data version counts the
/// writes made through the *other* handles, as `PRAGMA data_version` does; it
/// also counts the reads that reach the storage.
#[derive(Debug)]
struct Handle {
    storage: Arc<MemoryBackend>,
    all_writes: Arc<AtomicU64>,
    own_writes: AtomicU64,
    reads: AtomicU64,
    version_known: bool,
}

impl Handle {
    fn new() -> Self {
        Handle {
            storage: Arc::new(MemoryBackend::new()),
            all_writes: Arc::new(AtomicU64::new(0)),
            own_writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            version_known: true,
        }
    }

    /// Another handle on the same storage.
    fn another(&self) -> Self {
        Handle {
            storage: Arc::clone(&self.storage),
            all_writes: Arc::clone(&self.all_writes),
            own_writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            version_known: self.version_known,
        }
    }

    fn wrote(&self) {
        self.all_writes.fetch_add(1, Ordering::SeqCst);
        self.own_writes.fetch_add(1, Ordering::SeqCst);
    }
}

impl MetadataBackend for Handle {
    fn get(&self, key: &CacheKey) -> Result<Option<Entry>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.storage.get(key)
    }

    fn put(&self, entry: Entry) -> Result<Option<Entry>> {
        self.wrote();
        self.storage.put(entry)
    }

    fn remove(&self, key: &CacheKey) -> Result<Option<Entry>> {
        self.wrote();
        self.storage.remove(key)
    }

    fn touch(&self, batch: &AccessBatch) -> Result<()> {
        self.wrote();
        self.storage.touch(batch)
    }

    fn scan(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
    ) -> Result<()> {
        self.storage.scan(filter, visit)
    }

    fn data_version(&self) -> Result<Option<u64>> {
        // `wrote` bumps all_writes before own_writes, so reading own_writes first
        // never sees more own writes than all writes.
        let own = self.own_writes.load(Ordering::SeqCst);
        let others = self.all_writes.load(Ordering::SeqCst) - own;
        Ok(self.version_known.then_some(others))
    }
}

fn entry(index: u64, created_at: u64) -> Entry {
    sample_entry(key_of(index), created_at)
}

fn reads(layer: &MemLayer<Handle>) -> u64 {
    layer.backend().reads.load(Ordering::SeqCst)
}

#[test]
fn a_hit_does_not_reach_the_backend() {
    let layer = MemLayer::new(Handle::new(), MemLayerConfig::default()).unwrap();
    layer.put(entry(1, 10)).unwrap();
    for _ in 0..5 {
        assert_eq!(layer.get(&key_of(1)).unwrap(), Some(entry(1, 10)));
    }
    assert_eq!(reads(&layer), 0, "put keeps a copy; every read is a hit");
    let stats = layer.layer_stats().unwrap();
    assert_eq!((stats.hits, stats.misses, stats.entries), (5, 0, 1));
    assert_eq!(stats.hit_ratio(), 1.0);
    assert!(stats.bytes_held > 0);
}

#[test]
fn capacity_bounds_what_is_held_and_every_read_stays_correct() {
    let layer = MemLayer::new(
        Handle::new(),
        MemLayerConfig::new().capacity(Capacity::Entries(100)),
    )
    .unwrap();
    for index in 0..1_000 {
        layer.put(entry(index, index)).unwrap();
        let stats = layer.layer_stats().unwrap();
        assert!(stats.entries <= 100, "{} entries held", stats.entries);
    }
    let full = layer.layer_stats().unwrap();
    assert!(full.evictions >= 900, "{full:?}");
    let per_entry = full.bytes_held / full.entries.max(1);
    // Three passes over every key in changing orders: all reads right, memory bounded.
    for pass in 0..3u64 {
        for step in 0..1_000u64 {
            let index = (step * (2 * pass + 1) + pass) % 1_000;
            assert_eq!(
                layer.get(&key_of(index)).unwrap(),
                Some(entry(index, index))
            );
        }
        let stats = layer.layer_stats().unwrap();
        assert!(stats.entries <= 100, "{stats:?}");
        assert!(stats.bytes_held <= 100 * per_entry * 2, "{stats:?}");
    }
    // Hot keys read repeatedly end up held, so they stop reaching the backend.
    for _ in 0..10 {
        for index in 0..20 {
            layer.get(&key_of(index)).unwrap();
        }
    }
    let before = reads(&layer);
    for index in 0..20 {
        layer.get(&key_of(index)).unwrap();
    }
    assert_eq!(reads(&layer), before, "the 20 hot keys are all held");
}

#[test]
fn a_byte_capacity_weighs_entries_by_size() {
    let layer = MemLayer::new(
        Handle::new(),
        MemLayerConfig::new().capacity(Capacity::Bytes(64 * 1024)),
    )
    .unwrap();
    for index in 0..1_000 {
        let mut big = entry(index, index);
        big.location = cacheness_core::Location::Inline(vec![7; 1024]);
        layer.put(big.clone()).unwrap();
        assert_eq!(layer.get(&key_of(index)).unwrap(), Some(big));
    }
    let stats = layer.layer_stats().unwrap();
    assert!(stats.bytes_held <= 64 * 1024, "{stats:?}");
    assert!(stats.entries < 64, "{stats:?}");
    assert!(stats.entries > 10, "{stats:?}");
}

#[test]
fn copies_older_than_the_ttl_are_read_again() {
    let clock = ManualClock::new(1_000);
    let layer = MemLayer::with_clock(
        Handle::new(),
        MemLayerConfig::new().ttl(Duration::from_secs(300)),
        clock.clone(),
    )
    .unwrap();
    layer.put(entry(1, 10)).unwrap();
    clock.advance(Duration::from_secs(299));
    layer.get(&key_of(1)).unwrap();
    assert_eq!(reads(&layer), 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(layer.get(&key_of(1)).unwrap(), Some(entry(1, 10)));
    assert_eq!(
        reads(&layer),
        1,
        "300 s after the put, the copy is read again"
    );
    clock.advance(Duration::from_secs(299));
    layer.get(&key_of(1)).unwrap();
    assert_eq!(reads(&layer), 1, "and the fresh copy lives another 300 s");
}

#[test]
fn a_write_through_another_handle_is_seen_by_the_next_read() {
    let ours = MemLayer::new(Handle::new(), MemLayerConfig::default()).unwrap();
    let theirs = ours.backend().another();
    ours.put(entry(1, 10)).unwrap();
    ours.put(entry(2, 10)).unwrap();
    assert_eq!(ours.get(&key_of(1)).unwrap(), Some(entry(1, 10)));

    theirs.put(entry(1, 20)).unwrap();
    assert_eq!(ours.get(&key_of(1)).unwrap(), Some(entry(1, 20)));
    theirs.remove(&key_of(2)).unwrap();
    assert_eq!(ours.get(&key_of(2)).unwrap(), None);

    // Our own writes do not move our data version: copies stay served.
    assert_eq!(ours.get(&key_of(1)).unwrap(), Some(entry(1, 20)));
    let before = reads(&ours);
    ours.put(entry(3, 10)).unwrap();
    assert_eq!(ours.get(&key_of(3)).unwrap(), Some(entry(3, 10)));
    assert_eq!(ours.get(&key_of(1)).unwrap(), Some(entry(1, 20)));
    assert_eq!(reads(&ours), before);
}

#[test]
fn with_a_check_interval_copies_are_trusted_until_it_passes() {
    let clock = ManualClock::new(0);
    let ours = MemLayer::with_clock(
        Handle::new(),
        MemLayerConfig::new().check_interval(Duration::from_secs(1)),
        clock.clone(),
    )
    .unwrap();
    let theirs = ours.backend().another();
    ours.put(entry(1, 10)).unwrap();
    ours.get(&key_of(1)).unwrap();
    theirs.put(entry(1, 20)).unwrap();
    assert_eq!(
        ours.get(&key_of(1)).unwrap(),
        Some(entry(1, 10)),
        "within the interval the copy is served: the documented trade-off"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(ours.get(&key_of(1)).unwrap(), Some(entry(1, 20)));
}

#[test]
fn a_backend_that_cannot_tell_is_never_served_stale() {
    let handle = Handle {
        version_known: false,
        ..Handle::new()
    };
    let ours = MemLayer::new(handle, MemLayerConfig::default()).unwrap();
    let theirs = ours.backend().another();
    ours.put(entry(1, 10)).unwrap();
    assert_eq!(ours.get(&key_of(1)).unwrap(), Some(entry(1, 10)));
    theirs.put(entry(1, 20)).unwrap();
    assert_eq!(ours.get(&key_of(1)).unwrap(), Some(entry(1, 20)));
    assert_eq!(ours.layer_stats().unwrap().hits, 0);
}

#[test]
fn put_returns_what_the_backend_replaced_not_the_copy() {
    let ours = MemLayer::new(Handle::new(), MemLayerConfig::default()).unwrap();
    let theirs = ours.backend().another();
    ours.put(entry(1, 10)).unwrap();
    theirs.put(entry(1, 20)).unwrap();
    assert_eq!(ours.put(entry(1, 30)).unwrap(), Some(entry(1, 20)));
    assert_eq!(ours.remove(&key_of(1)).unwrap(), Some(entry(1, 30)));
    assert_eq!(ours.get(&key_of(1)).unwrap(), None);
}

#[test]
fn touches_update_the_copies() {
    let layer = MemLayer::new(Handle::new(), MemLayerConfig::default()).unwrap();
    layer.put(entry(1, 10)).unwrap();
    layer.get(&key_of(1)).unwrap();
    let batch = AccessBatch {
        touches: vec![Touch {
            key: key_of(1),
            accessed_at: 500,
            count: 3,
        }],
        ..AccessBatch::default()
    };
    layer.touch(&batch).unwrap();
    let held = layer.get(&key_of(1)).unwrap().unwrap();
    assert_eq!(
        held,
        layer.backend().storage.get(&key_of(1)).unwrap().unwrap()
    );
    assert_eq!((held.accessed_at, held.access_count), (500, 3));
}

#[test]
fn clear_and_conditional_removal_drop_the_copies() {
    let layer = MemLayer::new(Handle::new(), MemLayerConfig::default()).unwrap();
    layer.put(entry(1, 10)).unwrap();
    layer.put(entry(2, 10)).unwrap();
    assert!(layer.remove_if_unchanged(&entry(1, 99)).unwrap().is_none());
    assert_eq!(layer.get(&key_of(1)).unwrap(), Some(entry(1, 10)));
    assert!(layer.remove_if_unchanged(&entry(1, 10)).unwrap().is_some());
    assert_eq!(layer.get(&key_of(1)).unwrap(), None);
    assert_eq!(layer.clear().unwrap().len(), 1);
    assert_eq!(layer.get(&key_of(2)).unwrap(), None);
    let stats = layer.layer_stats().unwrap();
    assert_eq!((stats.entries, stats.bytes_held), (0, 0));
}

#[test]
fn cache_stats_include_the_layer() {
    let layer = MemLayer::new(MemoryBackend::new(), MemLayerConfig::default()).unwrap();
    let cache = Cache::builder().open(layer).unwrap();
    let key = key!(experiment = "stats");
    cache.put(&key, &42).unwrap();
    cache.get::<i32>(&key).unwrap();
    cache.get::<i32>(&key!(experiment = "missing")).unwrap();
    let stats = cache.stats().unwrap();
    let layer = stats.layer.expect("the layer reports itself");
    assert_eq!((layer.hits, layer.misses, layer.entries), (1, 1, 1));
    assert_eq!(stats.hits, 1);
    assert_eq!(cache.backend().name(), "memlayer+memory");

    let plain = Cache::builder().open(MemoryBackend::new()).unwrap();
    assert_eq!(plain.stats().unwrap().layer, None);
}

#[test]
fn invalid_configuration_fails_at_construction_naming_the_field() {
    let error = MemLayer::new(
        MemoryBackend::new(),
        MemLayerConfig::new().capacity(Capacity::Bytes(0)),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Config {
                field: "memory_layer.capacity",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn threads_reading_and_writing_never_see_an_older_version() {
    let layer = Arc::new(
        MemLayer::new(
            Handle::new(),
            MemLayerConfig::new().capacity(Capacity::Entries(8)),
        )
        .unwrap(),
    );
    let keys = 16u64;
    for index in 0..keys {
        layer.put(entry(index, 0)).unwrap();
    }
    std::thread::scope(|scope| {
        let writer = Arc::clone(&layer);
        scope.spawn(move || {
            for version in 1..=300u64 {
                for index in 0..keys {
                    writer.put(entry(index, version)).unwrap();
                }
            }
        });
        for _ in 0..2 {
            let reader = Arc::clone(&layer);
            scope.spawn(move || {
                let mut last_seen = vec![0u64; keys as usize];
                for round in 0..3_000u64 {
                    let index = round % keys;
                    let seen = reader.get(&key_of(index)).unwrap().unwrap().created_at;
                    assert!(seen >= last_seen[index as usize], "went back in time");
                    last_seen[index as usize] = seen;
                }
            });
        }
    });
    for index in 0..keys {
        assert_eq!(layer.get(&key_of(index)).unwrap(), Some(entry(index, 300)));
    }
}
