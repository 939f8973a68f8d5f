//! verify, rebuild, gc and migrate through the public API, over the memory backend
//! and a cache directory.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cacheness_core::ops::no_progress;
use cacheness_core::{
    AccessBatch, Cache, CacheKey, Capabilities, Entry, ManualClock, MetadataBackend, PutOptions,
    ScanFilter, key, migrate,
};
use cacheness_memory::MemoryBackend;

fn noise(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .flat_map(|block| *blake3::hash(&[seed, block as u8, (block >> 8) as u8]).as_bytes())
        .take(len)
        .collect()
}

fn open(dir: &Path, backend: Arc<MemoryBackend>) -> Cache {
    Cache::builder()
        .dir(dir)
        .inline_threshold(100)
        .open_shared(backend)
        .unwrap()
}

fn flip_last_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(path, bytes).unwrap();
}

#[test]
fn verify_finds_damage_and_repair_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), Arc::new(MemoryBackend::new()));
    for index in 0..6u8 {
        cache
            .put_bytes(&key!(index = index), &noise(1_000, index))
            .unwrap();
    }
    cache.put(&key!(small = true), &1).unwrap();
    assert!(cache.verify(false, &mut no_progress).unwrap().is_clean());

    let corrupted = cache.entry(&key!(index = 0u8)).unwrap().unwrap();
    flip_last_byte(&cache.blob_path(&corrupted).unwrap());
    let missing = cache.entry(&key!(index = 1u8)).unwrap().unwrap();
    fs::remove_file(cache.blob_path(&missing).unwrap()).unwrap();
    let orphan_name = format!("{}/{}-00000000000000ff", &"ab", "ab".repeat(16));
    fs::create_dir_all(dir.path().join("blobs/ab")).unwrap();
    fs::write(dir.path().join("blobs").join(&orphan_name), b"stray").unwrap();

    let mut calls = 0;
    let report = cache.verify(false, &mut |_| calls += 1).unwrap();
    assert_eq!(report.entries, 7);
    assert_eq!(report.corrupted, vec![corrupted.key]);
    assert_eq!(report.missing, vec![missing.key]);
    assert_eq!(report.orphaned, vec![orphan_name.clone()]);
    assert_eq!(calls, 7, "progress is reported per entry");
    assert!(
        cache.entry(&key!(index = 0u8)).unwrap().is_some(),
        "without repair nothing is removed"
    );

    let repaired = cache.verify(true, &mut no_progress).unwrap();
    assert!(!repaired.is_clean() && repaired.repaired);
    assert!(cache.entry(&key!(index = 0u8)).unwrap().is_none());
    assert!(cache.entry(&key!(index = 1u8)).unwrap().is_none());
    assert!(!dir.path().join("blobs").join(&orphan_name).exists());
    assert!(
        cache.verify(false, &mut no_progress).unwrap().is_clean(),
        "clean after repair"
    );
    assert_eq!(
        cache.get_bytes(&key!(index = 2u8)).unwrap(),
        Some(noise(1_000, 2))
    );
}

#[test]
fn rebuild_restores_metadata_from_blob_files() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    {
        let cache = Cache::builder()
            .dir(dir.path())
            .inline_threshold(100)
            .clock(clock.clone())
            .open(MemoryBackend::new())
            .unwrap();
        for index in 0..20u8 {
            let options = PutOptions::new()
                .prefix("restored")
                .description(format!("#{index}"));
            cache
                .put_bytes_with(&key!(index = index), &noise(500, index), &options)
                .unwrap();
        }
        clock.advance(Duration::from_secs(1));
        cache
            .put_bytes(&key!(index = 0u8), &noise(500, 100))
            .unwrap();
        cache
            .put(&key!(tiny = true), &"inline values have no file")
            .unwrap();
    }
    // An older blob of key 0 (as if a crash interrupted its deletion), and a
    // garbage file with a valid name.
    let key0 = key!(index = 0u8).key().to_hex();
    let current = fs::read(first_blob_of(dir.path(), &key0)).unwrap();
    let (header, offset) = cacheness_core::BlobHeader::decode(&current).unwrap();
    let mut older = cacheness_core::BlobHeader {
        created_at: 1,
        ..header
    }
    .encode();
    older.extend_from_slice(&current[offset..]);
    fs::write(
        dir.path()
            .join(format!("blobs/{}/{key0}-00000000000000aa", &key0[..2])),
        older,
    )
    .unwrap();
    let garbage = format!("{}/{}-0000000000000001", &key0[..2], key0);
    fs::write(dir.path().join("blobs").join(&garbage), b"not a blob").unwrap();

    // The metadata is lost: a new memory backend over the same directory.
    let cache = Cache::builder()
        .dir(dir.path())
        .open(MemoryBackend::new())
        .unwrap();
    assert_eq!(cache.stats().unwrap().entries, 0);
    let report = cache.rebuild(&mut no_progress).unwrap();
    assert_eq!(report.restored, 20);
    assert_eq!(
        report.superseded, 1,
        "the older blob of key 0 is passed over"
    );
    assert_eq!(report.invalid.len(), 1, "{:?}", report.invalid);
    assert_eq!(report.invalid[0].0, garbage);
    assert_eq!(
        cache.get_bytes(&key!(index = 0u8)).unwrap(),
        Some(noise(500, 100)),
        "the newest version wins"
    );
    for index in 1..20u8 {
        assert_eq!(
            cache.get_bytes(&key!(index = index)).unwrap(),
            Some(noise(500, index))
        );
        let entry = cache.entry(&key!(index = index)).unwrap().unwrap();
        assert_eq!(entry.prefix, "restored");
        assert_eq!(entry.description, format!("#{index}"));
        assert_eq!(entry.params, Some(key!(index = index)));
    }
    let again = cache.rebuild(&mut no_progress).unwrap();
    assert_eq!(
        (again.restored, again.present),
        (0, 20),
        "rebuilding twice changes nothing"
    );
}

fn first_blob_of(dir: &Path, key_hex: &str) -> std::path::PathBuf {
    fs::read_dir(dir.join("blobs").join(&key_hex[..2]))
        .unwrap()
        .flatten()
        .map(|file| file.path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(key_hex)
        })
        .expect("the key has a blob")
}

#[test]
fn gc_removes_expired_entries_orphans_temp_files_and_enforces_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let backend = Arc::new(MemoryBackend::new());
    let cache = Cache::builder()
        .dir(dir.path())
        .inline_threshold(100)
        .clock(clock.clone())
        .open_shared(backend.clone())
        .unwrap();
    for index in 0..10u8 {
        let options = if index < 3 {
            PutOptions::new().ttl(Duration::from_secs(1))
        } else {
            PutOptions::new()
        };
        cache
            .put_bytes_with(&key!(index = index), &noise(1_000, index), &options)
            .unwrap();
    }
    clock.advance(Duration::from_secs(2));
    let orphan = dir
        .path()
        .join(format!("blobs/cd/{}-0000000000000001", "cd".repeat(16)));
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::write(&orphan, b"orphan").unwrap();
    let temp = dir.path().join("tmp/4294967295-0000000000000001.tmp");
    fs::write(&temp, b"half a blob").unwrap();
    // Temp files go by age now, not by the pid in their name.
    fs::File::options()
        .write(true)
        .open(&temp)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - 2 * cacheness_core::blob::GRACE_PERIOD)
        .unwrap();
    drop(cache);

    // Reopen with a limit that the 7 remaining entries exceed.
    let cache = Cache::builder()
        .dir(dir.path())
        .max_size(5_000)
        .clock(clock.clone())
        .open_shared(backend)
        .unwrap();
    let report = cache.gc(&mut no_progress).unwrap();
    assert_eq!(report.expired, 3);
    assert_eq!(report.orphaned_blobs, 1);
    assert!(!orphan.exists() && !temp.exists());
    assert_eq!(
        report.evicted, 3,
        "7 000 bytes down to the 4 000-byte low watermark"
    );
    assert_eq!(report.total_size, 4_000);
    assert!(cache.verify(false, &mut no_progress).unwrap().is_clean());
}

/// A backend that cannot hold inline values, to test migration moving them out.
#[derive(Debug, Default)]
struct BlobsOnly(MemoryBackend);

impl MetadataBackend for BlobsOnly {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new(false, false, false, false)
    }
    fn get(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        self.0.get(key)
    }
    fn put(&self, entry: Entry) -> cacheness_core::Result<Option<Entry>> {
        self.0.put(entry)
    }
    fn remove(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        self.0.remove(key)
    }
    fn touch(&self, batch: &AccessBatch) -> cacheness_core::Result<()> {
        self.0.touch(batch)
    }
    fn scan(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(Entry) -> std::ops::ControlFlow<()>,
    ) -> cacheness_core::Result<()> {
        self.0.scan(filter, visit)
    }
}

#[test]
fn migration_copies_everything_moves_inline_values_out_and_can_be_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let source = Arc::new(MemoryBackend::new());
    let cache = open(dir.path(), source.clone());
    for index in 0..2_500u32 {
        if index % 2 == 0 {
            cache.put(&key!(index = index), &index).unwrap();
        } else {
            cache
                .put_bytes(&key!(index = index), &noise(300, index as u8))
                .unwrap();
        }
    }
    drop(cache);
    let target = Arc::new(BlobsOnly::default());
    let blobs = cacheness_core::LocalBlobStore::open(dir.path(), Default::default()).unwrap();
    let mut last = None;
    let report = migrate(
        source.as_ref(),
        target.as_ref(),
        Some(&blobs),
        &mut |progress| last = Some(progress),
    )
    .unwrap();
    assert_eq!(
        (report.entries, report.copied, report.moved_to_blobs),
        (2_500, 2_500, 1_250)
    );
    assert_eq!(
        last.map(|progress| (progress.done, progress.total)),
        Some((2_500, Some(2_500)))
    );
    let again = migrate(
        source.as_ref(),
        target.as_ref(),
        Some(&blobs),
        &mut no_progress,
    )
    .unwrap();
    assert_eq!(
        (again.copied, again.already_present),
        (0, 2_500),
        "a rerun copies nothing twice"
    );

    let migrated = Cache::builder()
        .dir(dir.path())
        .open_shared(target)
        .unwrap();
    for index in 0..2_500u32 {
        if index % 2 == 0 {
            assert_eq!(
                migrated.get::<u32>(&key!(index = index)).unwrap(),
                Some(index)
            );
        } else {
            assert_eq!(
                migrated.get_bytes(&key!(index = index)).unwrap(),
                Some(noise(300, index as u8))
            );
        }
    }
}
