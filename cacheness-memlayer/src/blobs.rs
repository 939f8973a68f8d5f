//! [`BlobLayer`]: the bytes of small blob files kept in memory, in front of a
//! blob store.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cacheness_core::blob::StoredBlob;
use cacheness_core::{BlobStore, CacheKey, ContentHash, Result};
use quick_cache::sync::Cache as QuickCache;

use crate::config::MemLayerConfig;
use crate::error::MemLayerError;
use crate::layer::{CapacityWeighter, Weighed, options_for};

/// Blob files larger than this are never held: the layer is for the small
/// values of hot keys, not for caching large files in memory.
pub const MAX_HELD_BLOB_BYTES: usize = 64 << 10;

/// The average blob size assumed to size shards under a byte capacity.
const ASSUMED_BLOB_BYTES: u64 = 1 << 10;

impl Weighed for Arc<[u8]> {
    fn bytes(&self) -> u64 {
        self.len() as u64
    }
}

/// A blob store that keeps the bytes of recently read small blob files in
/// memory, so that reads of hot values stored in files skip the file system.
///
/// [`MemLayer`](crate::MemLayer) holds entries, and a value stored inline in its
/// entry with them; a value in a blob file (every value of the `json` backend, by
/// default) still cost a file read per get. The facade puts this layer in front
/// of the cache's blob store whenever a memory layer is configured.
///
/// Holding a blob's bytes can never serve a stale value: blob names are unique
/// per write (`ab/<key>-<nonce>`) and a blob is never rewritten, so the bytes
/// under a name are the same for as long as the name exists. A replaced or
/// removed entry points elsewhere, and [`remove`](BlobStore::remove) drops the
/// copy. The engine checks the bytes against the entry's hash on every read as
/// before. [`read_stored`](BlobStore::read_stored), which `verify`, `gc` and
/// `rebuild` use, always reads the file (and drops the copy).
///
/// Capacity is the memory layer's: a number of blobs, or a number of bytes;
/// files over [`MAX_HELD_BLOB_BYTES`] are never held.
///
/// ```
/// use std::sync::Arc;
/// use cacheness_core::{BlobStore, Cache, Durability, LocalBlobStore, key};
/// use cacheness_json::JsonBackend;
/// use cacheness_memlayer::{BlobLayer, MemLayer, MemLayerConfig};
///
/// let dir = tempfile::tempdir()?;
/// let config = MemLayerConfig::default();
/// let blobs = Arc::new(LocalBlobStore::open(dir.path(), Durability::default())?);
/// let cache = Cache::builder()
///     .dir(dir.path())
///     .blob_store(Arc::new(BlobLayer::new(blobs, &config)?))
///     .open(MemLayer::new(JsonBackend::open(dir.path())?, config)?)?;
/// cache.put(&key!(user = 7), &"Grace")?;
/// for _ in 0..3 {
///     // The first read opens the blob file; the next two are served from memory.
///     assert_eq!(cache.get::<String>(&key!(user = 7))?.as_deref(), Some("Grace"));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BlobLayer {
    store: Arc<dyn BlobStore>,
    held: QuickCache<String, Arc<[u8]>, CapacityWeighter>,
}

impl BlobLayer {
    /// A layer in front of `store`, holding as much as `config.capacity` says.
    pub fn new(
        store: Arc<dyn BlobStore>,
        config: &MemLayerConfig,
    ) -> std::result::Result<Self, MemLayerError> {
        config.validate()?;
        let (options, weighter) = options_for(config.capacity, ASSUMED_BLOB_BYTES);
        Ok(BlobLayer {
            store,
            held: QuickCache::with_options(
                options,
                weighter,
                Default::default(),
                Default::default(),
            ),
        })
    }

    /// The store behind the layer.
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }

    /// How many blobs the layer holds.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

impl fmt::Debug for BlobLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobLayer")
            .field("store", &self.store)
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl BlobStore for BlobLayer {
    fn write(&self, key: &CacheKey, parts: &[&[u8]]) -> Result<String> {
        // Only reads decide what is hot; a write does not push anything out.
        self.store.write(key, parts)
    }

    fn write_hashed(
        &self,
        key: &CacheKey,
        body: &[u8],
        header: &mut dyn FnMut(&ContentHash) -> Vec<u8>,
    ) -> Result<(String, ContentHash)> {
        // The store's own way: the local one hashes large bodies while writing.
        self.store.write_hashed(key, body, header)
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        if let Some(bytes) = self.held.get(name) {
            return Ok(Some(bytes.to_vec()));
        }
        let read = self.store.read(name)?;
        if let Some(bytes) = &read
            && bytes.len() <= MAX_HELD_BLOB_BYTES
        {
            self.held
                .insert(name.to_owned(), Arc::from(bytes.as_slice()));
        }
        Ok(read)
    }

    fn read_limited(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let cut = |len: usize| usize::try_from(limit).map_or(len, |limit| len.min(limit));
        if let Some(bytes) = self.held.get(name) {
            return Ok(Some(bytes[..cut(bytes.len())].to_vec()));
        }
        // The store's own way: the local one never reads past the limit.
        let read = self.store.read_limited(name, limit)?;
        // Only a blob that came back whole is held.
        if let Some(bytes) = &read
            && (bytes.len() as u64) < limit
            && bytes.len() <= MAX_HELD_BLOB_BYTES
        {
            self.held
                .insert(name.to_owned(), Arc::from(bytes.as_slice()));
        }
        Ok(read)
    }

    fn read_stored(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.held.remove(name);
        self.store.read_stored(name)
    }

    fn open_stored(&self, name: &str) -> Result<Option<StoredBlob>> {
        self.held.remove(name);
        self.store.open_stored(name)
    }

    fn remove(&self, name: &str) -> Result<()> {
        self.held.remove(name);
        self.store.remove(name)
    }

    fn list(&self, visit: &mut dyn FnMut(&str)) -> Result<()> {
        self.store.list(visit)
    }

    fn modified(&self, name: &str) -> Option<SystemTime> {
        self.store.modified(name)
    }

    fn collect_temp_files(&self, grace: Duration) -> Result<u64> {
        self.store.collect_temp_files(grace)
    }

    fn local_path(&self, name: &str) -> Option<PathBuf> {
        self.store.local_path(name)
    }
}

#[cfg(test)]
mod tests {
    use cacheness_core::{Durability, LocalBlobStore};

    use crate::config::Capacity;

    use super::*;

    fn open_layer(dir: &std::path::Path, capacity: Capacity) -> BlobLayer {
        let store = LocalBlobStore::open(dir, Durability::Flush).unwrap();
        let config = MemLayerConfig::new().capacity(capacity);
        BlobLayer::new(Arc::new(store), &config).unwrap()
    }

    fn key(index: u8) -> CacheKey {
        CacheKey::from_bytes([index; 16])
    }

    #[test]
    fn a_blob_read_again_is_served_from_memory_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let layer = open_layer(dir.path(), Capacity::Entries(10));
        let name = layer.write(&key(1), &[b"hot ", b"value"]).unwrap();
        assert_eq!(layer.held(), 0, "a write holds nothing");
        assert_eq!(layer.read(&name).unwrap().unwrap(), b"hot value");
        assert_eq!(layer.held(), 1);

        // The file gone behind the layer's back: the bytes come from memory.
        std::fs::remove_file(layer.local_path(&name).unwrap()).unwrap();
        assert_eq!(layer.read(&name).unwrap().unwrap(), b"hot value");

        layer.remove(&name).unwrap();
        assert_eq!(layer.held(), 0);
        assert_eq!(layer.read(&name).unwrap(), None);
    }

    #[test]
    fn read_stored_reads_the_file_and_drops_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let layer = open_layer(dir.path(), Capacity::Entries(10));
        let name = layer.write(&key(2), &[b"original"]).unwrap();
        assert_eq!(layer.read(&name).unwrap().unwrap(), b"original");
        std::fs::write(layer.local_path(&name).unwrap(), b"damaged!").unwrap();

        // A read is served the bytes held (they were the file's when read)...
        assert_eq!(layer.read(&name).unwrap().unwrap(), b"original");
        // ...but what verify and gc see is the file.
        assert_eq!(layer.read_stored(&name).unwrap().unwrap(), b"damaged!");
        assert_eq!(layer.held(), 0);
        assert_eq!(layer.read(&name).unwrap().unwrap(), b"damaged!");
    }

    #[test]
    fn limited_reads_hold_only_whole_blobs_and_open_stored_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let layer = open_layer(dir.path(), Capacity::Entries(10));
        let name = layer.write(&key(4), &[b"a whole blob"]).unwrap();
        assert_eq!(layer.read_limited(&name, 7).unwrap().unwrap(), b"a whole");
        assert_eq!(layer.held(), 0, "a blob cut at the limit is not held");
        assert_eq!(
            layer.read_limited(&name, 13).unwrap().unwrap(),
            b"a whole blob"
        );
        assert_eq!(layer.held(), 1);
        assert_eq!(layer.read_limited(&name, 2).unwrap().unwrap(), b"a ");

        std::fs::write(layer.local_path(&name).unwrap(), b"damaged!").unwrap();
        let mut stored = layer.open_stored(&name).unwrap().unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut stored.reader, &mut bytes).unwrap();
        assert_eq!((stored.len, bytes.as_slice()), (8, &b"damaged!"[..]));
        assert_eq!(layer.held(), 0, "what verify and rebuild see is the file");
    }

    #[test]
    fn large_blobs_are_not_held_and_capacity_bounds_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let layer = open_layer(dir.path(), Capacity::Entries(3));
        let large = vec![1u8; MAX_HELD_BLOB_BYTES + 1];
        let name = layer.write(&key(3), &[&large]).unwrap();
        assert_eq!(layer.read(&name).unwrap().unwrap(), large);
        assert_eq!(layer.held(), 0);

        for index in 10..30 {
            let name = layer.write(&key(index), &[&[index; 100]]).unwrap();
            assert_eq!(layer.read(&name).unwrap().unwrap(), vec![index; 100]);
            assert!(layer.held() <= 3, "{} held", layer.held());
        }

        let by_bytes = open_layer(dir.path(), Capacity::Bytes(1_000));
        for index in 40..60 {
            let name = by_bytes.write(&key(index), &[&[index; 300]]).unwrap();
            by_bytes.read(&name).unwrap();
            assert!(
                by_bytes.held() <= 3,
                "{} blobs of 300 bytes held in 1 000",
                by_bytes.held()
            );
        }
    }
}
