//! Entry signing: metadata edited behind the cache's back is rejected and
//! reported, not served.

use std::sync::Arc;

use cacheness_core::ops::no_progress;
use cacheness_core::{Cache, Entry, Location, MetadataBackend, key};
use cacheness_memory::MemoryBackend;

fn signed_cache(dir: &std::path::Path, backend: Arc<MemoryBackend>) -> Cache {
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

#[test]
fn hand_edited_metadata_is_rejected_and_removed() {
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
        assert!(
            backend.get(&large.key()).unwrap().is_none(),
            "{what}: and removed"
        );
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
            backend.get(&small.key()).unwrap().is_none(),
            "{what}: and removed"
        );
    }
}

#[test]
fn the_key_file_is_reused_and_another_key_rejects_everything() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    signed_cache(dir.path(), backend.clone())
        .put(&key!(a = 1), &"kept")
        .unwrap();
    let reopened = signed_cache(dir.path(), backend.clone());
    assert_eq!(
        reopened.get::<String>(&key!(a = 1)).unwrap().as_deref(),
        Some("kept")
    );
    drop(reopened);

    let other_key = Cache::builder()
        .dir(dir.path())
        .signing_key([9; 32])
        .open_shared(backend.clone())
        .unwrap();
    assert_eq!(other_key.get::<String>(&key!(a = 1)).unwrap(), None);
    assert!(backend.get(&key!(a = 1).key()).unwrap().is_none());
}

#[test]
fn rebuild_restores_signed_blobs_and_refuses_unsigned_ones() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = signed_cache(dir.path(), Arc::new(MemoryBackend::new()));
        cache.put_bytes(&key!(signed = true), &[1u8; 500]).unwrap();
    }
    {
        // A blob written by a cache without the key: valid header, no signature.
        let unsigned = Cache::builder()
            .dir(dir.path())
            .inline_threshold(64)
            .open(MemoryBackend::new())
            .unwrap();
        unsigned
            .put_bytes(&key!(signed = false), &[2u8; 500])
            .unwrap();
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
