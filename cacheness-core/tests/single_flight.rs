//! `get_or_insert_with` within one process: one computation per key, a value
//! that cannot be read is a miss, a value that cannot be stored is returned.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;

use cacheness_core::{BoxError, Cache, Codec, Error, key};
use cacheness_memory::MemoryBackend;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn cache() -> Arc<Cache> {
    Arc::new(Cache::builder().open(MemoryBackend::new()).unwrap())
}

/// Spins (yielding) until `done` holds: for states other threads reach
/// without a signal of their own, never for a span of time.
fn until(mut done: impl FnMut() -> bool) {
    while !done() {
        thread::yield_now();
    }
}

#[test]
fn threads_racing_for_a_missing_key_compute_it_once_and_all_get_it() {
    const THREADS: u64 = 8;
    let cache = cache();
    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (cache, runs, release) = (cache.clone(), runs.clone(), release.clone());
            thread::spawn(move || {
                cache
                    .get_or_insert_with(&key!(model = "slow"), || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        until(|| release.load(Ordering::SeqCst));
                        vec![1.5_f64, 2.5]
                    })
                    .unwrap()
            })
        })
        .collect();
    // Every thread has looked and missed before the computation may end, so
    // all but one are waiting for it (or, before the fix, computing).
    until(|| cache.stats().unwrap().misses >= THREADS);
    release.store(true, Ordering::SeqCst);
    for worker in workers {
        assert_eq!(worker.join().unwrap(), vec![1.5, 2.5]);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn different_keys_compute_in_parallel() {
    let cache = cache();
    let (second_done, wait_for_second) = mpsc::channel();
    let first = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache
                .get_or_insert_with(&key!(part = 1), || {
                    // Ends only once the other key's computation has run.
                    wait_for_second.recv().unwrap();
                    1
                })
                .unwrap()
        })
    };
    until(|| cache.stats().unwrap().misses >= 1);
    let second = cache
        .get_or_insert_with(&key!(part = 2), || {
            second_done.send(()).unwrap();
            2
        })
        .unwrap();
    assert_eq!((first.join().unwrap(), second), (1, 2));
}

#[test]
fn a_computation_that_panics_wakes_its_waiters_and_does_not_poison_the_key() {
    let cache = cache();
    let release = Arc::new(AtomicBool::new(false));
    let leader = {
        let (cache, release) = (cache.clone(), release.clone());
        thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                cache.get_or_insert_with(&key!(model = "fragile"), || -> u32 {
                    until(|| release.load(Ordering::SeqCst));
                    panic!("the computation failed");
                })
            }))
        })
    };
    until(|| cache.stats().unwrap().misses >= 1);
    let waiter = {
        let cache = cache.clone();
        thread::spawn(move || cache.get_or_insert_with(&key!(model = "fragile"), || 7u32))
    };
    until(|| cache.stats().unwrap().misses >= 2);
    release.store(true, Ordering::SeqCst);
    assert!(
        leader.join().unwrap().is_err(),
        "the panic reaches its caller"
    );
    assert_eq!(waiter.join().unwrap().unwrap(), 7);
    assert_eq!(cache.get::<u32>(&key!(model = "fragile")).unwrap(), Some(7));
}

#[test]
fn a_failed_computation_stores_nothing_and_its_waiters_compute_in_turn() {
    let cache = cache();
    let release = Arc::new(AtomicBool::new(false));
    let leader = {
        let (cache, release) = (cache.clone(), release.clone());
        thread::spawn(move || {
            cache.get_or_try_insert_with(&key!(model = "flaky"), || {
                until(|| release.load(Ordering::SeqCst));
                Err::<u32, Error>(Error::Config {
                    field: "model",
                    reason: "no data".into(),
                })
            })
        })
    };
    until(|| cache.stats().unwrap().misses >= 1);
    let waiter = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache.get_or_try_insert_with(&key!(model = "flaky"), || Ok::<u32, Error>(3))
        })
    };
    until(|| cache.stats().unwrap().misses >= 2);
    release.store(true, Ordering::SeqCst);
    let error = leader.join().unwrap().unwrap_err();
    assert!(error.to_string().contains("no data"), "{error}");
    assert_eq!(waiter.join().unwrap().unwrap(), 3);
}

#[test]
fn a_computation_asking_for_its_own_key_computes_it_instead_of_waiting_for_itself() {
    let cache = cache();
    let key = key!(model = "recursive");
    let value = cache
        .get_or_insert_with(&key, || {
            cache.get_or_insert_with(&key, || 41u32).unwrap() + 1
        })
        .unwrap();
    assert_eq!(value, 42);
    assert_eq!(cache.get::<u32>(&key).unwrap(), Some(42));
}

#[test]
fn a_stored_value_of_another_type_is_computed_again_and_replaced() {
    let cache = cache();
    let key = key!(model = "changed");
    cache.put(&key, "an old string").unwrap();
    assert!(matches!(cache.get::<u32>(&key), Err(Error::Decode { .. })));
    assert_eq!(cache.get_or_insert_with(&key, || 5u32).unwrap(), 5);
    assert_eq!(cache.get::<u32>(&key).unwrap(), Some(5));
}

/// JSON under another name: what a cache written with another codec stores.
#[derive(Debug)]
struct OtherCodec;

impl Codec for OtherCodec {
    fn name(&self) -> &str {
        "other"
    }
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(value)?)
    }
    fn decode<T: DeserializeOwned>(&self, bytes: &mut [u8]) -> Result<T, BoxError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[test]
fn a_value_stored_with_another_codec_is_computed_again_and_replaced() {
    let backend = Arc::new(MemoryBackend::new());
    let other = Cache::builder()
        .codec(OtherCodec)
        .open_shared(backend.clone())
        .unwrap();
    let key = key!(model = "recoded");
    other.put(&key, &1u32).unwrap();
    let cache = Cache::builder().open_shared(backend).unwrap();
    assert!(matches!(
        cache.get::<u32>(&key),
        Err(Error::CodecMismatch { .. })
    ));
    assert_eq!(cache.get_or_insert_with(&key, || 2u32).unwrap(), 2);
    assert_eq!(cache.get::<u32>(&key).unwrap(), Some(2));
}

#[test]
fn a_value_too_large_to_store_is_still_returned() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .dir(dir.path())
        .max_size(1_000)
        .open(MemoryBackend::new())
        .unwrap();
    let key = key!(model = "huge");
    let big: Vec<u64> = (0..10_000).collect();
    assert!(cache.put(&key, &big).is_err(), "over the size limit");
    let value = cache.get_or_insert_with(&key, || big.clone()).unwrap();
    assert_eq!(value, big);
    assert!(!cache.contains(&key).unwrap());
}
