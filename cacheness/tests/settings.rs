//! The settings that define a cache, stored in its dir at creation, and the
//! default location of a cache without a dir.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cacheness::ops::{CacheSettings, SETTINGS_FILE, read_settings, write_settings};
use cacheness::{CacheConfig, EvictionPolicy, NamedCodec, key};

fn open(dir: &Path) -> CacheConfig {
    CacheConfig::new().dir(dir).backend("sqlite")
}

#[test]
fn the_settings_of_the_first_open_are_stored_and_applied_by_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path())
        .max_size(1 << 20)
        .default_ttl(Duration::from_secs(3600))
        .eviction(EvictionPolicy::Lfu)
        .codec(NamedCodec::Json)
        .open()
        .unwrap();
    cache.put(&key!(a = 1), &"one").unwrap();
    drop(cache);
    let stored = read_settings(dir.path()).unwrap().unwrap();
    assert_eq!(
        (
            stored.codec,
            stored.max_size,
            stored.default_ttl(),
            stored.eviction
        ),
        (
            NamedCodec::Json,
            Some(1 << 20),
            Some(Duration::from_secs(3600)),
            EvictionPolicy::Lfu
        )
    );
    // A plain open uses them: the JSON entries read, the limit applies.
    let cache = open(dir.path()).open().unwrap();
    assert_eq!(cache.codec().name(), "json");
    assert_eq!(
        cache.get::<String>(&key!(a = 1)).unwrap().as_deref(),
        Some("one")
    );
    assert_eq!(cache.stats().unwrap().max_size, Some(1 << 20));
}

#[test]
fn a_different_setting_applies_to_the_handle_only_and_every_entry_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path()).max_size(1 << 20).open().unwrap();
    first.put(&key!(written = "first"), &vec![1.5_f64]).unwrap();
    drop(first);
    let json = open(dir.path()).codec(NamedCodec::Json).open().unwrap();
    assert_eq!(
        json.codec().name(),
        "json",
        "the handle writes with its own"
    );
    json.put(&key!(written = "json"), &vec![2.5_f64]).unwrap();
    assert_eq!(
        json.get::<Vec<f64>>(&key!(written = "first")).unwrap(),
        Some(vec![1.5]),
        "entries of the stored codec still read"
    );
    drop(json);
    let bigger = open(dir.path()).max_size(2 << 20).open().unwrap();
    assert_eq!(bigger.stats().unwrap().max_size, Some(2 << 20));
    assert_eq!(
        bigger.get::<Vec<f64>>(&key!(written = "json")).unwrap(),
        Some(vec![2.5])
    );
    drop(bigger);
    let stored = read_settings(dir.path()).unwrap().unwrap();
    assert_eq!(stored.max_size, Some(1 << 20), "an open never changes them");
    assert_eq!(stored.codec, NamedCodec::default());
    write_settings(
        dir.path(),
        &CacheSettings::new(stored.codec, None, None, EvictionPolicy::Lrs, false),
    )
    .unwrap();
    let unlimited = open(dir.path()).open().unwrap();
    assert_eq!(unlimited.stats().unwrap().max_size, None);
}

#[test]
fn a_dir_from_before_settings_reads_its_json_entries_writable_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path()).codec(NamedCodec::Json).open().unwrap();
    cache.put(&key!(old = true), &vec![1u32, 2]).unwrap();
    drop(cache);
    fs::remove_file(dir.path().join(SETTINGS_FILE)).unwrap();
    let reader = open(dir.path()).read_only(true).open().unwrap();
    assert_eq!(
        reader.get::<Vec<u32>>(&key!(old = true)).unwrap(),
        Some(vec![1, 2])
    );
    drop(reader);
    let cache = open(dir.path()).open().unwrap();
    assert_eq!(
        cache.get::<Vec<u32>>(&key!(old = true)).unwrap(),
        Some(vec![1, 2])
    );
    assert_eq!(
        read_settings(dir.path()).unwrap().unwrap().codec,
        NamedCodec::default()
    );
}

#[test]
fn a_stored_size_limit_of_zero_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()).open().unwrap());
    let path = dir.path().join(SETTINGS_FILE);
    let mut value: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    value["max_size"] = 0.into();
    fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
    let error = open(dir.path()).open().unwrap_err().to_string();
    assert!(
        error.contains(SETTINGS_FILE) && error.contains("max_size 0"),
        "{error}"
    );
}

#[test]
fn a_read_only_open_writes_no_settings() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()).open().unwrap());
    fs::remove_file(dir.path().join(SETTINGS_FILE)).unwrap();
    drop(open(dir.path()).read_only(true).open().unwrap());
    assert!(!dir.path().join(SETTINGS_FILE).exists());
}

/// Puts something hostile where the settings file goes.
type Plant<'a> = dyn Fn(&Path) + 'a;

#[test]
fn hostile_settings_files_are_clear_errors() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("elsewhere.json");
    let good = serde_json::to_vec(&CacheSettings::new(
        NamedCodec::Json,
        None,
        None,
        EvictionPolicy::Lru,
        false,
    ))
    .unwrap();
    fs::write(&target, &good).unwrap();
    // What is planted, a word the error must say, how it is planted.
    let plants: [(&str, &str, &Plant<'_>); 6] = [
        ("symlink", "symbolic link", &|path| {
            std::os::unix::fs::symlink(&target, path).unwrap()
        }),
        ("fifo", "fifo", &|path| {
            let status = Command::new("mkfifo").arg(path).status().unwrap();
            assert!(status.success());
        }),
        ("directory", "directory", &|path| {
            fs::create_dir(path).unwrap()
        }),
        ("garbage", "line 1", &|path| {
            fs::write(path, b"{ not json").unwrap()
        }),
        ("newer format", "newer", &|path| {
            fs::write(path, br#"{"format_version": 9, "codec": "json"}"#).unwrap()
        }),
        ("unknown field", "colour", &|path| {
            let mut value: serde_json::Value = serde_json::from_slice(&good).unwrap();
            value["colour"] = "blue".into();
            fs::write(path, serde_json::to_vec(&value).unwrap()).unwrap()
        }),
    ];
    for (what, word, plant) in plants {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()).open().unwrap());
        let path = dir.path().join(SETTINGS_FILE);
        fs::remove_file(&path).unwrap();
        plant(&path);
        let error = open(dir.path()).open().unwrap_err().to_string();
        assert!(error.contains(SETTINGS_FILE), "{what}: {error}");
        assert!(error.to_lowercase().contains(word), "{what}: {error}");
        assert_eq!(fs::read(&target).unwrap(), good, "{what}: left alone");
    }
}

#[test]
fn processes_creating_one_dir_at_once_agree_on_its_settings() {
    const CHILDREN: u64 = 4;
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("fresh");
    let children: Vec<_> = (0..CHILDREN)
        .map(|child| {
            Command::new(std::env::current_exe().unwrap())
                .args(["settings_child_role", "--exact", "--nocapture", "--quiet"])
                .env("CACHENESS_SETTINGS_CHILD", &cache_dir)
                .env("CACHENESS_SETTINGS_LIMIT", ((child + 1) << 20).to_string())
                .output()
                .unwrap()
        })
        .collect();
    for output in &children {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stored = read_settings(&cache_dir).unwrap().unwrap();
    let limit = stored.max_size.unwrap();
    assert!((1..=CHILDREN).any(|child| limit == child << 20), "{limit}");
    let leftovers: Vec<_> = fs::read_dir(&cache_dir)
        .unwrap()
        .flatten()
        .filter(|item| item.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temp file left: {leftovers:?}");
}

/// The child of `processes_creating_one_dir_at_once_agree_on_its_settings`.
#[test]
fn settings_child_role() {
    let Ok(dir) = std::env::var("CACHENESS_SETTINGS_CHILD") else {
        return;
    };
    let limit: u64 = std::env::var("CACHENESS_SETTINGS_LIMIT")
        .unwrap()
        .parse()
        .unwrap();
    let cache = open(Path::new(&dir)).max_size(limit).open().unwrap();
    cache.put(&key!(limit = limit), &limit).unwrap();
}

#[test]
fn without_a_dir_a_cache_lives_in_the_platform_cache_dir() {
    let home = tempfile::tempdir().unwrap();
    let xdg = home.path().join("xdg-cache");
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "default_dir_child_role",
            "--exact",
            "--nocapture",
            "--quiet",
        ])
        .env("CACHENESS_DEFAULT_DIR_CHILD", "1")
        .env("HOME", home.path())
        .env("XDG_CACHE_HOME", &xdg)
        .env_remove("CACHENESS_DIR")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = xdg.join("cacheness");
    assert!(
        dir.join("cache_metadata.db").is_file(),
        "sqlite, in {dir:?}"
    );
    assert!(dir.join(SETTINGS_FILE).is_file());
    // And what the child stored is there for the next process.
    let cache = open(&dir).open().unwrap();
    assert_eq!(cache.get::<u32>(&key!(persistent = true)).unwrap(), Some(7));
}

/// The child of `without_a_dir_a_cache_lives_in_the_platform_cache_dir`.
#[test]
fn default_dir_child_role() {
    if std::env::var("CACHENESS_DEFAULT_DIR_CHILD").is_err() {
        return;
    }
    let cache = CacheConfig::from_env().unwrap().open().unwrap();
    cache.put(&key!(persistent = true), &7u32).unwrap();
}

#[test]
fn turning_signing_on_is_recorded_once_the_signed_open_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()).open().unwrap());
    assert!(!read_settings(dir.path()).unwrap().unwrap().sign_entries);
    let signed = open(dir.path()).sign_entries(true).open().unwrap();
    signed.put(&key!(signed = true), &1u32).unwrap();
    drop(signed);
    assert!(read_settings(dir.path()).unwrap().unwrap().sign_entries);
}
