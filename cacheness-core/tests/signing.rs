//! Entry signing: metadata edited behind the cache's back is rejected and
//! reported, not served.

use std::sync::Arc;

use cacheness_core::ops::no_progress;
use cacheness_core::signing::{ID_FILE, KEY_FILE};
use cacheness_core::{
    BlobStore, Cache, Durability, Entry, Error, LocalBlobStore, Location, MetadataBackend, key,
};
use cacheness_memory::MemoryBackend;

fn signed_cache(dir: &std::path::Path, backend: Arc<impl MetadataBackend + 'static>) -> Cache {
    Cache::builder()
        .dir(dir)
        .inline_threshold(64)
        .verify_integrity(false)
        .sign_entries()
        .open_shared(backend)
        .unwrap()
}

/// A change made to an entry behind the cache's back.
type Edit = fn(&mut Entry);

/// A signature that does not match is a miss that keeps the entry and its blob
/// (issue 21 item 4: a wrong key must never delete); `verify` reports it and
/// `verify --repair` may remove it.
#[test]
fn hand_edited_metadata_is_rejected_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let cache = signed_cache(dir.path(), backend.clone());
    let edits: [(&str, Edit); 5] = [
        ("size", |entry| entry.stored_size += 1),
        ("expiry", |entry| entry.expires_at = Some(u64::MAX)),
        ("hash", |entry| {
            entry.content_hash = cacheness_core::ContentHash::of(b"forged")
        }),
        ("codec", |entry| entry.codec = "forged".into()),
        ("blob name", |entry| {
            if let Location::Blob(name) = &mut entry.location {
                let other = if name.ends_with('0') { "1" } else { "0" };
                name.replace_range(name.len() - 1.., other);
            }
        }),
    ];
    for (index, (what, edit)) in edits.iter().enumerate() {
        let small = key!(edit = *what, size = "small");
        let large = key!(edit = *what, size = "large");
        cache.put(&small, &index).unwrap();
        let noise: Vec<u8> = (0..40u8)
            .flat_map(|block| *blake3::hash(&[index as u8, block]).as_bytes())
            .collect();
        cache.put_bytes(&large, &noise).unwrap();
        assert!(cache.entry(&large).unwrap().unwrap().blob_name().is_some());
        assert_eq!(cache.get::<usize>(&small).unwrap(), Some(index));
        for key in [&small, &large] {
            let mut entry = backend.get(&key.key()).unwrap().unwrap();
            assert!(entry.signature.is_some());
            edit(&mut entry);
            backend.put(entry).unwrap();
        }
        let report = cache.verify(false, &mut no_progress).unwrap();
        assert!(
            report.corrupted.contains(&small.key()) || *what == "blob name",
            "{what}: verify reports the edited entry: {report:?}"
        );
        assert_eq!(
            cache.get_bytes(&large).unwrap(),
            None,
            "{what}: edited large entry rejected"
        );
        if *what == "blob name" {
            // The name is not signed: the entry names a blob that is not there,
            // which is damage, removed as any missing blob is.
            assert!(backend.get(&large.key()).unwrap().is_none(), "{what}");
        } else {
            let kept = backend.get(&large.key()).unwrap();
            assert!(kept.is_some(), "{what}: kept");
            let path = cache.blob_path(&kept.unwrap()).unwrap();
            assert!(path.exists(), "{what}: and its blob");
        }
        if *what == "blob name" {
            // An inline entry has no blob name to edit: it is intact.
            assert_eq!(cache.get::<usize>(&small).unwrap(), Some(index));
            continue;
        }
        assert_eq!(
            cache.get::<usize>(&small).unwrap(),
            None,
            "{what}: edited small entry rejected"
        );
        assert!(
            backend.get(&small.key()).unwrap().is_some(),
            "{what}: and kept"
        );
    }
}

/// Issue 21 item 4: before, a handle with another key removed every entry and
/// blob it read. Now the dir records its key and another one is refused at open.
#[test]
fn the_key_file_is_reused_and_another_key_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let cache = signed_cache(dir.path(), backend.clone());
    cache.put(&key!(a = 1), &"kept").unwrap();
    cache.put_bytes(&key!(a = 2), &[5u8; 300]).unwrap();
    let blob = cache.blob_path(&cache.entry(&key!(a = 2)).unwrap().unwrap());
    drop(cache);
    let reopened = signed_cache(dir.path(), backend.clone());
    assert_eq!(
        reopened.get::<String>(&key!(a = 1)).unwrap().as_deref(),
        Some("kept")
    );
    drop(reopened);

    let error = Cache::builder()
        .dir(dir.path())
        .signing_key([9; 32])
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
    assert!(error.to_string().contains(KEY_FILE), "{error}");
    assert_eq!(backend.len().unwrap(), 2, "nothing removed");
    assert!(blob.unwrap().exists());
    assert_eq!(
        signed_cache(dir.path(), backend.clone())
            .get::<String>(&key!(a = 1))
            .unwrap()
            .as_deref(),
        Some("kept")
    );
}

#[test]
fn a_dir_signed_with_a_given_key_records_its_fingerprint_and_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let open = |key: [u8; 32]| {
        Cache::builder()
            .dir(dir.path())
            .inline_threshold(64)
            .signing_key(key)
            .open_shared(backend.clone())
    };
    let cache = open([1; 32]).unwrap();
    cache.put(&key!(a = 1), &"kept").unwrap();
    cache.put_bytes(&key!(a = 2), &[5u8; 300]).unwrap();
    drop(cache);
    let id = dir.path().join(ID_FILE);
    let recorded = std::fs::read(&id).unwrap();
    assert!(
        !recorded.windows(32).any(|window| window == [1; 32]),
        "the key itself is not written"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&id).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let before = files_under(dir.path());

    let error = open([2; 32]).unwrap_err();
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
    assert!(error.to_string().contains(ID_FILE), "{error}");
    // A key file made now would be another key: refused before it is made.
    let error = Cache::builder()
        .dir(dir.path())
        .sign_entries()
        .open_shared(backend.clone())
        .unwrap_err();
    assert!(error.to_string().contains(ID_FILE), "{error}");
    assert_eq!(files_under(dir.path()), before, "no key file made");
    assert_eq!(backend.len().unwrap(), 2);

    let cache = open([1; 32]).unwrap();
    assert_eq!(
        cache.get::<String>(&key!(a = 1)).unwrap().as_deref(),
        Some("kept")
    );
    assert_eq!(cache.get_bytes(&key!(a = 2)).unwrap(), Some(vec![5u8; 300]));
}

/// A dir signed before the key was recorded (no `signing.id`): the first open
/// with another key finds the entries' signatures do not match and refuses,
/// instead of recording the wrong key.
#[test]
fn a_first_open_with_another_key_than_the_entries_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let cache = Cache::builder()
        .dir(dir.path())
        .signing_key([1; 32])
        .open_shared(backend.clone())
        .unwrap();
    cache.put(&key!(a = 1), &"kept").unwrap();
    drop(cache);
    std::fs::remove_file(dir.path().join(ID_FILE)).unwrap();
    let error = Cache::builder()
        .dir(dir.path())
        .signing_key([2; 32])
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
    assert!(!dir.path().join(ID_FILE).exists());
    assert_eq!(backend.len().unwrap(), 1);
}

/// Where the dir cannot record a key (no dir: a blob store given directly), a
/// handle with another key reads every entry as a miss and removes nothing.
#[test]
fn entries_signed_with_another_key_are_misses_that_stay() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let store: Arc<dyn BlobStore> =
        Arc::new(LocalBlobStore::open(dir.path(), Durability::Flush).unwrap());
    let open = |key: [u8; 32]| {
        Cache::builder()
            .blob_store(store.clone())
            .inline_threshold(64)
            .signing_key(key)
            .open_shared(backend.clone())
            .unwrap()
    };
    let right = open([1; 32]);
    for index in 0..20u32 {
        right.put(&key!(small = index), &index).unwrap();
        right
            .put_bytes(&key!(large = index), &[index as u8; 300])
            .unwrap();
    }
    let blobs_before = files_under(dir.path());
    let wrong = open([2; 32]);
    for _ in 0..3 {
        for index in 0..20u32 {
            assert_eq!(wrong.get::<u32>(&key!(small = index)).unwrap(), None);
            assert_eq!(wrong.get_bytes(&key!(large = index)).unwrap(), None);
        }
    }
    wrong.flush().unwrap();
    assert_eq!(backend.len().unwrap(), 40, "no entry removed");
    assert_eq!(files_under(dir.path()), blobs_before, "no blob removed");
    let report = wrong.verify(false, &mut no_progress).unwrap();
    assert_eq!(report.corrupted.len(), 40, "verify reports them");
    for index in 0..20u32 {
        assert_eq!(right.get::<u32>(&key!(small = index)).unwrap(), Some(index));
        assert_eq!(
            right.get_bytes(&key!(large = index)).unwrap(),
            Some(vec![index as u8; 300])
        );
    }
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for item in std::fs::read_dir(&at).unwrap() {
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

#[test]
fn rebuild_restores_signed_blobs_and_refuses_unsigned_ones() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A blob written by a cache without the key: valid header, no
        // signature. Written before the dir was signed, since an unsigned
        // writable open of a signed dir is refused.
        let unsigned = Cache::builder()
            .dir(dir.path())
            .inline_threshold(64)
            .open(MemoryBackend::new())
            .unwrap();
        unsigned
            .put_bytes(&key!(signed = false), &[2u8; 500])
            .unwrap();
    }
    {
        let cache = signed_cache(dir.path(), Arc::new(MemoryBackend::new()));
        cache.put_bytes(&key!(signed = true), &[1u8; 500]).unwrap();
    }
    let cache = signed_cache(dir.path(), Arc::new(MemoryBackend::new()));
    let report = cache.rebuild(&mut no_progress).unwrap();
    assert_eq!(report.restored, 1);
    assert_eq!(report.invalid.len(), 1, "{:?}", report.invalid);
    assert!(report.invalid[0].1.contains("signature"));
    assert_eq!(
        cache.get_bytes(&key!(signed = true)).unwrap(),
        Some(vec![1u8; 500])
    );
    assert_eq!(cache.get_bytes(&key!(signed = false)).unwrap(), None);
}

#[test]
fn a_key_file_needs_a_dir() {
    let error = Cache::builder()
        .sign_entries()
        .open(MemoryBackend::new())
        .unwrap_err();
    assert!(error.to_string().contains("signing"), "{error}");
}

#[test]
fn a_large_value_hashed_while_written_is_signed_with_its_hash_in_entry_and_header() {
    // Above the size from which the local blob store hashes on another thread
    // while it writes: the header is written last, and must carry the real
    // hash and a signature made over it, as the entry does.
    // Incompressible, so the stored bytes (what is hashed) are the value's.
    let mut value = vec![0u8; 5 << 20];
    blake3::Hasher::new().finalize_xof().fill(&mut value);
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let cache = signed_cache(dir.path(), backend.clone());
    cache.put_bytes(&key!(large = true), &value).unwrap();
    let entry = backend.get(&key!(large = true).key()).unwrap().unwrap();
    assert_eq!(entry.content_hash, cacheness_core::ContentHash::of(&value));
    assert!(
        cache
            .verify(false, &mut no_progress)
            .unwrap()
            .corrupted
            .is_empty()
    );
    assert!(cache.get_bytes(&key!(large = true)).unwrap() == Some(value.clone()));

    let rebuilt = signed_cache(dir.path(), Arc::new(MemoryBackend::new()));
    let report = rebuilt.rebuild(&mut no_progress).unwrap();
    assert_eq!(report.restored, 1, "{:?}", report.invalid);
    assert!(rebuilt.get_bytes(&key!(large = true)).unwrap() == Some(value));
}

/// `len` bytes that do not compress, different for each `seed`.
fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    hasher.finalize_xof().fill(&mut bytes);
    bytes
}

/// Issue 21 item 17: turning signing on for a cache with unsigned entries hid
/// them (and, before item 4, deleted them as they were read). They are now
/// kept, reported by verify, and `sign_unsigned` signs the intact ones in
/// place, blob headers included, so a rebuild after that accepts them.
#[test]
fn sign_unsigned_signs_old_entries_in_place_and_rebuild_accepts_them() {
    use cacheness_core::{BlobHeader, ContentHash};
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let unsigned = Cache::builder()
        .dir(dir.path())
        .inline_threshold(64)
        .open_shared(backend.clone())
        .unwrap();
    for index in 0..5u32 {
        unsigned.put(&key!(small = index), &index).unwrap();
        unsigned
            .put_bytes(&key!(large = index), &noise(index, 300))
            .unwrap();
    }
    // Three damaged ones, which must not be signed: a blob byte flipped, an
    // inline byte flipped, parameters that do not hash to the key.
    unsigned
        .put_bytes(&key!(damaged = "blob"), &noise(99, 300))
        .unwrap();
    let path = unsigned
        .blob_path(&unsigned.entry(&key!(damaged = "blob")).unwrap().unwrap())
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&path, bytes).unwrap();
    unsigned.put(&key!(damaged = "inline"), &12345u32).unwrap();
    let mut entry = backend
        .get(&key!(damaged = "inline").key())
        .unwrap()
        .unwrap();
    if let Location::Inline(bytes) = &mut entry.location {
        bytes[0] ^= 1;
    }
    backend.put(entry).unwrap();
    unsigned.put(&key!(damaged = "params"), &1u32).unwrap();
    let mut entry = backend
        .get(&key!(damaged = "params").key())
        .unwrap()
        .unwrap();
    entry.params = Some(key!(damaged = "other"));
    backend.put(entry).unwrap();
    drop(unsigned);
    let old_blobs = files_under(&dir.path().join("blobs"));

    let signed = signed_cache(dir.path(), backend.clone());
    for index in 0..5u32 {
        assert_eq!(signed.get::<u32>(&key!(small = index)).unwrap(), None);
        assert_eq!(signed.get_bytes(&key!(large = index)).unwrap(), None);
    }
    assert_eq!(backend.len().unwrap(), 13, "unsigned entries are kept");
    let report = signed.verify(false, &mut no_progress).unwrap();
    assert_eq!(report.corrupted.len(), 13, "and listed by verify");

    let mut progress = Vec::new();
    let report = signed
        .sign_unsigned(&mut |step| progress.push(step.done))
        .unwrap();
    assert_eq!(
        (report.entries, report.signed, report.already_signed),
        (13, 10, 0),
        "{report:?}"
    );
    let mut refused: Vec<_> = report.refused.iter().map(|(key, _)| *key).collect();
    refused.sort();
    let mut damaged = vec![
        key!(damaged = "blob").key(),
        key!(damaged = "inline").key(),
        key!(damaged = "params").key(),
    ];
    damaged.sort();
    assert_eq!(refused, damaged, "{:?}", report.refused);
    assert_eq!(progress.last(), Some(&13));
    for index in 0..5u32 {
        assert_eq!(
            signed.get::<u32>(&key!(small = index)).unwrap(),
            Some(index)
        );
        assert_eq!(
            signed.get_bytes(&key!(large = index)).unwrap(),
            Some(noise(index, 300))
        );
        // The blob was written again with a signed header; the old one is gone.
        let entry = backend.get(&key!(large = index).key()).unwrap().unwrap();
        let file = std::fs::read(signed.blob_path(&entry).unwrap()).unwrap();
        let (header, _) = BlobHeader::decode(&file).unwrap();
        assert_eq!(header.signature, entry.signature);
        assert!(header.signature.is_some());
        assert_eq!(header.content_hash, ContentHash::of(&noise(index, 300)));
    }
    let new_blobs = files_under(&dir.path().join("blobs"));
    assert_eq!(
        old_blobs
            .iter()
            .filter(|old| new_blobs.contains(old))
            .count(),
        1,
        "only the damaged blob is still there: {old_blobs:?} {new_blobs:?}"
    );
    assert_eq!(new_blobs.len(), 6);
    let again = signed.sign_unsigned(&mut no_progress).unwrap();
    assert_eq!(
        (again.entries, again.signed, again.already_signed),
        (13, 0, 10),
        "a second run finds them signed: {again:?}"
    );
    assert_eq!(again.refused.len(), 3);
    drop(signed);

    let rebuilt = signed_cache(dir.path(), Arc::new(MemoryBackend::new()));
    let report = rebuilt.rebuild(&mut no_progress).unwrap();
    assert_eq!(report.restored, 5, "{:?}", report.invalid);
    assert_eq!(
        report.invalid.len(),
        1,
        "the damaged blob: {:?}",
        report.invalid
    );
    for index in 0..5u32 {
        assert_eq!(
            rebuilt.get_bytes(&key!(large = index)).unwrap(),
            Some(noise(index, 300))
        );
    }
}

#[test]
fn sign_unsigned_needs_a_signing_key() {
    let cache = Cache::builder().open(MemoryBackend::new()).unwrap();
    let error = cache.sign_unsigned(&mut no_progress).unwrap_err();
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
}

/// A backend that lets another writer in between a read and the next put of
/// one key: the put first stores `newer`, as a concurrent writer would.
#[derive(Debug)]
struct Racing {
    inner: Arc<MemoryBackend>,
    newer: std::sync::Mutex<Option<Entry>>,
}

impl MetadataBackend for Racing {
    fn get(&self, key: &cacheness_core::CacheKey) -> cacheness_core::Result<Option<Entry>> {
        self.inner.get(key)
    }

    fn put(&self, entry: Entry) -> cacheness_core::Result<Option<Entry>> {
        let newer = self.newer.lock().unwrap().take();
        if let Some(newer) = newer {
            self.inner.put(newer)?;
        }
        self.inner.put(entry)
    }

    fn remove(&self, key: &cacheness_core::CacheKey) -> cacheness_core::Result<Option<Entry>> {
        self.inner.remove(key)
    }

    fn touch(&self, batch: &cacheness_core::AccessBatch) -> cacheness_core::Result<()> {
        self.inner.touch(batch)
    }

    fn scan(
        &self,
        filter: &cacheness_core::ScanFilter,
        visit: &mut dyn FnMut(Entry) -> std::ops::ControlFlow<()>,
    ) -> cacheness_core::Result<()> {
        self.inner.scan(filter, visit)
    }
}

/// A writer that replaces an entry while `sign_unsigned` works on it wins: its
/// newer version is what stays, and the signed copy of the old one is removed.
#[test]
fn sign_unsigned_does_not_overwrite_a_newer_entry() {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(MemoryBackend::new());
    let racing = Arc::new(Racing {
        inner: inner.clone(),
        newer: std::sync::Mutex::new(None),
    });
    Cache::builder()
        .dir(dir.path())
        .inline_threshold(64)
        .open_shared(inner.clone())
        .unwrap()
        .put_bytes(&key!(k = 1), &noise(1, 300))
        .unwrap();
    let old_blob = files_under(&dir.path().join("blobs"));
    // The newer version, written by a signed writer elsewhere.
    let elsewhere = Arc::new(MemoryBackend::new());
    signed_cache(dir.path(), elsewhere.clone())
        .put_bytes(&key!(k = 1), &noise(2, 300))
        .unwrap();
    let newer = elsewhere.get(&key!(k = 1).key()).unwrap().unwrap();
    *racing.newer.lock().unwrap() = Some(newer.clone());

    let signed = signed_cache(dir.path(), racing.clone());
    let report = signed.sign_unsigned(&mut no_progress).unwrap();
    assert_eq!(report.signed, 0, "{report:?}");
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert!(report.refused[0].1.contains("changed"), "{report:?}");
    let stays = inner.get(&key!(k = 1).key()).unwrap().unwrap();
    assert!(stays.same_version(&newer), "{stays:?}");
    assert_eq!(signed.get_bytes(&key!(k = 1)).unwrap(), Some(noise(2, 300)));
    // The old blob (the writer's to delete), the newer one, and no signed copy.
    let mut expected = old_blob.clone();
    expected.push(newer.blob_name().unwrap().to_owned());
    expected.sort();
    assert_eq!(files_under(&dir.path().join("blobs")), expected);
}

/// The reproduction from the outside review: a dir signed by `cacheness sign`,
/// then an application that opens it without signing put 5 values, and
/// `cacheness verify --repair` (with the dir's key) deleted them as unsigned.
/// A config that disagrees with the dir is an error, never a deletion: that
/// writable open is refused, naming the key file and `sign_entries`. A
/// read-only open without signing writes nothing and stays allowed; a signed
/// open puts values that verify keeps.
#[test]
fn a_writable_open_without_signing_of_a_signed_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    signed_cache(dir.path(), backend.clone())
        .put(&key!(by = "sign"), &"signed")
        .unwrap();
    assert!(dir.path().join(KEY_FILE).exists());

    let error = Cache::builder()
        .dir(dir.path())
        .inline_threshold(64)
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
    let message = error.to_string();
    assert!(
        message.contains(&dir.path().join(KEY_FILE).display().to_string()),
        "{message}"
    );
    assert!(message.contains("sign_entries"), "{message}");
    assert_eq!(backend.len().unwrap(), 1, "nothing written or removed");

    let reader = Cache::builder()
        .dir(dir.path())
        .read_only(true)
        .open_shared(backend.clone())
        .unwrap();
    assert_eq!(
        reader.get::<String>(&key!(by = "sign")).unwrap().as_deref(),
        Some("signed")
    );
    drop(reader);

    let app = signed_cache(dir.path(), backend.clone());
    for index in 0..5u32 {
        app.put(&key!(app = index), &index).unwrap();
        app.put_bytes(&key!(app_large = index), &noise(index, 300))
            .unwrap();
    }
    drop(app);
    let maintenance = signed_cache(dir.path(), backend.clone());
    let report = maintenance.verify(true, &mut no_progress).unwrap();
    assert!(report.corrupted.is_empty(), "{report:?}");
    assert_eq!(backend.len().unwrap(), 11, "every acknowledged put kept");
    for index in 0..5u32 {
        assert_eq!(
            maintenance.get::<u32>(&key!(app = index)).unwrap(),
            Some(index)
        );
        assert_eq!(
            maintenance.get_bytes(&key!(app_large = index)).unwrap(),
            Some(noise(index, 300))
        );
    }
}

/// A dir signed with a key its program passes records only `signing.id`; an
/// unsigned writable open is refused naming it. Any kind of file at either
/// name counts (a dangling symlink, a FIFO, a directory): the dir says it is
/// signed, and what the file holds is for a signed open to judge.
#[test]
fn any_file_at_a_signing_name_refuses_an_unsigned_writable_open() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    Cache::builder()
        .dir(dir.path())
        .signing_key([3; 32])
        .open_shared(backend.clone())
        .unwrap()
        .put(&key!(a = 1), &1u32)
        .unwrap();
    let unsigned = |dir: &std::path::Path| {
        Cache::builder()
            .dir(dir)
            .open(MemoryBackend::new())
            .map(|_| ())
    };
    let error = unsigned(dir.path()).unwrap_err();
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
    assert!(error.to_string().contains(ID_FILE), "{error}");
    assert!(error.to_string().contains("signing_key"), "{error}");
    Cache::builder()
        .dir(dir.path())
        .read_only(true)
        .open_shared(backend.clone())
        .unwrap();

    #[cfg(unix)]
    for name in [KEY_FILE, ID_FILE] {
        for kind in ["dangling symlink", "fifo", "directory"] {
            let other = tempfile::tempdir().unwrap();
            let path = other.path().join(name);
            match kind {
                "dangling symlink" => {
                    std::os::unix::fs::symlink(other.path().join("absent"), &path).unwrap()
                }
                "fifo" => {
                    let status = std::process::Command::new("mkfifo")
                        .arg(&path)
                        .status()
                        .unwrap();
                    assert!(status.success());
                }
                _ => std::fs::create_dir(&path).unwrap(),
            }
            let error = unsigned(other.path()).unwrap_err();
            assert!(
                error.to_string().contains(&path.display().to_string()),
                "{name} {kind}: {error}"
            );
        }
    }
    // A dir with neither opens unsigned as before.
    unsigned(tempfile::tempdir().unwrap().path()).unwrap();
}
