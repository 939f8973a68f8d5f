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

/// `leaf` inside `levels` nested lists.
fn nested_params_value(levels: usize) -> cacheness_core::Value {
    let mut value = cacheness_core::Value::from(1);
    for _ in 0..levels {
        value = cacheness_core::Value::List(vec![value]);
    }
    value
}

/// `1` inside `levels` nested JSON arrays and objects, alternating.
fn nested_json(levels: usize) -> serde_json::Value {
    let mut value = serde_json::json!(1);
    for level in 0..levels {
        value = if level % 2 == 0 {
            serde_json::json!([value])
        } else {
            serde_json::json!({ "inner": value })
        };
    }
    value
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for item in fs::read_dir(&at).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// Issue 21 item 6: what `put` accepts, every read path can read. Before the
/// limits, a 64 MiB+1 parameter was stored and its blob header then refused by
/// the reader (the first get deleted the entry), and JSON nested past serde's
/// recursion limit was stored and then dropped (json) or wedged every read of the
/// cache (sqlite).
#[test]
fn parameters_and_metadata_over_the_limits_are_refused_at_put() {
    use cacheness_core::PutOptions;
    use cacheness_core::cache::{MAX_DESCRIPTION_LEN, MAX_USER_METADATA_LEN};
    use cacheness_core::key::{KeyError, MAX_NESTING, MAX_PARAMS_LEN, Value};
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .dir(dir.path())
        .inline_threshold(0)
        .open(MemoryBackend::new())
        .unwrap();
    let value = vec![7u8; 100];

    let huge = key!(blob = Value::bytes(vec![0u8; (64 << 20) + 1]));
    let error = cache.put(&huge, &value).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Key(KeyError::TooLarge { size, limit: MAX_PARAMS_LEN }) if size > 64 << 20
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&MAX_PARAMS_LEN.to_string()) && message.contains("67108"),
        "the message names the limit and the size: {message}"
    );
    assert!(cache.entry(&huge).unwrap().is_none());

    let deep = key!(deep = nested_params_value(70));
    let message = cache.put(&deep, &value).unwrap_err().to_string();
    assert!(
        message.contains("deep")
            && message.contains("70")
            && message.contains(&MAX_NESTING.to_string()),
        "{message}"
    );
    assert!(cache.entry(&deep).unwrap().is_none());

    let plain = key!(plain = true);
    let deep_metadata = PutOptions::new().metadata("deep", nested_json(200));
    let error = cache.put_with(&plain, &value, &deep_metadata).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, Error::LimitExceeded { actual: 200, .. })
            && message.contains("user metadata")
            && message.contains(&MAX_NESTING.to_string()),
        "{message}"
    );
    let large_metadata = PutOptions::new().metadata("large", "x".repeat(MAX_USER_METADATA_LEN + 1));
    let message = cache
        .put_with(&plain, &value, &large_metadata)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("user metadata") && message.contains(&MAX_USER_METADATA_LEN.to_string()),
        "{message}"
    );
    let long_description = PutOptions::new().description("d".repeat(MAX_DESCRIPTION_LEN + 1));
    let message = cache
        .put_with(&plain, &value, &long_description)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("description") && message.contains(&MAX_DESCRIPTION_LEN.to_string()),
        "{message}"
    );
    assert!(cache.entry(&plain).unwrap().is_none());
    assert_eq!(
        files_under(&dir.path().join("blobs")),
        Vec::<String>::new(),
        "a refused put leaves no blob"
    );

    // Built from a struct, the same nesting is refused when the params are made.
    #[derive(Serialize)]
    struct Deep {
        deep: serde_json::Value,
    }
    let error = cacheness_core::Params::from_serialize(&Deep {
        deep: nested_json(70),
    })
    .unwrap_err();
    assert!(
        matches!(error, KeyError::TooDeep { depth: 70, .. }),
        "{error:?}"
    );
}

#[test]
fn parameters_and_metadata_at_the_limits_round_trip() {
    use cacheness_core::cache::{MAX_DESCRIPTION_LEN, MAX_USER_METADATA_LEN};
    use cacheness_core::key::{MAX_NESTING, MAX_PARAMS_LEN, Value};
    use cacheness_core::ops::no_progress;
    use cacheness_core::{Entry, PutOptions};
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .dir(dir.path())
        .inline_threshold(64)
        .open(MemoryBackend::new())
        .unwrap();
    let deep = nested_params_value(MAX_NESTING);
    let room = MAX_PARAMS_LEN
        - key!(blob = Value::bytes(Vec::new()), deep = deep.clone())
            .encode()
            .len();
    // Control characters: the JSON form of the bytes is base64, of the
    // description escapes, both larger than the bytes.
    let params = key!(blob = Value::bytes(vec![1u8; room]), deep = deep);
    assert_eq!(params.encode().len(), MAX_PARAMS_LEN);
    // The metadata: nested to the limit, and as large as allowed in JSON.
    let mut options = PutOptions::new()
        .description("\u{1}".repeat(MAX_DESCRIPTION_LEN))
        .metadata("deep", nested_json(MAX_NESTING));
    let used = serde_json::to_vec(&options.user_metadata).unwrap().len();
    // `,"pad":""` around the padding.
    let pad = MAX_USER_METADATA_LEN - used - r#","pad":"""#.len();
    options = options.metadata("pad", "p".repeat(pad));
    assert_eq!(
        serde_json::to_vec(&options.user_metadata).unwrap().len(),
        MAX_USER_METADATA_LEN
    );
    let value: Vec<u8> = (0..400u32)
        .flat_map(|block| *blake3::hash(&block.to_le_bytes()).as_bytes())
        .collect();
    cache.put_bytes_with(&params, &value, &options).unwrap();
    let small = key!(small = nested_params_value(MAX_NESTING));
    cache.put_with(&small, &1u8, &options).unwrap();

    let (_, entry) = cache.get_with_entry::<u8>(&small).unwrap().unwrap();
    assert_eq!(entry.params.as_ref(), Some(&small));
    assert_eq!(entry.user_metadata, options.user_metadata);
    let stored = cache.entry(&params).unwrap().unwrap();
    assert_eq!(cache.get_bytes(&params).unwrap(), Some(value.clone()));
    assert!(stored.blob_name().is_some());
    // As the json and sqlite backends store it: JSON, read back by serde_json.
    for entry in [&entry, &stored] {
        let json = serde_json::to_vec(entry).unwrap();
        let back: Entry = serde_json::from_slice(&json).unwrap();
        assert_eq!(&back, entry);
    }
    // The blob header carries it all and is read back by rebuild.
    let rebuilt = Cache::builder()
        .dir(dir.path())
        .inline_threshold(64)
        .open(MemoryBackend::new())
        .unwrap();
    let report = rebuilt.rebuild(&mut no_progress).unwrap();
    assert_eq!(report.restored, 1, "{:?}", report.invalid);
    assert_eq!(rebuilt.get_bytes(&params).unwrap(), Some(value));
    assert_eq!(
        rebuilt.entry(&params).unwrap().unwrap().params,
        Some(params)
    );
}

/// Every file and dir under `dir` with what a write would change: size, mtime
/// and mode.
fn snapshot_of(dir: &std::path::Path) -> Vec<(String, u64, std::time::SystemTime, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for item in fs::read_dir(&at).unwrap() {
            let path = item.unwrap().path();
            let metadata = fs::symlink_metadata(&path).unwrap();
            #[cfg(unix)]
            let mode = std::os::unix::fs::PermissionsExt::mode(&metadata.permissions());
            #[cfg(not(unix))]
            let mode = 0;
            found.push((
                path.strip_prefix(dir).unwrap().display().to_string(),
                metadata.len(),
                metadata.modified().unwrap(),
                mode,
            ));
            if metadata.is_dir() {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Makes `dir` and everything in it read-only (or writable again).
#[cfg(unix)]
fn set_read_only(dir: &std::path::Path, read_only: bool) {
    use std::os::unix::fs::PermissionsExt;
    let mut pending = vec![dir.to_path_buf()];
    let mut all = Vec::new();
    while let Some(at) = pending.pop() {
        all.push((at.clone(), true));
        for item in fs::read_dir(&at).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                all.push((path, false));
            }
        }
    }
    // Dirs last when locking, first when unlocking, so the walk can go on.
    all.sort_by_key(|(_, is_dir)| *is_dir == read_only);
    for (path, is_dir) in all {
        let mode = match (is_dir, read_only) {
            (true, true) => 0o555,
            (true, false) => 0o700,
            (false, true) => 0o444,
            (false, false) => 0o600,
        };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// Every entry of `backend`, in key order.
fn entries_of(backend: &MemoryBackend) -> Vec<cacheness_core::Entry> {
    use cacheness_core::{MetadataBackend, ScanFilter};
    let mut entries = Vec::new();
    backend
        .scan(&ScanFilter::all(), &mut |entry| {
            entries.push(entry);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    entries
}

/// Issue 21 item 16: a read-only open serves reads and writes nothing: no
/// file, no dir, no access record, no removal of expired or damaged entries;
/// every write is refused with `Error::ReadOnly`. (Root ignores the modes set
/// here, so "writes nothing" is checked on the dir's listing.)
#[test]
fn a_read_only_cache_serves_reads_and_changes_nothing() {
    use std::sync::Arc;
    use std::time::Duration;

    use cacheness_core::ops::no_progress;
    use cacheness_core::{ManualClock, PutOptions};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let clock = ManualClock::new(1_000_000);
    let backend = Arc::new(MemoryBackend::new());
    let builder = || {
        Cache::builder()
            .dir(&dir)
            .inline_threshold(64)
            .access_granularity(Duration::ZERO)
            .clock(clock.clone())
            .sign_entries()
    };
    let large = |seed: u8| -> Vec<u8> {
        (0..20u8)
            .flat_map(|block| *blake3::hash(&[seed, block]).as_bytes())
            .collect()
    };
    {
        let writer = builder().open_shared(backend.clone()).unwrap();
        writer.put(&key!(k = "small"), &1u32).unwrap();
        writer.put_bytes(&key!(k = "large"), &large(1)).unwrap();
        let expiring = PutOptions::new().ttl(Duration::from_secs(10));
        writer
            .put_bytes_with(&key!(k = "expiring"), &large(2), &expiring)
            .unwrap();
        writer.put_bytes(&key!(k = "damaged"), &large(3)).unwrap();
        writer.put_bytes(&key!(k = "missing"), &large(4)).unwrap();
        let damaged = writer
            .blob_path(&writer.entry(&key!(k = "damaged")).unwrap().unwrap())
            .unwrap();
        let mut bytes = fs::read(&damaged).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&damaged, bytes).unwrap();
        let missing = writer
            .blob_path(&writer.entry(&key!(k = "missing")).unwrap().unwrap())
            .unwrap();
        fs::remove_file(missing).unwrap();
    }
    clock.advance(Duration::from_secs(20));
    #[cfg(unix)]
    set_read_only(&dir, true);
    let files_before = snapshot_of(&dir);
    let entries_before = entries_of(&backend);

    let cache = builder()
        .read_only(true)
        .open_shared(backend.clone())
        .unwrap();
    assert!(cache.is_read_only());
    for _ in 0..3 {
        clock.advance(Duration::from_secs(120));
        assert_eq!(cache.get::<u32>(&key!(k = "small")).unwrap(), Some(1));
        assert_eq!(cache.get_bytes(&key!(k = "large")).unwrap(), Some(large(1)));
        for miss in ["expiring", "damaged", "missing"] {
            assert_eq!(cache.get_bytes(&key!(k = miss)).unwrap(), None, "{miss}");
        }
    }
    assert_eq!(cache.stats().unwrap().hits, 6);
    assert_eq!(cache.list(&Default::default()).unwrap().len(), 4);

    let refused: Vec<(&str, Error)> = vec![
        ("put", cache.put(&key!(k = "new"), &2u32).unwrap_err()),
        (
            "put_bytes",
            cache.put_bytes(&key!(k = "new"), b"x").unwrap_err(),
        ),
        ("remove", cache.remove(&key!(k = "small")).unwrap_err()),
        ("remove_prefix", cache.remove_prefix("").unwrap_err()),
        ("clear", cache.clear().unwrap_err()),
        ("cleanup_expired", cache.cleanup_expired().unwrap_err()),
        ("gc", cache.gc(&mut no_progress).unwrap_err()),
        (
            "sign_unsigned",
            cache.sign_unsigned(&mut no_progress).unwrap_err(),
        ),
        (
            "blob write",
            cache
                .blob_store()
                .unwrap()
                .write(&key!(k = "new").key(), &[b"x"])
                .unwrap_err(),
        ),
    ];
    for (what, error) in refused {
        assert!(matches!(error, Error::ReadOnly { .. }), "{what}: {error:?}");
        assert!(error.to_string().contains("read-only"), "{what}: {error}");
    }
    cache.flush().unwrap();
    drop(cache);

    assert_eq!(snapshot_of(&dir), files_before, "no file or dir changed");
    assert_eq!(
        entries_of(&backend),
        entries_before,
        "no entry removed, no access recorded"
    );
    #[cfg(unix)]
    set_read_only(&dir, false);
}

/// A read-only open needs no `blobs/`, `tmp/` or key file and makes none; a
/// missing `blobs/` reads as every blob missing, and the entries stay.
#[test]
fn a_read_only_open_creates_nothing_and_needs_nothing_but_the_dir() {
    use std::sync::Arc;

    use cacheness_core::MetadataBackend;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let backend = Arc::new(MemoryBackend::new());
    {
        let writer = Cache::builder()
            .dir(&dir)
            .inline_threshold(64)
            .open_shared(backend.clone())
            .unwrap();
        writer.put(&key!(k = "small"), &1u32).unwrap();
        writer.put_bytes(&key!(k = "large"), &[7u8; 500]).unwrap();
    }
    fs::remove_dir_all(dir.join("blobs")).unwrap();
    fs::remove_dir_all(dir.join("tmp")).unwrap();
    let before = snapshot_of(root.path());

    let cache = Cache::builder()
        .dir(&dir)
        .inline_threshold(64)
        .read_only(true)
        .open_shared(backend.clone())
        .unwrap();
    assert_eq!(cache.get::<u32>(&key!(k = "small")).unwrap(), Some(1));
    assert_eq!(cache.get_bytes(&key!(k = "large")).unwrap(), None);
    drop(cache);
    assert_eq!(
        backend.len().unwrap(),
        2,
        "the entry without its blob stays"
    );

    // Signing reads the key file, and never makes one.
    let error = Cache::builder()
        .dir(&dir)
        .sign_entries()
        .read_only(true)
        .open_shared(backend.clone())
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Config {
                field: "signing",
                ..
            }
        ),
        "{error:?}"
    );
    // A dir that is not there is not made.
    let error = Cache::builder()
        .dir(root.path().join("absent"))
        .read_only(true)
        .open(MemoryBackend::new())
        .unwrap_err();
    assert!(error.to_string().contains("absent"), "{error}");
    assert_eq!(snapshot_of(root.path()), before, "nothing created");
}

/// A backend whose put reports the entry being put as the one it replaced, as
/// happens when a rebuild found the put's blob and made an entry of it before
/// the put committed.
#[derive(Debug)]
struct RebuildRaced(MemoryBackend);

impl cacheness_core::MetadataBackend for RebuildRaced {
    fn get(
        &self,
        key: &cacheness_core::CacheKey,
    ) -> cacheness_core::Result<Option<cacheness_core::Entry>> {
        self.0.get(key)
    }
    fn put(
        &self,
        entry: cacheness_core::Entry,
    ) -> cacheness_core::Result<Option<cacheness_core::Entry>> {
        let phantom = entry.clone();
        self.0.put(entry)?;
        Ok(Some(phantom))
    }
    fn remove(
        &self,
        key: &cacheness_core::CacheKey,
    ) -> cacheness_core::Result<Option<cacheness_core::Entry>> {
        self.0.remove(key)
    }
    fn touch(&self, batch: &cacheness_core::AccessBatch) -> cacheness_core::Result<()> {
        self.0.touch(batch)
    }
    fn scan(
        &self,
        filter: &cacheness_core::ScanFilter,
        visit: &mut dyn FnMut(cacheness_core::Entry) -> std::ops::ControlFlow<()>,
    ) -> cacheness_core::Result<()> {
        self.0.scan(filter, visit)
    }
}

#[test]
fn a_put_never_deletes_the_blob_it_just_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder()
        .dir(dir.path())
        .inline_threshold(0)
        .open(RebuildRaced(MemoryBackend::new()))
        .unwrap();
    let key = key!(value = "raced");
    let value: Vec<u64> = (0..1_000).map(|index| index * 7_919).collect();
    cache.put(&key, &value).unwrap();
    assert_eq!(cache.get::<Vec<u64>>(&key).unwrap(), Some(value));
}

#[test]
fn a_held_value_lives_exactly_as_long_as_the_cache() {
    let held = std::sync::Arc::new(());
    let cache = Cache::builder()
        .hold(held.clone())
        .open(MemoryBackend::new())
        .unwrap();
    assert_eq!(std::sync::Arc::strong_count(&held), 2);
    drop(cache);
    assert_eq!(std::sync::Arc::strong_count(&held), 1);
}
