use std::sync::{Arc, LazyLock};
use std::time::Duration;

use cacheness::{AsyncCache, Cache, CacheConfig, memoize};

static CACHE: LazyLock<Cache> =
    LazyLock::new(|| CacheConfig::new().backend("memory").open().unwrap());
static SHARED: LazyLock<AsyncCache> = LazyLock::new(|| AsyncCache::new(
    CacheConfig::new().backend("memory").open().unwrap(),
));

#[derive(Debug)]
struct Failure;

impl From<cacheness::Error> for Failure {
    fn from(_: cacheness::Error) -> Self {
        Failure
    }
}

/// Documented, public, with attributes kept.
#[memoize]
#[inline]
pub fn plain(model: &str, n: u32) -> Vec<f64> {
    vec![f64::from(n); model.len()]
}

#[memoize(cache = CACHE, ttl = "1h 30m", version = 3, prefix = "scores", name = "score")]
fn every_string_option(x: u8) -> u8 {
    x
}

#[memoize(cache = CACHE, ttl = Duration::from_secs(5), skip(log), key = (a, b / 2))]
fn by_hand(a: u8, b: u8, log: &mut Vec<String>) -> u16 {
    log.push("ran".into());
    u16::from(a) + u16::from(b)
}

#[memoize(cache = cache, skip(cache))]
fn cache_as_argument(cache: &Arc<Cache>, _: u8, r#type: &str) -> String {
    let _ = cache;
    r#type.to_owned()
}

#[memoize(cache = cache, skip(cache))]
fn owned_cache_used_in_the_body(cache: Arc<Cache>, words: Vec<String>) -> usize {
    let entries = cache.stats().map_or(0, |stats| stats.entries);
    words.into_iter().count() + entries as usize
}

#[memoize(cache = shared, skip(shared))]
async fn owned_async_cache_used_in_the_body(shared: AsyncCache, words: Vec<String>) -> usize {
    let entries = shared.stats().await.map_or(0, |stats| stats.entries);
    words.into_iter().count() + entries as usize
}

#[memoize(cache = CACHE)]
fn fallible(text: &str) -> Result<u32, std::num::ParseIntError> {
    let n: u32 = text.parse()?;
    if n > 10 {
        return Ok(10);
    }
    Ok(n)
}

#[memoize(cache = CACHE, cache_errors = "return")]
fn strict(n: u32) -> Result<u32, Failure> {
    Ok(n)
}

#[memoize(cache = CACHE, skip_none)]
fn maybe(n: u32) -> Option<u32> {
    n.checked_sub(1)
}

#[memoize(cache = CACHE)]
fn generic<T: serde::Serialize + serde::de::DeserializeOwned + Default, const N: usize>(tag: &str) -> Vec<T> {
    let _ = tag;
    (0..N).map(|_| T::default()).collect()
}

#[memoize(cache = SHARED, ttl = "10s")]
async fn fetch(city: String) -> Vec<f64> {
    vec![city.len() as f64]
}

#[memoize(cache = SHARED, skip_none)]
async fn fetch_maybe(city: &str) -> Option<String> {
    (!city.is_empty()).then(|| city.to_owned())
}

#[memoize(cache = SHARED, cache_errors = "return")]
async fn fetch_strict(n: u32) -> Result<u32, Failure> {
    Ok(n)
}

#[memoize(cache = shared, skip(shared))]
async fn fetch_with(shared: Arc<Cache>, n: u32) -> u32 {
    let _ = shared;
    n
}

#[memoize]
async fn fetch_default(n: u32) -> Result<u32, std::num::ParseIntError> {
    Ok(n)
}

fn main() {
    let _ = (plain, every_string_option, by_hand, cache_as_argument, fallible);
    let _ = (owned_cache_used_in_the_body, owned_async_cache_used_in_the_body);
    let _ = (strict, maybe, generic::<u8, 2>, fetch, fetch_maybe, fetch_strict, fetch_with, fetch_default);
    fn assert_send<T: Send>(_: T) {}
    assert_send(fetch("Lyon".into()));
    assert_send(fetch_default(1));
}
