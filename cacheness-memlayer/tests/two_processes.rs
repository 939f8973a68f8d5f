//! Another process changes and removes entries behind the layer: the next read in
//! this process sees it. The child is this test binary, run with an environment
//! variable naming its role.

use std::path::Path;
use std::process::Command;

use cacheness_core::conformance::{key_of, sample_entry};
use cacheness_core::{Cache, MetadataBackend, key};
use cacheness_memlayer::{MemLayer, MemLayerConfig};

const CHILD_DIR: &str = "CACHENESS_MEMLAYER_CHILD_DIR";
const CHILD_BACKEND: &str = "CACHENESS_MEMLAYER_CHILD_BACKEND";

fn open_backend(kind: &str, dir: &Path) -> Box<dyn MetadataBackend> {
    match kind {
        "sqlite" => {
            Box::new(cacheness_sqlite::SqliteBackend::open(dir).expect("the database opens"))
        }
        "json" => Box::new(cacheness_json::JsonBackend::open(dir).expect("the metadata opens")),
        other => panic!("unknown backend {other}"),
    }
}

/// The child's role: replace entry 1, remove entry 2, and change a value stored
/// through the engine, all with a plain backend (no layer).
#[test]
fn child_role() {
    let (Ok(dir), Ok(kind)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_BACKEND)) else {
        return;
    };
    let dir = Path::new(&dir);
    let backend = open_backend(&kind, dir);
    backend.put(sample_entry(key_of(1), 2_000)).unwrap();
    backend.remove(&key_of(2)).unwrap();
    let cache = Cache::builder()
        .dir(dir.join("cache"))
        .open(open_backend(&kind, &dir.join("cache")))
        .unwrap();
    cache
        .put(&key!(model = "m"), &"changed by the child")
        .unwrap();
}

fn run_child(kind: &str, dir: &Path) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_role", "--test-threads", "1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_BACKEND, kind)
        .status()
        .unwrap();
    assert!(status.success(), "the child failed: {status}");
}

fn another_process_is_seen_by_the_next_read(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let layer = MemLayer::new(open_backend(kind, dir.path()), MemLayerConfig::default()).unwrap();
    layer.put(sample_entry(key_of(1), 1_000)).unwrap();
    layer.put(sample_entry(key_of(2), 1_000)).unwrap();
    let cache_dir = dir.path().join("cache");
    let cache = Cache::builder()
        .dir(&cache_dir)
        .open(MemLayer::new(open_backend(kind, &cache_dir), MemLayerConfig::default()).unwrap())
        .unwrap();
    cache.put(&key!(model = "m"), &"original").unwrap();
    for _ in 0..3 {
        assert_eq!(
            layer.get(&key_of(1)).unwrap(),
            Some(sample_entry(key_of(1), 1_000))
        );
        assert!(layer.get(&key_of(2)).unwrap().is_some());
        assert_eq!(
            cache.get::<String>(&key!(model = "m")).unwrap().as_deref(),
            Some("original")
        );
    }
    assert!(
        layer.layer_stats().unwrap().hits >= 3,
        "the copies were being served"
    );

    run_child(kind, dir.path());

    assert_eq!(
        layer.get(&key_of(1)).unwrap(),
        Some(sample_entry(key_of(1), 2_000))
    );
    assert_eq!(layer.get(&key_of(2)).unwrap(), None);
    assert_eq!(
        cache.get::<String>(&key!(model = "m")).unwrap().as_deref(),
        Some("changed by the child")
    );
}

#[test]
fn sqlite_another_process_is_seen_by_the_next_read() {
    another_process_is_seen_by_the_next_read("sqlite");
}

#[test]
fn json_another_process_is_seen_by_the_next_read() {
    another_process_is_seen_by_the_next_read("json");
}
