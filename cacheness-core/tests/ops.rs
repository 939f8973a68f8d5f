//! verify, rebuild, gc and migrate through the public API, over the memory backend
//! and a cache directory.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cacheness_core::blob::GRACE_PERIOD;
use cacheness_core::ops::no_progress;
use cacheness_core::{
    AccessBatch, Cache, CacheKey, Capabilities, Entry, GcOptions, ManualClock, MetadataBackend,
    PutOptions, ScanFilter, VerifyOptions, key, migrate,
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

/// Makes a file look written longer ago than the grace period: an orphan
/// left by a crash, not a put in progress.
fn make_old(path: &Path) {
    set_modified(
        path,
        SystemTime::now() - GRACE_PERIOD - Duration::from_secs(1),
    );
}

fn set_modified(path: &Path, time: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
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
    make_old(&dir.path().join("blobs").join(&orphan_name));

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
    let mut older = header;
    older.created_at = 1;
    let mut older = older.encode();
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
    make_old(&orphan);
    make_old(&temp);
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
        Capabilities::default().inline_values(false)
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

/// A blob file for `key` written the way a put writes it, with no entry yet:
/// what gc and verify see between a put's rename and its metadata commit.
fn blob_without_entry(
    dir: &Path,
    params: &cacheness_core::Params,
    value: &[u8],
) -> (String, Entry) {
    let mut described = Entry::new(
        params.key(),
        cacheness_core::ContentHash::of(value),
        cacheness_core::Location::Inline(value.to_vec()),
    );
    described.codec = cacheness_core::RAW_CODEC.into();
    described.params = Some(params.clone());
    described.created_at = 1_000;
    let header = cacheness_core::BlobHeader::from_entry(&described);
    let store = cacheness_core::LocalBlobStore::open(dir, Default::default()).unwrap();
    let name = cacheness_core::BlobStore::write(&store, &params.key(), &[&header.encode(), value])
        .unwrap();
    let entry = header.into_entry(name.clone());
    (name, entry)
}

#[test]
fn gc_and_verify_keep_the_blob_of_a_put_that_has_not_committed_yet() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let cache = open(dir.path(), backend.clone());
    let (name, entry) = blob_without_entry(dir.path(), &key!(pending = 1), &noise(6_000, 1));
    let path = dir.path().join("blobs").join(&name);

    let verified = cache.verify(true, &mut no_progress).unwrap();
    assert!(verified.is_clean(), "{verified:?}");
    assert_eq!(cache.gc(&mut no_progress).unwrap().orphaned_blobs, 0);
    assert!(path.exists(), "a young unreferenced blob is kept");
    // The put commits: its value is there.
    backend.put(entry).unwrap();
    assert_eq!(
        cache.get_bytes(&key!(pending = 1)).unwrap(),
        Some(noise(6_000, 1))
    );

    // A blob that never got its entry, written over an hour ago, is an orphan.
    let (old_name, _) = blob_without_entry(dir.path(), &key!(pending = 2), b"lost");
    let old_path = dir.path().join("blobs").join(&old_name);
    make_old(&old_path);
    let report = cache.verify(false, &mut no_progress).unwrap();
    assert_eq!(report.orphaned, vec![old_name.clone()]);
    assert_eq!(cache.gc(&mut no_progress).unwrap().orphaned_blobs, 1);
    assert!(!old_path.exists());

    // A time in the future cannot tell: kept. Zero grace: taken at any age.
    let (future_name, _) = blob_without_entry(dir.path(), &key!(pending = 3), b"future");
    let future_path = dir.path().join("blobs").join(&future_name);
    set_modified(&future_path, SystemTime::now() + 2 * GRACE_PERIOD);
    let (young_name, _) = blob_without_entry(dir.path(), &key!(pending = 4), b"young");
    assert_eq!(cache.gc(&mut no_progress).unwrap().orphaned_blobs, 0);
    assert!(future_path.exists());
    let now = VerifyOptions::new().grace(Duration::ZERO);
    assert_eq!(
        cache.verify_with(&now, &mut no_progress).unwrap().orphaned,
        vec![future_name.clone(), young_name.clone()]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    let report = cache
        .gc_with(&GcOptions::new().grace(Duration::ZERO), &mut no_progress)
        .unwrap();
    assert_eq!(report.orphaned_blobs, 2);
    assert!(!future_path.exists());
    assert_eq!(
        cache.get_bytes(&key!(pending = 1)).unwrap(),
        Some(noise(6_000, 1)),
        "a referenced blob is never an orphan"
    );
}

const CHILD_ROLE: &str = "CACHENESS_CORE_OPS_CHILD_DIR";

/// The child of `a_put_in_progress_in_another_process_keeps_its_blob`: writes
/// blobs as a put in this other process does, prints their names, and waits
/// (alive, its commits pending) until its stdin closes.
#[test]
fn child_process_role() {
    let Some(dir) = std::env::var_os(CHILD_ROLE) else {
        return;
    };
    for index in 0..20u32 {
        let (name, _) = blob_without_entry(
            Path::new(&dir),
            &key!(child = index),
            &noise(6_000, index as u8),
        );
        println!("blob {name}");
    }
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut rest);
}

#[test]
fn a_put_in_progress_in_another_process_keeps_its_blob() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let cache = open(dir.path(), backend.clone());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_role",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(|line| line.ok());
    let names: Vec<String> = lines
        .by_ref()
        // The harness may print "test child_process_role ... " before the first.
        .filter_map(|line| line.split_once("blob ").map(|(_, name)| name.to_owned()))
        .take(20)
        .collect();
    assert_eq!(names.len(), 20);
    // The writer is alive and has not committed: maintenance here leaves its blobs.
    let report = cache.verify(true, &mut no_progress).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(cache.gc(&mut no_progress).unwrap().orphaned_blobs, 0);
    drop(child.stdin.take());
    lines.for_each(drop);
    assert!(child.wait().unwrap().success());
    // Its commits arrive (as its metadata backend would publish them).
    for name in &names {
        let file = fs::read(dir.path().join("blobs").join(name)).unwrap();
        let (header, _) = cacheness_core::BlobHeader::decode(&file).unwrap();
        backend.put(header.into_entry(name.clone())).unwrap();
    }
    for index in 0..20u32 {
        assert_eq!(
            cache.get_bytes(&key!(child = index)).unwrap(),
            Some(noise(6_000, index as u8)),
            "put {index} of the other process"
        );
    }
}

#[test]
fn maintenance_beside_writer_threads_loses_nothing_and_reports_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const WRITERS: u32 = 3;
    const PUTS: u32 = 300;
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), Arc::new(MemoryBackend::new()));
    let done = AtomicBool::new(false);
    let mut rounds = 0u32;
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let cache = &cache;
                scope.spawn(move || {
                    for index in 0..PUTS {
                        // Fresh keys (a blob with no entry yet) and a key
                        // replaced over and over (an entry whose blob goes).
                        cache
                            .put_bytes(
                                &key!(writer = writer, index = index),
                                &noise(6_000, index as u8),
                            )
                            .unwrap();
                        cache
                            .put_bytes(
                                &key!(writer = writer, replaced = true),
                                &noise(2_000, index as u8),
                            )
                            .unwrap();
                    }
                })
            })
            .collect();
        let maintenance = scope.spawn(|| {
            let mut rounds = 0;
            while !done.load(Ordering::Relaxed) {
                let report = cache.verify(true, &mut no_progress).unwrap();
                assert!(report.is_clean(), "round {rounds}: {report:?}");
                let gc = cache.gc(&mut no_progress).unwrap();
                assert_eq!(gc.orphaned_blobs, 0, "round {rounds}");
                rounds += 1;
            }
            rounds
        });
        for writer in writers {
            writer.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        rounds = maintenance.join().unwrap();
    });
    assert!(rounds > 0);
    eprintln!(
        "{rounds} rounds of verify --repair and gc beside {} puts",
        WRITERS * PUTS * 2
    );
    for writer in 0..WRITERS {
        for index in 0..PUTS {
            assert_eq!(
                cache
                    .get_bytes(&key!(writer = writer, index = index))
                    .unwrap(),
                Some(noise(6_000, index as u8)),
                "acknowledged put {writer}/{index} lost after {rounds} rounds"
            );
        }
        assert_eq!(
            cache
                .get_bytes(&key!(writer = writer, replaced = true))
                .unwrap(),
            Some(noise(2_000, (PUTS - 1) as u8))
        );
    }
    assert!(cache.verify(false, &mut no_progress).unwrap().is_clean());
}

/// A backend whose scans see an older state than its lookups: a verify whose
/// scan passed an entry that a writer then replaced (and whose blob it deleted).
#[derive(Debug)]
struct StaleScan {
    live: Arc<MemoryBackend>,
    scanned: MemoryBackend,
}

impl MetadataBackend for StaleScan {
    fn get(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        self.live.get(key)
    }
    fn put(&self, entry: Entry) -> cacheness_core::Result<Option<Entry>> {
        self.live.put(entry)
    }
    fn remove(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        self.live.remove(key)
    }
    fn touch(&self, batch: &AccessBatch) -> cacheness_core::Result<()> {
        self.live.touch(batch)
    }
    fn scan(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(Entry) -> std::ops::ControlFlow<()>,
    ) -> cacheness_core::Result<()> {
        self.scanned.scan(filter, visit)
    }
}

#[test]
fn verify_does_not_report_an_entry_that_changed_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let live = Arc::new(MemoryBackend::new());
    let cache = open(dir.path(), live.clone());
    cache.put_bytes(&key!(raced = 1), &noise(1_000, 1)).unwrap();
    cache.put_bytes(&key!(raced = 2), &noise(1_000, 2)).unwrap();
    let scanned = MemoryBackend::new();
    for index in 1..=2 {
        scanned
            .put(cache.entry(&key!(raced = index)).unwrap().unwrap())
            .unwrap();
    }
    // After the scan: key 1 replaced (its old blob deleted), key 2 removed.
    cache.put_bytes(&key!(raced = 1), &noise(1_000, 3)).unwrap();
    cache.remove(&key!(raced = 2)).unwrap();
    let racing = Cache::builder()
        .dir(dir.path())
        .inline_threshold(100)
        .open(StaleScan {
            live: live.clone(),
            scanned,
        })
        .unwrap();
    let report = racing.verify(true, &mut no_progress).unwrap();
    assert!(
        report.missing.is_empty() && report.corrupted.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        cache.get_bytes(&key!(raced = 1)).unwrap(),
        Some(noise(1_000, 3))
    );
}

/// Rewrites the header of the blob file at `path` with `change`, keeping its bytes.
fn rewrite_header(path: &Path, change: impl FnOnce(&mut cacheness_core::BlobHeader)) {
    let file = fs::read(path).unwrap();
    let (mut header, offset) = cacheness_core::BlobHeader::decode(&file).unwrap();
    change(&mut header);
    let mut rewritten = header.encode();
    rewritten.extend_from_slice(&file[offset..]);
    fs::write(path, rewritten).unwrap();
}

#[test]
fn verify_checks_blob_headers_and_rebuild_refuses_parameters_that_are_not_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), Arc::new(MemoryBackend::new()));
    for index in 0..4u8 {
        cache
            .put_bytes(&key!(model = "a", index = index), &noise(1_000, index))
            .unwrap();
    }
    let path_of = |index: u8| {
        let entry = cache
            .entry(&key!(model = "a", index = index))
            .unwrap()
            .unwrap();
        cache.blob_path(&entry).unwrap()
    };
    // A flipped byte in the parameters ("a" -> "b"): they no longer hash to the key.
    let params_path = path_of(0);
    let file = fs::read(&params_path).unwrap();
    let at = file
        .windows(5)
        .position(|window| window == b"\"a\"}}" || window == b"\"a\",\"")
        .or_else(|| file.windows(3).position(|window| window == b"\"a\""))
        .expect("the model parameter is in the header");
    let mut flipped = file.clone();
    flipped[at + 1] = b'b';
    fs::write(&params_path, &flipped).unwrap();
    // Other fields the entry has too.
    rewrite_header(&path_of(1), |header| header.created_at += 1);
    rewrite_header(&path_of(2), |header| header.expires_at = Some(1));

    let report = cache.verify(false, &mut no_progress).unwrap();
    let mut expected: Vec<CacheKey> = (0..3u8)
        .map(|index| key!(model = "a", index = index).key())
        .collect();
    expected.sort();
    let mut corrupted = report.corrupted.clone();
    corrupted.sort();
    assert_eq!(corrupted, expected, "{report:?}");

    // The metadata is lost: rebuild restores what it can trust.
    let fresh = Cache::builder()
        .dir(dir.path())
        .open(MemoryBackend::new())
        .unwrap();
    let rebuilt = fresh.rebuild(&mut no_progress).unwrap();
    assert_eq!(rebuilt.invalid.len(), 1, "{rebuilt:?}");
    assert!(
        rebuilt.invalid[0].1.contains("do not hash to its key"),
        "{rebuilt:?}"
    );
    assert!(
        fresh
            .entry(&key!(model = "a", index = 0u8))
            .unwrap()
            .is_none()
    );
    assert!(
        fresh
            .entry(&key!(model = "b", index = 0u8))
            .unwrap()
            .is_none()
    );
    assert_eq!(
        fresh.get_bytes(&key!(model = "a", index = 3u8)).unwrap(),
        Some(noise(1_000, 3))
    );
}

/// A backend holding entries it cannot decode (as a damaged SQLite row or JSON
/// line would be), beside readable ones.
#[derive(Debug, Default)]
struct WithUnreadable {
    inner: MemoryBackend,
    unreadable: std::sync::Mutex<Vec<CacheKey>>,
}

impl MetadataBackend for WithUnreadable {
    fn get(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        self.inner.get(key)
    }
    fn put(&self, entry: Entry) -> cacheness_core::Result<Option<Entry>> {
        self.inner.put(entry)
    }
    fn remove(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        self.inner.remove(key)
    }
    fn touch(&self, batch: &AccessBatch) -> cacheness_core::Result<()> {
        self.inner.touch(batch)
    }
    fn scan(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(Entry) -> std::ops::ControlFlow<()>,
    ) -> cacheness_core::Result<()> {
        self.inner.scan(filter, visit)
    }
    fn unreadable(&self, visit: &mut dyn FnMut(CacheKey, String)) -> cacheness_core::Result<()> {
        for key in self.unreadable.lock().unwrap().iter() {
            visit(*key, "nested too deep".into());
        }
        Ok(())
    }
    fn remove_unreadable(&self, key: &CacheKey) -> cacheness_core::Result<bool> {
        let mut unreadable = self.unreadable.lock().unwrap();
        let before = unreadable.len();
        unreadable.retain(|held| held != key);
        Ok(unreadable.len() < before)
    }
}

#[test]
fn verify_reports_unreadable_entries_and_repair_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(WithUnreadable::default());
    let cache = Cache::builder()
        .dir(dir.path())
        .inline_threshold(100)
        .open_shared(backend.clone())
        .unwrap();
    cache
        .put_bytes(&key!(readable = 1), &noise(1_000, 1))
        .unwrap();
    // An entry the backend can no longer decode; its blob file is old.
    let bad = key!(readable = 0).key();
    let (name, _) = blob_without_entry(dir.path(), &key!(readable = 0), b"unreadable row");
    make_old(&dir.path().join("blobs").join(&name));
    backend.unreadable.lock().unwrap().push(bad);

    let report = cache.verify(false, &mut no_progress).unwrap();
    assert_eq!(report.unreadable, vec![(bad, "nested too deep".to_owned())]);
    assert!(
        report.orphaned.is_empty(),
        "its blob may be its entry's: {report:?}"
    );
    assert!(!report.is_clean());
    assert_eq!(cache.gc(&mut no_progress).unwrap().orphaned_blobs, 0);
    assert!(dir.path().join("blobs").join(&name).exists());

    let repaired = cache.verify(true, &mut no_progress).unwrap();
    assert_eq!(repaired.unreadable.len(), 1);
    assert!(backend.unreadable.lock().unwrap().is_empty());
    // The row gone, its old blob is an orphan like any other.
    assert_eq!(cache.gc(&mut no_progress).unwrap().orphaned_blobs, 1);
    assert!(cache.verify(false, &mut no_progress).unwrap().is_clean());
    assert_eq!(
        cache.get_bytes(&key!(readable = 1)).unwrap(),
        Some(noise(1_000, 1))
    );
}

/// Runs `operation` on another thread and fails if it does not finish in
/// `limit`, instead of hanging the test run.
fn finishes_within<T: Send + 'static>(
    limit: Duration,
    operation: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(operation());
    });
    receiver
        .recv_timeout(limit)
        .expect("the operation hangs (a FIFO opened for reading?)")
}

#[cfg(target_os = "linux")]
#[test]
fn fifos_and_symlinks_at_blob_names_neither_hang_nor_lead_outside() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let cache = Arc::new(open(&dir, Arc::new(MemoryBackend::new())));
    cache.put_bytes(&key!(fifo = 1), &noise(1_000, 1)).unwrap();
    cache.put_bytes(&key!(link = 1), &noise(1_000, 2)).unwrap();
    let fifo_path = cache
        .blob_path(&cache.entry(&key!(fifo = 1)).unwrap().unwrap())
        .unwrap();
    let link_path = cache
        .blob_path(&cache.entry(&key!(link = 1)).unwrap().unwrap())
        .unwrap();
    // The blob file moved outside the cache dir, a link to it in its place,
    // and a FIFO in place of the other blob.
    let outside = root.path().join("outside-blob");
    fs::rename(&link_path, &outside).unwrap();
    make_old(&outside);
    std::os::unix::fs::symlink(&outside, &link_path).unwrap();
    fs::remove_file(&fifo_path).unwrap();
    let mkfifo = std::process::Command::new("mkfifo")
        .arg(&fifo_path)
        .status()
        .unwrap();
    assert!(mkfifo.success());

    let report = {
        let cache = cache.clone();
        finishes_within(Duration::from_secs(20), move || {
            cache.verify(false, &mut no_progress).unwrap()
        })
    };
    assert_eq!(report.corrupted, vec![key!(fifo = 1).key()], "{report:?}");
    assert_eq!(report.missing, vec![key!(link = 1).key()], "{report:?}");
    {
        let cache = cache.clone();
        let got = finishes_within(Duration::from_secs(20), move || {
            cache
                .get_bytes(&key!(fifo = 1))
                .map_err(|error| error.to_string())
        });
        assert!(!matches!(got, Ok(Some(_))), "{got:?}");
    }
    // The metadata lost: rebuild neither hangs nor restores through the link.
    let fresh = Arc::new(
        Cache::builder()
            .dir(&dir)
            .open(MemoryBackend::new())
            .unwrap(),
    );
    let rebuilt = {
        let fresh = fresh.clone();
        finishes_within(Duration::from_secs(20), move || {
            fresh.rebuild(&mut no_progress).unwrap()
        })
    };
    assert_eq!(rebuilt.restored, 0, "{rebuilt:?}");
    let gc = {
        let fresh = fresh.clone();
        finishes_within(Duration::from_secs(20), move || {
            fresh
                .gc_with(&GcOptions::new().grace(Duration::ZERO), &mut no_progress)
                .unwrap()
        })
    };
    assert_eq!(gc.orphaned_blobs, 0, "{gc:?}");
    assert!(outside.exists(), "a link's target is never deleted");
}

/// A backend over `live` whose first put lets another writer's put commit just
/// before it: the race between a rebuild's look-up and its put.
struct PutRacesRebuild {
    live: Arc<MemoryBackend>,
    racing_put: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for PutRacesRebuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PutRacesRebuild")
    }
}

impl MetadataBackend for PutRacesRebuild {
    fn get(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        self.live.get(key)
    }
    fn put(&self, entry: Entry) -> cacheness_core::Result<Option<Entry>> {
        let racing_put = self.racing_put.lock().unwrap().take();
        if let Some(racing_put) = racing_put {
            racing_put();
        }
        self.live.put(entry)
    }
    fn remove(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        self.live.remove(key)
    }
    fn touch(&self, batch: &AccessBatch) -> cacheness_core::Result<()> {
        self.live.touch(batch)
    }
    fn scan(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(Entry) -> std::ops::ControlFlow<()>,
    ) -> cacheness_core::Result<()> {
        self.live.scan(filter, visit)
    }
}

#[test]
fn rebuild_never_replaces_a_put_that_commits_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let live = Arc::new(MemoryBackend::new());
    let writer = open(dir.path(), live.clone());
    let key = key!(raced = "rebuild");
    writer.put_bytes(&key, &noise(2_000, 1)).unwrap();
    // The metadata is lost; the blob file stays for the rebuild to find.
    live.remove(&key.key()).unwrap();
    let racing_writer = open(dir.path(), live.clone());
    let racing_key = key.clone();
    let rebuilding = Cache::builder()
        .dir(dir.path())
        .inline_threshold(100)
        .open(PutRacesRebuild {
            live: live.clone(),
            racing_put: std::sync::Mutex::new(Some(Box::new(move || {
                racing_writer
                    .put_bytes(&racing_key, &noise(2_000, 2))
                    .unwrap();
            }))),
        })
        .unwrap();
    let report = rebuilding.rebuild(&mut no_progress).unwrap();
    assert_eq!(report.restored, 0, "{report:?}");
    assert_eq!(
        writer.get_bytes(&key).unwrap(),
        Some(noise(2_000, 2)),
        "the put that committed during the rebuild is what the key holds"
    );
}

/// A sparse file of a terabyte at a blob's name: a length no read may trust.
const HUGE: u64 = 1 << 40;

fn make_huge(path: &Path) {
    let file = fs::File::options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    file.set_len(HUGE).unwrap();
}

#[test]
fn huge_sparse_files_at_blob_names_are_damage_and_cost_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let cache = open(dir.path(), backend.clone());
    for index in 0..4u8 {
        cache
            .put_bytes(&key!(huge = index), &noise(1_000, index))
            .unwrap();
    }
    // No header at all: a terabyte of zeros.
    fs::create_dir_all(dir.path().join("blobs/5b")).unwrap();
    let zeros = format!("5b/{}-ffffffffffffffff", "5b".repeat(16));
    make_huge(&dir.path().join("blobs").join(&zeros));
    // A valid header (a copy of a real blob) grown to a terabyte: its length
    // is not the header's plus the stored size the header gives.
    let copied = cache.entry(&key!(huge = 0u8)).unwrap().unwrap();
    let copied_path = cache.blob_path(&copied).unwrap();
    let grown_path =
        copied_path.with_file_name(format!("{}-fffffffffffffffe", copied.key.to_hex()));
    fs::copy(&copied_path, &grown_path).unwrap();
    make_huge(&grown_path);
    // An entry's own blob grown to a terabyte.
    let damaged = cache.entry(&key!(huge = 1u8)).unwrap().unwrap();
    make_huge(&cache.blob_path(&damaged).unwrap());

    let report = cache.verify(false, &mut no_progress).unwrap();
    assert_eq!(report.corrupted, vec![damaged.key], "{report:?}");
    assert!(report.missing.is_empty(), "{report:?}");

    // The metadata is lost: rebuild reads every file, huge ones included.
    for index in 0..4u8 {
        backend.remove(&key!(huge = index).key()).unwrap();
    }
    let report = cache.rebuild(&mut no_progress).unwrap();
    assert_eq!(report.restored, 3, "{report:?}");
    let grown = format!(
        "{}/{}",
        &copied.key.to_hex()[..2],
        grown_path.file_name().unwrap().to_str().unwrap()
    );
    let reason_of = |name: &str| {
        report
            .invalid
            .iter()
            .find(|(invalid, _)| invalid == name)
            .map(|(_, reason)| reason.clone())
            .unwrap_or_else(|| panic!("{name} is not reported invalid: {report:?}"))
    };
    assert!(reason_of(&zeros).contains("bad magic"), "{report:?}");
    for name in [grown.as_str(), damaged.blob_name().unwrap()] {
        assert!(
            reason_of(name).ends_with("stored bytes, expected 1000"),
            "{name}: {}",
            reason_of(name)
        );
    }
    assert_eq!(report.invalid.len(), 3, "{report:?}");
    for index in [0u8, 2, 3] {
        assert_eq!(
            cache.get_bytes(&key!(huge = index)).unwrap(),
            Some(noise(1_000, index))
        );
    }
}

/// Every kind of file a marker may be: presence is what counts.
fn plant_marker(dir: &Path, marker: &str, kind: &str) {
    let path = dir.join(marker);
    match kind {
        "file" => fs::write(&path, b"").unwrap(),
        "dir" => fs::create_dir(&path).unwrap(),
        #[cfg(unix)]
        "dangling link" => std::os::unix::fs::symlink(dir.join("nowhere"), &path).unwrap(),
        #[cfg(unix)]
        "fifo" => {
            let status = std::process::Command::new("mkfifo")
                .arg(&path)
                .status()
                .unwrap();
            assert!(status.success());
        }
        _ => unreachable!("no such kind {kind}"),
    }
}

fn remove_marker(dir: &Path, marker: &str) {
    let path = dir.join(marker);
    if fs::symlink_metadata(&path).unwrap().is_dir() {
        fs::remove_dir(&path).unwrap();
    } else {
        fs::remove_file(&path).unwrap();
    }
}

#[test]
fn gc_and_verify_collect_no_orphans_while_the_metadata_is_being_filled() {
    use cacheness_core::ops::INCOMPLETE_METADATA_MARKERS;
    let kinds: &[&str] = if cfg!(unix) {
        &["file", "dir", "dangling link", "fifo"]
    } else {
        &["file", "dir"]
    };
    for marker in INCOMPLETE_METADATA_MARKERS {
        for kind in kinds {
            let dir = tempfile::tempdir().unwrap();
            let cache = open(dir.path(), Arc::new(MemoryBackend::new()));
            cache
                .put_bytes(&key!(kept = true), &noise(1_000, 1))
                .unwrap();
            // An old blob the metadata does not (yet) list, and an old temp file.
            let (orphan, _) =
                blob_without_entry(dir.path(), &key!(unlisted = true), b"not yet listed");
            let orphan_path = dir.path().join("blobs").join(&orphan);
            make_old(&orphan_path);
            let temp = dir.path().join("tmp").join("stale.tmp");
            fs::write(&temp, b"left by a crash").unwrap();
            make_old(&temp);
            plant_marker(dir.path(), marker, kind);
            let case = format!("{marker} as a {kind}");

            let report = cache.verify(false, &mut no_progress).unwrap();
            assert!(report.orphaned.is_empty(), "{case}: {report:?}");
            assert!(report.orphans_skipped, "{case}: {report:?}");
            assert!(report.is_clean(), "{case}: {report:?}");
            let report = cache.verify(true, &mut no_progress).unwrap();
            assert!(
                report.orphaned.is_empty() && report.orphans_skipped,
                "{case}: {report:?}"
            );
            let gc = cache.gc(&mut no_progress).unwrap();
            assert_eq!(gc.orphaned_blobs, 0, "{case}: {gc:?}");
            assert!(gc.orphans_skipped, "{case}: {gc:?}");
            assert_eq!(
                gc.temp_files, 1,
                "temp files still go by age; {case}: {gc:?}"
            );
            assert!(orphan_path.exists(), "{case}");
            assert!(!temp.exists(), "{case}");

            // Once the metadata is complete, the orphan is one.
            remove_marker(dir.path(), marker);
            let report = cache.verify(false, &mut no_progress).unwrap();
            assert_eq!(report.orphaned, vec![orphan.clone()], "{case}: {report:?}");
            assert!(!report.orphans_skipped, "{case}: {report:?}");
            let gc = cache.gc(&mut no_progress).unwrap();
            assert_eq!(
                (gc.orphaned_blobs, gc.orphans_skipped),
                (1, false),
                "{case}: {gc:?}"
            );
            assert!(!orphan_path.exists(), "{case}");
            assert_eq!(
                cache.get_bytes(&key!(kept = true)).unwrap(),
                Some(noise(1_000, 1))
            );
        }
    }
}

/// A backend over `live` whose puts fail from the `fail_from`-th on.
#[derive(Debug)]
struct PutsFailFrom {
    live: Arc<MemoryBackend>,
    puts: std::sync::atomic::AtomicUsize,
    fail_from: usize,
}

impl MetadataBackend for PutsFailFrom {
    fn get(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        self.live.get(key)
    }
    fn put(&self, entry: Entry) -> cacheness_core::Result<Option<Entry>> {
        let put = self.puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if put >= self.fail_from {
            return Err(cacheness_core::Error::io(
                "put",
                "metadata",
                std::io::Error::other("disk gone"),
            ));
        }
        self.live.put(entry)
    }
    fn remove(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        self.live.remove(key)
    }
    fn touch(&self, batch: &AccessBatch) -> cacheness_core::Result<()> {
        self.live.touch(batch)
    }
    fn scan(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(Entry) -> std::ops::ControlFlow<()>,
    ) -> cacheness_core::Result<()> {
        self.live.scan(filter, visit)
    }
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn rebuild_keeps_its_marker_until_it_has_finished() {
    use cacheness_core::ops::REBUILD_MARKER;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join(REBUILD_MARKER);
    let live = Arc::new(MemoryBackend::new());
    let writer = open(dir.path(), live.clone());
    for index in 0..4u8 {
        writer
            .put_bytes(&key!(lost = index), &noise(1_000, index))
            .unwrap();
    }
    for index in 0..4u8 {
        live.remove(&key!(lost = index).key()).unwrap();
    }
    for name in fs::read_dir(dir.path().join("blobs")).unwrap() {
        for blob in fs::read_dir(name.unwrap().path()).unwrap() {
            make_old(&blob.unwrap().path());
        }
    }

    // Fails at its third put: the marker stays, and gc beside it keeps every
    // blob, those of the entries still to come included.
    let failing = Cache::builder()
        .dir(dir.path())
        .inline_threshold(100)
        .open(PutsFailFrom {
            live: live.clone(),
            puts: Default::default(),
            fail_from: 2,
        })
        .unwrap();
    let mut marker_seen = false;
    let error = failing
        .rebuild(&mut |_| marker_seen |= fs::symlink_metadata(&marker).is_ok())
        .unwrap_err();
    assert!(error.to_string().contains("disk gone"), "{error}");
    assert!(marker_seen, "the marker is there while the rebuild reads");
    assert!(fs::symlink_metadata(&marker).unwrap().is_file());
    #[cfg(unix)]
    assert_eq!(mode_of(&marker), 0o600);
    assert_eq!(live.len().unwrap(), 2);
    let gc = writer.gc(&mut no_progress).unwrap();
    assert_eq!((gc.orphaned_blobs, gc.orphans_skipped), (0, true), "{gc:?}");

    // Killed midway (here a panic in the progress callback): the marker stays.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        writer.rebuild(&mut |progress| {
            assert!(progress.done < 2, "killed");
        })
    }));
    assert!(panicked.is_err());
    assert!(marker.exists());

    // The next rebuild finishes the job and removes it.
    let report = writer.rebuild(&mut no_progress).unwrap();
    assert_eq!((report.restored, report.present), (2, 2), "{report:?}");
    assert!(
        fs::symlink_metadata(&marker).is_err(),
        "no marker after success"
    );
    for index in 0..4u8 {
        assert_eq!(
            writer.get_bytes(&key!(lost = index)).unwrap(),
            Some(noise(1_000, index))
        );
    }
    let gc = writer.gc(&mut no_progress).unwrap();
    assert!(!gc.orphans_skipped, "{gc:?}");

    // Something that is not a regular file at the marker's name: refused.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &marker).unwrap();
        let error = writer.rebuild(&mut no_progress).unwrap_err();
        assert!(error.to_string().contains(REBUILD_MARKER), "{error}");
        assert!(
            !dir.path().join("elsewhere").exists(),
            "the link is not followed"
        );
    }
}

#[test]
fn a_blob_whose_lz4_prefix_claims_4_gib_is_damage_found_before_any_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let cache = open(dir.path(), backend.clone());
    let key = key!(claims = 4u8);
    // Compressible, and still too large to go inline once compressed.
    cache.put_bytes(&key, &noise(300, 4).repeat(4)).unwrap();
    let mut entry = cache.entry(&key).unwrap().unwrap();
    assert_eq!(entry.compression, cacheness_core::Compression::Lz4);
    // The size prefix says 4 GiB, and the entry and the header agree with it
    // and with the damaged bytes' hash: only the claim itself can tell.
    let path = cache.blob_path(&entry).unwrap();
    let file = fs::read(&path).unwrap();
    let (mut header, offset) = cacheness_core::BlobHeader::decode(&file).unwrap();
    let mut stored = file[offset..].to_vec();
    stored[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let hash = cacheness_core::ContentHash::of(&stored);
    header.content_hash = hash;
    header.raw_size = u32::MAX.into();
    let mut damaged = header.encode();
    damaged.extend_from_slice(&stored);
    fs::write(&path, damaged).unwrap();
    entry.content_hash = hash;
    entry.raw_size = u32::MAX.into();
    backend.put(entry.clone()).unwrap();

    // Rebuild says why: the claim, refused before lz4 made a buffer for it.
    let (name, reason) = corrupted_and_not_rebuilt(&cache, &backend, key.key());
    assert_eq!(name, entry.blob_name().unwrap());
    assert!(reason.contains("more than its"), "{reason}");
}

/// Checks that verify finds the entry under `key` corrupted and, once its
/// metadata is lost, rebuild restores nothing; the blob rebuild refused and why.
fn corrupted_and_not_rebuilt(
    cache: &Cache,
    backend: &MemoryBackend,
    key: CacheKey,
) -> (String, String) {
    let report = cache.verify(false, &mut no_progress).unwrap();
    assert_eq!(report.corrupted, vec![key], "{report:?}");
    backend.remove(&key).unwrap();
    let report = cache.rebuild(&mut no_progress).unwrap();
    assert_eq!(report.restored, 0, "{report:?}");
    assert_eq!(report.invalid.len(), 1, "{report:?}");
    report.invalid[0].clone()
}

#[test]
fn a_flipped_byte_in_a_header_field_the_entry_is_not_compared_on_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let cache = open(dir.path(), backend.clone());
    let key = key!(sealed = 1u8);
    cache
        .put_bytes_with(
            &key,
            &noise(1_000, 1),
            &PutOptions::new().metadata("owner", "alice"),
        )
        .unwrap();
    let entry = cache.entry(&key).unwrap().unwrap();
    let path = cache.blob_path(&entry).unwrap();
    let mut file = fs::read(&path).unwrap();
    let at = file
        .windows(5)
        .position(|window| window == b"alice")
        .expect("the user metadata is in the header");
    file[at] = b'A';
    fs::write(&path, file).unwrap();

    let (_, reason) = corrupted_and_not_rebuilt(&cache, &backend, key.key());
    assert!(reason.contains("checksum"), "{reason}");
}

/// Two blobs of one key stored in the same millisecond: rebuild restores the
/// one with the greater name, the rule every rebuild shares
/// (`blob::supersedes`; the json backend's own rebuild follows it too), and
/// counts the other as superseded.
#[test]
fn rebuild_breaks_a_tie_of_put_times_by_the_greater_blob_name() {
    let dir = tempfile::tempdir().unwrap();
    let params = key!(tie = 1);
    let (first, _) = blob_without_entry(dir.path(), &params, &noise(6_000, 1));
    let (second, _) = blob_without_entry(dir.path(), &params, &noise(6_000, 2));
    let cache = open(dir.path(), Arc::new(MemoryBackend::new()));
    let report = cache.rebuild(&mut no_progress).unwrap();
    assert_eq!((report.restored, report.superseded), (1, 1), "{report:?}");
    let restored = cache.entry(&params).unwrap().unwrap();
    assert_eq!(restored.blob_name(), Some(first.max(second).as_str()));
}
