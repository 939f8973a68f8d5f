//! Behaviour of the engine through its public API that the conformance suite does
//! not cover: custom codecs, memoization, raw bytes, integrity settings.

use std::fs;

use cacheness_core::{BoxError, Cache, Codec, Error, key};
use cacheness_memory::MemoryBackend;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A user codec: values as JSON with a version line in front, to show how a codec
/// plugs in and that its name is recorded and enforced.
#[derive(Debug, Default)]
struct VersionedJson;

impl Codec for VersionedJson {
    fn name(&self) -> &str {
        "versioned-json"
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        let mut bytes = b"v1\n".to_vec();
        serde_json::to_writer(&mut bytes, value)?;
        Ok(bytes)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &mut [u8]) -> Result<T, BoxError> {
        let body = bytes.strip_prefix(b"v1\n").ok_or("missing version line")?;
        Ok(serde_json::from_slice(body)?)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Model {
    name: String,
    weights: Vec<f32>,
}

#[test]
fn a_custom_codec_is_used_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .dir(dir.path())
        .codec(VersionedJson)
        .open(MemoryBackend::new())
        .unwrap();
    let model = Model {
        name: "tiny".into(),
        weights: vec![0.5, 0.25],
    };
    cache.put(&key!(model = "tiny"), &model).unwrap();
    assert_eq!(
        cache.get::<Model>(&key!(model = "tiny")).unwrap(),
        Some(model)
    );
    let entry = cache.entry(&key!(model = "tiny")).unwrap().unwrap();
    assert_eq!(entry.codec, "versioned-json");
    assert!(entry.type_tag.ends_with("Model"));
    assert!(
        cache
            .get_bytes(&key!(model = "tiny"))
            .unwrap()
            .unwrap()
            .starts_with(b"v1\n")
    );
}

#[test]
fn memoization_computes_once() {
    let cache = Cache::builder().open(MemoryBackend::new()).unwrap();
    let mut calls = 0;
    for _ in 0..3 {
        let value = cache
            .get_or_insert_with(&key!(expensive = true), || {
                calls += 1;
                42u64
            })
            .unwrap();
        assert_eq!(value, 42);
    }
    assert_eq!(calls, 1);

    let failed: Result<u64, ComputeError> =
        cache.get_or_try_insert_with(&key!(fails = true), || Err(ComputeError::Failed("no")));
    assert!(matches!(failed, Err(ComputeError::Failed("no"))));
    assert!(
        !cache.contains(&key!(fails = true)).unwrap(),
        "a failed computation stores nothing"
    );
}

/// What a memoized computation can fail with: its own error or the cache's.
#[derive(Debug)]
enum ComputeError {
    Failed(&'static str),
    Cache(#[allow(dead_code)] Error),
}

impl From<Error> for ComputeError {
    fn from(error: Error) -> Self {
        ComputeError::Cache(error)
    }
}

#[test]
fn without_integrity_checks_a_flipped_byte_is_not_caught_by_hash_but_sizes_still_are() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .dir(dir.path())
        .inline_threshold(0)
        .verify_integrity(false)
        .open(MemoryBackend::new())
        .unwrap();
    cache.put_bytes(&key!(k = 1), b"abcdef").unwrap();
    let entry = cache.entry(&key!(k = 1)).unwrap().unwrap();
    let path = cache.blob_path(&entry).unwrap();
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    assert_eq!(
        cache.get_bytes(&key!(k = 1)).unwrap(),
        None,
        "a truncated blob is caught without hashing"
    );
}

#[test]
fn a_blob_name_pointing_outside_the_store_is_treated_as_damage() {
    use cacheness_core::{Location, MetadataBackend};
    let dir = tempfile::tempdir().unwrap();
    let backend = std::sync::Arc::new(MemoryBackend::new());
    let cache = Cache::builder()
        .dir(dir.path())
        .inline_threshold(0)
        .open_shared(backend.clone())
        .unwrap();
    cache.put_bytes(&key!(k = 1), b"abcdef").unwrap();
    let mut entry = backend.get(&key!(k = 1).key()).unwrap().unwrap();
    entry.location = Location::Blob("../../etc/passwd".into());
    backend.put(entry).unwrap();
    assert_eq!(cache.get_bytes(&key!(k = 1)).unwrap(), None);
    assert!(
        backend.get(&key!(k = 1).key()).unwrap().is_none(),
        "the bad entry is dropped"
    );
}

#[test]
fn an_entry_whose_key_was_damaged_does_not_serve_another_keys_value() {
    use cacheness_core::MetadataBackend;
    let backend = std::sync::Arc::new(MemoryBackend::new());
    let cache = Cache::builder().open_shared(backend.clone()).unwrap();
    cache.put(&key!(name = "original"), &"secret").unwrap();
    // The same entry, but filed under another key (as a flipped bit on disk would).
    let mut damaged = backend
        .get(&key!(name = "original").key())
        .unwrap()
        .unwrap();
    damaged.key = key!(name = "other").key();
    backend.put(damaged).unwrap();
    assert_eq!(cache.get::<String>(&key!(name = "other")).unwrap(), None);
    assert!(
        backend.get(&key!(name = "other").key()).unwrap().is_none(),
        "dropped as corrupted"
    );
    assert_eq!(
        cache
            .get::<String>(&key!(name = "original"))
            .unwrap()
            .as_deref(),
        Some("secret")
    );
}

/// The engine does not hash a memory backend's shared entry again on every read;
/// a damaged version put in its place after it was read is still caught.
#[test]
fn an_entry_damaged_after_it_was_read_is_still_caught() {
    use cacheness_core::{Location, MetadataBackend};
    let backend = std::sync::Arc::new(MemoryBackend::new());
    let cache = Cache::builder().open_shared(backend.clone()).unwrap();
    cache.put(&key!(k = 1), &"intact").unwrap();
    for _ in 0..3 {
        assert_eq!(
            cache.get::<String>(&key!(k = 1)).unwrap().as_deref(),
            Some("intact")
        );
    }
    let mut damaged = backend.get(&key!(k = 1).key()).unwrap().unwrap();
    let Location::Inline(bytes) = &mut damaged.location else {
        panic!("a small value is stored inline");
    };
    bytes[1] ^= 0x20;
    backend.put(damaged).unwrap();
    assert_eq!(cache.get::<String>(&key!(k = 1)).unwrap(), None);
    assert!(
        backend.get(&key!(k = 1).key()).unwrap().is_none(),
        "dropped as corrupted"
    );
}
