//! Where large values live: a blob store trait, the local sharded directory that
//! implements it, and the self-describing blob file format.
//!
//! A blob file is `magic "CNBLOB"`, a format version byte, a flags byte
//! (formerly reserved, 0), the header length (u32, little endian), the header
//! (JSON of [`BlobHeader`]: the entry's metadata, ending with its own checksum
//! when flag 1 is set), then the stored bytes. The header lets the metadata be
//! rebuilt from the files alone. [`format`](mod@format) owns the format and blob names;
//! one integrity check (a private module) serves reads, `verify` and
//! `rebuild`; [`entry_of_blob`] is its part a backend's rebuild calls.

pub(crate) mod check;
pub mod format;
mod local;

use std::fmt::Debug;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::entry::ContentHash;
use crate::error::Result;
use crate::key::CacheKey;

pub use check::entry_of_blob;

/// Whether `blob`'s entry supersedes `other`'s, two blobs of one key found by
/// a rebuild: the later put wins, and two puts in the same millisecond are
/// told apart by name, so every rebuild (the engine's and a backend's own)
/// restores the same one.
pub fn supersedes(blob: &crate::Entry, other: &crate::Entry) -> bool {
    (blob.created_at, blob.blob_name()) > (other.created_at, other.blob_name())
}
pub use format::{BLOB_FORMAT_VERSION, BLOB_MAGIC, BlobHeader, BlobName, MAX_HEADER_BYTES};
pub use local::LocalBlobStore;

/// How old an unreferenced blob file or a temp file must be before maintenance
/// may delete it: one hour.
///
/// A put writes its blob to a temp file, renames it into place (a rename keeps
/// the file's modification time) and then commits its metadata, within
/// milliseconds; until the commit its blob has no entry. A file written within
/// the grace period may belong to such a put, in this process or in any other,
/// so `gc` and `verify --repair` leave it alone. The age is the file's
/// modification time against the system clock ([`SystemTime::now`]), which
/// every process on the machine shares, whatever its PID namespace.
pub const GRACE_PERIOD: Duration = Duration::from_secs(3600);

/// Whether a file last modified at `modified` is older than `grace`, told by
/// the system clock. A zero grace means "any age". Otherwise a time that is
/// unknown or lies in the future cannot tell, and reads as not old enough: the
/// file is kept.
pub(crate) fn older_than(modified: Option<SystemTime>, grace: Duration) -> bool {
    if grace.is_zero() {
        return true;
    }
    modified
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|age| age >= grace)
}

/// Stores blobs by name. Names are chosen by the store and are unique per write,
/// so two writers of one key never share a file.
///
/// The local directory ([`LocalBlobStore`]) is the implementation core ships; a
/// store on another medium can replace it without touching the engine or the
/// metadata backends.
pub trait BlobStore: Send + Sync + Debug {
    /// Stores the concatenation of `parts` as a new blob for `key` and returns
    /// its name. A reader never sees a partly written blob.
    fn write(&self, key: &CacheKey, parts: &[&[u8]]) -> Result<String>;

    /// Stores `header(&hash)` followed by `body` as a new blob for `key`, where
    /// `hash` is `body`'s [`ContentHash`], and returns the blob's name and the
    /// hash. This is how the engine writes a value: the header that starts the
    /// blob describes the value, hash included.
    ///
    /// The default hashes `body`, then calls [`write`](Self::write). A store may
    /// instead hash while it writes the body, as [`LocalBlobStore`] does for
    /// large bodies: it may then call `header` more than once (with a
    /// placeholder hash, to learn the header's length), and the header it
    /// writes is the one of the last call, made with the real hash.
    fn write_hashed(
        &self,
        key: &CacheKey,
        body: &[u8],
        header: &mut dyn FnMut(&ContentHash) -> Vec<u8>,
    ) -> Result<(String, ContentHash)> {
        hash_then_write(self, key, body, header)
    }

    /// The whole blob, or `None` if there is no blob of that name.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// [`read`](Self::read) from the medium itself, past any copy the store
    /// keeps in memory: what `verify`, `gc` and `rebuild` use, since they check
    /// the files. The default is `read`; a store that keeps copies overrides it.
    fn read_stored(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.read(name)
    }

    /// At most the first `limit` bytes of the blob, or `None` if there is no
    /// blob of that name: a blob longer than `limit` comes back cut to `limit`
    /// bytes. For a reader that knows how long the blob should be: it passes
    /// one more byte than that, sees a longer blob as too long, and never
    /// holds more than the limit, however large the file (a sparse file of a
    /// terabyte at a blob's name costs nothing).
    ///
    /// The default reads the whole blob with [`read`](Self::read) and cuts it;
    /// a store that can read part of a blob overrides it, as
    /// [`LocalBlobStore`] does.
    fn read_limited(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.read(name)?.map(|mut bytes| {
            bytes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            bytes
        }))
    }

    /// Opens the blob on the medium itself (as [`read_stored`](Self::read_stored)
    /// does, past any copy kept in memory) for a streaming read: its length and
    /// a reader of its bytes. What `verify` and `rebuild` use, so that checking
    /// a file never holds it whole: they read the header with a bound, compare
    /// the length with what the header or entry says, and hash the rest as it
    /// streams by.
    ///
    /// The default wraps [`read_stored`](Self::read_stored); a store that can
    /// stream overrides it, as [`LocalBlobStore`] does.
    fn open_stored(&self, name: &str) -> Result<Option<StoredBlob>> {
        Ok(self.read_stored(name)?.map(StoredBlob::from_bytes))
    }

    /// Deletes the blob; a blob that is already gone is not an error.
    fn remove(&self, name: &str) -> Result<()>;

    /// Calls `visit` with the name of every blob. Only regular files are
    /// blobs: a symbolic link, FIFO or directory at a blob's name is not listed.
    fn list(&self, visit: &mut dyn FnMut(&str)) -> Result<()>;

    /// When the blob was last written, by the system clock ([`SystemTime`]),
    /// or `None` when that cannot be told (no such blob, or a store that does
    /// not know). Maintenance deletes an unreferenced blob only once it is
    /// older than a grace period ([`GRACE_PERIOD`]), since it may belong to a
    /// put that has not committed its metadata yet; `None` keeps it. The
    /// default knows nothing, so `gc` never deletes an unreferenced blob of a
    /// store that does not override it (unless it is told the grace is zero).
    fn modified(&self, name: &str) -> Option<SystemTime> {
        let _ = name;
        None
    }

    /// Deletes temporary files that are older than `grace` (a writer still at
    /// work keeps its temp file's modification time fresh); returns how many.
    fn collect_temp_files(&self, grace: Duration) -> Result<u64>;

    /// The file behind a blob, for stores that have one.
    fn local_path(&self, _name: &str) -> Option<PathBuf> {
        None
    }
}

/// A blob opened for a streaming read ([`BlobStore::open_stored`]).
#[non_exhaustive]
pub struct StoredBlob {
    /// The blob's length in bytes.
    pub len: u64,
    /// The blob's bytes, from the first.
    pub reader: Box<dyn Read + Send>,
}

impl StoredBlob {
    /// A blob of `len` bytes read from `reader`.
    pub fn new(len: u64, reader: Box<dyn Read + Send>) -> Self {
        StoredBlob { len, reader }
    }

    /// A blob already in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        StoredBlob::new(bytes.len() as u64, Box::new(io::Cursor::new(bytes)))
    }
}

impl Debug for StoredBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredBlob")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// [`BlobStore::write_hashed`] one step after the other: hash, then write.
fn hash_then_write<S: BlobStore + ?Sized>(
    store: &S,
    key: &CacheKey,
    body: &[u8],
    header: &mut dyn FnMut(&ContentHash) -> Vec<u8>,
) -> Result<(String, ContentHash)> {
    let hash = ContentHash::of(body);
    let head = header(&hash);
    store.write(key, &[&head, body]).map(|name| (name, hash))
}

/// How hard a write tries to reach the disk before it returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Durability {
    /// Written to the OS: survives the process being killed, not a power loss.
    #[default]
    Flush,
    /// Also `fsync`ed (file and directory): survives a power loss.
    Sync,
}
