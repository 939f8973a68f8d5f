//! `#[cacheness::memoize]`: what is keyed, what is stored, what a cache
//! failure does, and the same across threads, tasks and processes.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, LazyLock};
use std::time::Duration;

use cacheness::{AsyncCache, Cache, CacheConfig, Error, ListOptions, ManualClock, Value, memoize};

fn open(dir: &Path) -> Cache {
    CacheConfig::new().dir(dir).open().unwrap()
}

fn entries(cache: &Cache) -> Vec<cacheness::Entry> {
    cache
        .list(&ListOptions::new())
        .unwrap()
        .into_iter()
        .map(|listed| listed.into_entry())
        .collect()
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = cache, skip(cache))]
fn score(cache: &Cache, model: &str, n: u32) -> Vec<f64> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    (0..n).map(|i| f64::from(i) + model.len() as f64).collect()
}

#[test]
fn a_second_call_with_the_same_arguments_reads_the_stored_value() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let before = RUNS.load(Ordering::SeqCst);
    assert_eq!(score(&cache, "xgb", 2), vec![3.0, 4.0]);
    assert_eq!(score(&cache, "xgb", 2), vec![3.0, 4.0]);
    assert_eq!(RUNS.load(Ordering::SeqCst) - before, 1);
    assert_eq!(score(&cache, "xgb", 3), vec![3.0, 4.0, 5.0]);
    assert_eq!(score(&cache, "lgbm", 2), vec![4.0, 5.0]);
    assert_eq!(RUNS.load(Ordering::SeqCst) - before, 3);

    // The key: the function's path, its version, each argument by name; the
    // entry is filed under the function's path.
    let stored = entries(&cache);
    assert_eq!(stored.len(), 3);
    let entry = stored
        .iter()
        .find(|entry| {
            entry.params.as_ref().unwrap().get("n") == Some(&Value::from(2))
                && entry.params.as_ref().unwrap().get("model") == Some(&Value::from("xgb"))
        })
        .unwrap();
    let params = entry.params.as_ref().unwrap();
    assert_eq!(params.get("#fn"), Some(&Value::from("memoize::score")));
    assert_eq!(params.get("#version"), None, "version 0 is left out");
    assert_eq!(params.get("cache"), None, "skipped");
    assert_eq!(params.len(), 3);
    assert_eq!(entry.prefix, "memoize::score");
    assert_eq!(cache.remove_prefix("memoize::score").unwrap(), 3);
}

static VERSIONED: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = cache, skip(cache), name = "forecast", prefix = "weather")]
fn forecast_v1(cache: &Cache, city: &str) -> String {
    VERSIONED.fetch_add(1, Ordering::SeqCst);
    format!("v1 {city}")
}

#[memoize(cache = cache, skip(cache), name = "forecast", prefix = "weather", version = 2)]
fn forecast_v2(cache: &Cache, city: &str) -> String {
    VERSIONED.fetch_add(1, Ordering::SeqCst);
    format!("v2 {city}")
}

#[memoize(cache = cache, skip(cache), name = "forecast", prefix = "weather")]
fn forecast_v1_moved(cache: &Cache, city: &str) -> String {
    VERSIONED.fetch_add(1, Ordering::SeqCst);
    format!("moved {city}")
}

#[test]
fn a_new_version_computes_again_and_a_fixed_name_survives_a_move() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    assert_eq!(forecast_v1(&cache, "Lyon"), "v1 Lyon");
    assert_eq!(forecast_v2(&cache, "Lyon"), "v2 Lyon");
    // Same name and version: the stored result, whatever the Rust path.
    assert_eq!(forecast_v1_moved(&cache, "Lyon"), "v1 Lyon");
    assert_eq!(VERSIONED.load(Ordering::SeqCst), 2);
    let stored = entries(&cache);
    assert!(stored.iter().all(|entry| entry.prefix == "weather"));
    let versions: Vec<_> = stored
        .iter()
        .map(|entry| entry.params.as_ref().unwrap().get("#version").cloned())
        .collect();
    assert!(
        versions.contains(&None) && versions.contains(&Some(Value::from(2))),
        "{versions:?}"
    );
}

#[memoize(cache = cache, skip(cache, verbose), key = (dataset, fold % 2))]
fn train(cache: &Cache, dataset: &str, fold: u32, verbose: bool) -> (String, u32, bool) {
    (dataset.to_owned(), fold, verbose)
}

#[test]
fn skipped_arguments_and_keys_by_hand_decide_what_is_the_same_call() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    assert_eq!(train(&cache, "iris", 1, true), ("iris".into(), 1, true));
    // fold 3 has the key of fold 1; verbose is not in the key.
    assert_eq!(train(&cache, "iris", 3, false), ("iris".into(), 1, true));
    assert_eq!(train(&cache, "iris", 2, false), ("iris".into(), 2, false));
    let params: Vec<_> = entries(&cache)
        .into_iter()
        .map(|entry| entry.params.unwrap())
        .collect();
    assert!(
        params
            .iter()
            .all(|params| params.get("#key").is_some() && params.len() == 2)
    );
}

static FALLIBLE: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = cache, skip(cache))]
fn parse(cache: &Cache, text: &str) -> Result<u32, std::num::ParseIntError> {
    FALLIBLE.fetch_add(1, Ordering::SeqCst);
    text.parse()
}

#[memoize(cache = cache, skip(cache), skip_none)]
fn lookup(cache: &Cache, id: u32) -> Option<String> {
    FALLIBLE.fetch_add(1, Ordering::SeqCst);
    id.is_multiple_of(2).then(|| format!("user {id}"))
}

#[memoize(cache = cache, skip(cache))]
fn lookup_keeping_none(cache: &Cache, id: u32) -> Option<String> {
    FALLIBLE.fetch_add(1, Ordering::SeqCst);
    id.is_multiple_of(2).then(|| format!("user {id}"))
}

#[test]
fn only_ok_values_are_stored_and_none_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let runs = || FALLIBLE.load(Ordering::SeqCst);
    let start = runs();
    assert!(parse(&cache, "x").is_err());
    assert!(parse(&cache, "x").is_err());
    assert_eq!(runs() - start, 2, "an error is not stored");
    assert_eq!(parse(&cache, "7"), Ok(7));
    assert_eq!(parse(&cache, "7"), Ok(7));
    assert_eq!(runs() - start, 3);

    assert_eq!(lookup(&cache, 1), None);
    assert_eq!(lookup(&cache, 1), None);
    assert_eq!(runs() - start, 5, "skip_none: None is not stored");
    assert_eq!(lookup(&cache, 2).as_deref(), Some("user 2"));
    assert_eq!(lookup(&cache, 2).as_deref(), Some("user 2"));
    assert_eq!(runs() - start, 6);

    assert_eq!(lookup_keeping_none(&cache, 1), None);
    assert_eq!(lookup_keeping_none(&cache, 1), None);
    assert_eq!(runs() - start, 7, "without skip_none, None is a value");
}

static CLOCK: LazyLock<ManualClock> = LazyLock::new(|| ManualClock::new(0));
static TIMED: LazyLock<(tempfile::TempDir, Cache)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let cache = CacheConfig::new()
        .dir(dir.path())
        .open_with_clock(Arc::new(CLOCK.clone()))
        .unwrap();
    (dir, cache)
});
static TIMED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = TIMED.1, ttl = "1h")]
fn rate(currency: &str) -> f64 {
    TIMED_RUNS.fetch_add(1, Ordering::SeqCst);
    if currency == "EUR" { 1.08 } else { 1.0 }
}

const TEN_SECONDS: Duration = Duration::from_secs(10);

#[memoize(cache = TIMED.1, ttl = TEN_SECONDS)]
fn quote(symbol: &str) -> String {
    TIMED_RUNS.fetch_add(1, Ordering::SeqCst);
    symbol.to_lowercase()
}

#[test]
fn results_live_for_their_ttl() {
    let (_, cache) = &*TIMED;
    assert_eq!(rate("EUR"), 1.08);
    assert_eq!(quote("ACME"), "acme");
    let entry = entries(cache);
    let lives: Vec<_> = entry
        .iter()
        .map(|entry| entry.expires_at.unwrap() - entry.created_at)
        .collect();
    assert!(
        lives.contains(&3_600_000) && lives.contains(&10_000),
        "{lives:?}"
    );
    CLOCK.advance(Duration::from_secs(11));
    assert_eq!(rate("EUR"), 1.08);
    assert_eq!(quote("ACME"), "acme");
    assert_eq!(TIMED_RUNS.load(Ordering::SeqCst), 3, "only quote expired");
    CLOCK.advance(Duration::from_secs(3600));
    assert_eq!(rate("EUR"), 1.08);
    assert_eq!(TIMED_RUNS.load(Ordering::SeqCst), 4);
}

#[memoize(cache = cache, skip(cache))]
fn by_pairs(cache: &Cache, weights: HashMap<(u8, u8), u32>) -> u32 {
    weights.values().sum()
}

#[derive(Debug)]
enum ServiceError {
    Cache(Error),
}

impl From<Error> for ServiceError {
    fn from(error: Error) -> Self {
        ServiceError::Cache(error)
    }
}

#[memoize(cache = cache, skip(cache), cache_errors = "return")]
fn by_pairs_strict(cache: &Cache, weights: HashMap<(u8, u8), u32>) -> Result<u32, ServiceError> {
    Ok(weights.values().sum())
}

/// `depth` lists, one inside the other.
fn nested(depth: usize) -> serde_json::Value {
    (0..depth).fold(serde_json::json!(1), |inner, _| serde_json::json!([inner]))
}

#[memoize(cache = cache, skip(cache))]
fn deep(cache: &Cache, tree: serde_json::Value) -> usize {
    tree.to_string().len()
}

#[memoize(cache = cache, skip(cache), cache_errors = "return")]
fn deep_strict(cache: &Cache, tree: serde_json::Value) -> Result<usize, ServiceError> {
    Ok(tree.to_string().len())
}

#[test]
fn arguments_over_the_key_limits_run_uncached_or_return_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    assert_eq!(deep(&cache, nested(40)), 81);
    assert_eq!(deep(&cache, nested(3)), 7);
    assert_eq!(entries(&cache).len(), 1, "only the key within the limits");
    match deep_strict(&cache, nested(40)) {
        Err(ServiceError::Cache(Error::Key(cacheness::KeyError::TooDeep { depth, .. }))) => {
            assert_eq!(depth, 40);
        }
        other => panic!("expected the nesting limit, got {other:?}"),
    }
}

#[memoize(cache = cache, skip(cache))]
fn stored_anyway(cache: &Cache, n: u32) -> u32 {
    n + 1
}

#[test]
fn a_failing_cache_never_fails_the_function_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    // Tuple map keys cannot be a key: the function runs uncached.
    let weights = HashMap::from([((1, 2), 5), ((3, 4), 6)]);
    assert_eq!(by_pairs(&cache, weights.clone()), 11);
    assert!(entries(&cache).is_empty());
    match by_pairs_strict(&cache, weights) {
        Err(ServiceError::Cache(Error::InvalidInput { what, value, .. })) => {
            assert_eq!(what, "memoized argument");
            assert!(value.ends_with("by_pairs_strict(weights)"), "{value}");
        }
        other => panic!("expected the key's error, got {other:?}"),
    }
    // A cache that cannot store: the value is returned all the same.
    drop(cache);
    let read_only = CacheConfig::new()
        .dir(dir.path())
        .read_only(true)
        .open()
        .unwrap();
    assert_eq!(stored_anyway(&read_only, 1), 2);
    assert!(entries(&read_only).is_empty());
}

static GENERIC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = cache, skip(cache))]
fn zero<T: Default + serde::Serialize + serde::de::DeserializeOwned>(
    cache: &Cache,
    tag: &str,
) -> T {
    GENERIC_RUNS.fetch_add(1, Ordering::SeqCst);
    let _ = tag;
    T::default()
}

#[test]
fn each_instance_of_a_generic_function_has_its_own_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    assert_eq!(zero::<u32>(&cache, "a"), 0);
    assert_eq!(zero::<String>(&cache, "a"), "");
    assert_eq!(zero::<u32>(&cache, "a"), 0);
    assert_eq!(GENERIC_RUNS.load(Ordering::SeqCst), 2);
}

static SLOW_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = cache, skip(cache, gate))]
fn slow(cache: &Cache, gate: &Barrier, n: u32) -> u32 {
    SLOW_RUNS.fetch_add(1, Ordering::SeqCst);
    // Held until every racing thread has missed: they wait, not compute.
    while cache.stats().unwrap().misses < 8 {
        std::thread::yield_now();
    }
    let _ = gate;
    n * 2
}

#[test]
fn racing_threads_compute_a_result_once() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let gate = Barrier::new(8);
    let results: Vec<u32> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    gate.wait();
                    slow(&cache, &gate, 21)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .collect()
    });
    assert_eq!(results, vec![42; 8]);
    assert_eq!(SLOW_RUNS.load(Ordering::SeqCst), 1);
}

static ASYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache = cache, skip(cache, release))]
async fn fetch(cache: &AsyncCache, release: Arc<tokio::sync::Notify>, city: String) -> Vec<f64> {
    ASYNC_RUNS.fetch_add(1, Ordering::SeqCst);
    release.notified().await;
    vec![city.len() as f64]
}

#[memoize(cache = cache, skip(cache))]
async fn fetch_checked(cache: &AsyncCache, city: &str) -> Result<u32, std::num::ParseIntError> {
    let parsed: u32 = city.parse()?;
    if parsed > 100 {
        return Ok(100);
    }
    Ok(parsed)
}

#[test]
fn async_functions_are_memoized_and_racing_tasks_share_one_computation() {
    let dir = tempfile::tempdir().unwrap();
    let cache = AsyncCache::new(open(dir.path()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let release = Arc::new(tokio::sync::Notify::new());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, release) = (cache.clone(), release.clone());
                // Spawned: the memoized future is Send.
                tokio::spawn(async move { fetch(&cache, release, "Lyon".into()).await })
            })
            .collect();
        while cache.sync().stats().unwrap().misses < 16 || ASYNC_RUNS.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        release.notify_one();
        for task in tasks {
            assert_eq!(task.await.unwrap(), vec![4.0]);
        }
        assert_eq!(ASYNC_RUNS.load(Ordering::SeqCst), 1);
        assert_eq!(
            fetch(&cache, release.clone(), "Lyon".into()).await,
            vec![4.0]
        );
        assert_eq!(ASYNC_RUNS.load(Ordering::SeqCst), 1);

        // `?` and `return` in the body, and errors not stored.
        assert_eq!(fetch_checked(&cache, "250").await, Ok(100));
        assert!(fetch_checked(&cache, "x").await.is_err());
    });
}

/// Runs this test binary's test `role` as a child process with `vars`; its
/// standard output.
fn child(role: &str, vars: &[(&str, &Path)]) -> String {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([role, "--exact", "--nocapture", "--quiet"]);
    command
        .env("CACHENESS_MEMOIZE_CHILD", "1")
        .env_remove("CACHENESS_DIR");
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn is_child() -> bool {
    std::env::var_os("CACHENESS_MEMOIZE_CHILD").is_some()
}

/// Counts its runs in a file, so that runs in other processes count.
#[memoize(ttl = "1h")]
fn expensive(runs: &Path, n: u64) -> u64 {
    let count = std::fs::read_to_string(runs).map_or(0, |text| text.len());
    std::fs::write(runs, "x".repeat(count + 1)).unwrap();
    n * n
}

#[test]
fn a_result_persists_across_processes_in_the_default_cache() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let cache_dir = dir.path().join("cache");
    for _ in 0..2 {
        let out = child(
            "default_cache_child_role",
            &[("CACHENESS_DIR", &cache_dir), ("MEMOIZE_RUNS", &runs)],
        );
        assert!(out.contains("expensive = 144"), "{out}");
    }
    assert_eq!(
        std::fs::read_to_string(&runs).unwrap(),
        "x",
        "computed once"
    );
    // The default cache was opened from the environment: sqlite in CACHENESS_DIR.
    let cache = open(&cache_dir);
    assert_eq!(entries(&cache).len(), 1);
}

#[test]
fn default_cache_child_role() {
    if !is_child() {
        return;
    }
    let runs = std::env::var_os("MEMOIZE_RUNS").unwrap();
    println!("expensive = {}", expensive(Path::new(&runs), 12));
}

#[memoize(cache_errors = "return")]
fn strict(n: u32) -> Result<u32, ServiceError> {
    Ok(n + 1)
}

#[test]
fn a_default_cache_that_cannot_open_runs_functions_uncached() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the cache dir should be.
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let out = child(
        "unopenable_default_cache_child_role",
        &[
            ("CACHENESS_DIR", &not_a_dir),
            ("MEMOIZE_RUNS", &dir.path().join("runs")),
        ],
    );
    assert!(out.contains("expensive = 4"), "{out}");
    assert!(out.contains("strict = cache error"), "{out}");
    assert!(out.contains("set later = refused"), "{out}");
}

#[test]
fn unopenable_default_cache_child_role() {
    if !is_child() {
        return;
    }
    let runs = std::env::var_os("MEMOIZE_RUNS").unwrap();
    println!("expensive = {}", expensive(Path::new(&runs), 2));
    match strict(1) {
        Err(ServiceError::Cache(Error::Config { .. })) => println!("strict = cache error"),
        other => println!("strict = {other:?}"),
    }
    let late = CacheConfig::new().backend("memory").open().unwrap();
    match memoize::set_default_cache(late) {
        Err(_) => println!("set later = refused"),
        Ok(()) => println!("set later = accepted"),
    }
}

#[test]
fn a_default_cache_set_first_is_the_one_used() {
    let dir = tempfile::tempdir().unwrap();
    let out = child(
        "set_default_cache_child_role",
        &[("MEMOIZE_DIR", dir.path())],
    );
    assert!(out.contains("expensive = 9"), "{out}");
    let cache = open(&dir.path().join("given"));
    assert_eq!(entries(&cache).len(), 1);
}

#[test]
fn set_default_cache_child_role() {
    if !is_child() {
        return;
    }
    let dir = Path::new(&std::env::var_os("MEMOIZE_DIR").unwrap()).to_owned();
    let given = Arc::new(open(&dir.join("given")));
    assert!(memoize::set_default_cache(Arc::clone(&given)).is_ok());
    println!("expensive = {}", expensive(&dir.join("runs"), 3));
    assert!(Arc::ptr_eq(&memoize::default_cache().unwrap(), &given));
}
