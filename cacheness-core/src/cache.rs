//! The cache engine: values in, values out, over any metadata backend.

use std::any::type_name;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{AccessBatch, Counters, LayerStats, MetadataBackend, ScanFilter, Touch};
use crate::blob::{
    BlobHeader, BlobStore, Durability, LocalBlobStore, create_private_dir, payload_offset,
};
use crate::clock::{Clock, SystemClock, duration_ms};
use crate::codec::{Codec, JsonCodec, RAW_CODEC};
use crate::entry::{
    Compression, ContentHash, Entry, ListedEntry, Location, SharedEntry, UserMetadata,
};
use crate::error::{Error, Result};
use crate::key::{CacheKey, MAX_NESTING, Params, ToKey};
use crate::signing::{MismatchLog, Signer, check_dir_key, refuse_unsigned_writer};

/// The longest description a put accepts, in bytes. With the other limits
/// ([`MAX_USER_METADATA_LEN`], [`MAX_PARAMS_LEN`](crate::key::MAX_PARAMS_LEN),
/// [`MAX_NESTING`], a prefix of at most 255 bytes) it
/// keeps a blob file's header (which also carries the description, escaped as
/// JSON: at most six bytes per byte) far below the 64 MiB its reader accepts.
pub const MAX_DESCRIPTION_LEN: usize = 64 << 10;
/// The most bytes an entry's user metadata may take as JSON, checked at put.
/// Its nesting is limited to [`MAX_NESTING`] levels,
/// the object itself not counted.
pub const MAX_USER_METADATA_LEN: usize = 1 << 20;

/// Values up to this many stored bytes live inline in the entry by default.
pub const DEFAULT_INLINE_THRESHOLD: usize = 4 * 1024;
/// A read records an access only when the entry's recorded access is at least this
/// old, by default. Recording is a write to the backend (for SQLite a random page);
/// LRU eviction does not need millisecond recency.
pub const DEFAULT_ACCESS_GRANULARITY: Duration = Duration::from_secs(60);
/// The size limit evicts down to this fraction of the limit by default.
pub const DEFAULT_LOW_WATERMARK: f64 = 0.8;
/// Buffered reads are written to the backend after this many distinct keys...
const FLUSH_MAX_TOUCHES: usize = 4096;
/// ...or once this much time has passed since the last write.
const FLUSH_INTERVAL_MS: u64 = 1_000;
/// With a size limit, the exact total is re-read from the backend every this many
/// puts, so writes by other processes are noticed.
const SIZE_RESYNC_PUTS: u64 = 256;
/// Eviction and expiry work through the backend in batches of this many entries.
const REMOVAL_BATCH: usize = 256;
/// Compression is only tried on values at least this large: below it the bytes
/// saved are few, and lz4 zeroes a 16 KiB table on every call (measured: a third
/// of the cost of putting a 200-byte value).
const COMPRESS_MIN_LEN: usize = 512;
/// Large values are compressed only if a sample of this size compresses.
const COMPRESS_SAMPLE_LEN: usize = 64 * 1024;

/// A persistent cache: serde values stored under keys, with TTLs, a size limit and
/// integrity checks, over a pluggable [`MetadataBackend`].
///
/// `Cache` is `Send + Sync`; share it between threads with an `Arc`. Reads are
/// recorded in memory and written to the backend in batches (on a size or time
/// threshold, on [`flush`](Cache::flush) and on drop), so a get never costs a
/// synchronous write.
///
/// ```
/// use std::time::Duration;
/// use cacheness_core::{Cache, ManualClock, key};
/// use cacheness_memory::MemoryBackend;
///
/// let clock = ManualClock::new(0);
/// let cache = Cache::builder()
///     .default_ttl(Duration::from_secs(60))
///     .clock(clock.clone())
///     .open(MemoryBackend::new())?;
///
/// let key = key!(model = "xgboost", version = 2);
/// cache.put(&key, &vec![0.5_f64, 0.25])?;
/// assert_eq!(cache.get::<Vec<f64>>(&key)?, Some(vec![0.5, 0.25]));
///
/// clock.advance(Duration::from_secs(61));
/// assert_eq!(cache.get::<Vec<f64>>(&key)?, None);
/// # Ok::<(), cacheness_core::Error>(())
/// ```
pub struct Cache<C: Codec = JsonCodec> {
    backend: Arc<dyn MetadataBackend>,
    blobs: Option<Arc<dyn BlobStore>>,
    codec: C,
    clock: Arc<dyn Clock>,
    signer: Option<Signer>,
    /// Entries whose signature did not match, logged once each.
    mismatches: MismatchLog,
    settings: Settings,
    pending: Mutex<PendingAccess>,
    session: SessionCounters,
    approx_total_size: AtomicU64,
    puts_since_resync: AtomicU64,
    /// Kept alive as long as the cache, dropped after its last write (see
    /// [`CacheBuilder::hold`]).
    _held: Held,
}

/// Values a cache keeps alive for whoever opened it, such as a lock.
#[derive(Default)]
struct Held(Vec<Arc<dyn std::any::Any + Send + Sync>>);

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held({})", self.0.len())
    }
}

#[derive(Debug, Clone)]
struct Settings {
    dir: Option<PathBuf>,
    default_ttl: Option<Duration>,
    max_size: Option<u64>,
    low_watermark: f64,
    verify_integrity: bool,
    access_granularity_ms: u64,
    /// Stored values up to this size go inline; `usize::MAX` without a blob store,
    /// and `None` when the backend cannot hold inline values.
    inline_limit: Option<usize>,
    /// Never write: see [`CacheBuilder::read_only`].
    read_only: bool,
}

#[derive(Debug, Default)]
struct PendingAccess {
    touches: HashMap<CacheKey, (u64, u64)>,
    counters: Counters,
    last_flush_ms: u64,
}

#[derive(Debug, Default)]
struct SessionCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl<C: Codec> std::fmt::Debug for Cache<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.backend.name())
            .field("dir", &self.settings.dir)
            .field("codec", &self.codec.name())
            .field("max_size", &self.settings.max_size)
            .field("default_ttl", &self.settings.default_ttl)
            .finish_non_exhaustive()
    }
}

/// Configures and opens a [`Cache`]; see [`Cache::builder`].
#[derive(Debug)]
pub struct CacheBuilder<C: Codec = JsonCodec> {
    dir: Option<PathBuf>,
    default_ttl: Option<Duration>,
    max_size: Option<u64>,
    low_watermark: f64,
    verify_integrity: bool,
    inline_threshold: usize,
    access_granularity: Duration,
    durability: Durability,
    clock: Arc<dyn Clock>,
    codec: C,
    blob_store: Option<Arc<dyn BlobStore>>,
    signing: Signing,
    read_only: bool,
    held: Held,
}

/// Where a cache's signing key comes from.
#[derive(Debug, Clone)]
enum Signing {
    Off,
    KeyFile,
    Key(Signer),
}

impl Default for CacheBuilder<JsonCodec> {
    fn default() -> Self {
        CacheBuilder {
            dir: None,
            default_ttl: None,
            max_size: None,
            low_watermark: DEFAULT_LOW_WATERMARK,
            verify_integrity: true,
            inline_threshold: DEFAULT_INLINE_THRESHOLD,
            access_granularity: DEFAULT_ACCESS_GRANULARITY,
            durability: Durability::default(),
            clock: Arc::new(SystemClock),
            codec: JsonCodec,
            blob_store: None,
            signing: Signing::Off,
            read_only: false,
            held: Held::default(),
        }
    }
}

impl<C: Codec> CacheBuilder<C> {
    /// The cache directory, for blob files (created, mode 0700, if missing).
    /// Without a directory every value is held inline by the backend.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The TTL of entries put without one of their own (default: none, entries
    /// never expire).
    pub fn default_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.default_ttl = ttl.into();
        self
    }

    /// The most stored bytes the cache holds before it evicts the least recently
    /// accessed entries (default: no limit).
    ///
    /// The limit counts the values' stored bytes (`stored_size`), not the
    /// metadata around them (parameters, description, user metadata, the blob
    /// header that repeats them). That part is bounded per entry at put, at most
    /// [`MAX_PARAMS_LEN`](crate::key::MAX_PARAMS_LEN) of encoded parameters,
    /// [`MAX_DESCRIPTION_LEN`] and [`MAX_USER_METADATA_LEN`], so a put can no
    /// longer hide megabytes of parameters behind an 11-byte value.
    pub fn max_size(mut self, bytes: impl Into<Option<u64>>) -> Self {
        self.max_size = bytes.into();
        self
    }

    /// The fraction of `max_size` eviction brings the cache down to (default 0.8).
    pub fn low_watermark(mut self, fraction: f64) -> Self {
        self.low_watermark = fraction;
        self
    }

    /// Whether every read checks the stored bytes against their blake3 hash
    /// (default: yes). Missing and truncated blobs are detected either way.
    pub fn verify_integrity(mut self, verify: bool) -> Self {
        self.verify_integrity = verify;
        self
    }

    /// Stored values up to this many bytes live inline in the metadata, where the
    /// backend allows it (default 4 KiB); larger ones go to blob files.
    pub fn inline_threshold(mut self, bytes: usize) -> Self {
        self.inline_threshold = bytes;
        self
    }

    /// How old an entry's recorded access must be before a read records a new one
    /// (default 60 s). Recording costs a backend write per key; reads closer
    /// together than this are counted as hits but move neither `accessed_at` nor
    /// `access_count`. Zero records every read.
    pub fn access_granularity(mut self, granularity: Duration) -> Self {
        self.access_granularity = granularity;
        self
    }

    /// How hard blob writes try to reach the disk (default [`Durability::Flush`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The clock all times come from (default: the system clock).
    pub fn clock(self, clock: impl Clock + 'static) -> Self {
        self.shared_clock(Arc::new(clock))
    }

    /// A clock shared with other parts of the program.
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sign every entry with a keyed blake3 MAC, the key kept in `signing.key` in
    /// the cache dir (created 0600 with random bytes if missing); content hashes
    /// are then always checked.
    ///
    /// A read of an entry whose metadata does not match its signature (a size,
    /// hash or expiry edited by hand, another key, or no signature at all) is a
    /// miss, logged once per entry; the entry and its blob are **kept**, and
    /// [`verify`](Cache::verify) reports them (its repair removes them). Turning
    /// signing on for a cache that has unsigned entries therefore hides them
    /// until [`sign_unsigned`](Cache::sign_unsigned) signs them in place.
    ///
    /// The dir records its key (`signing.key`, or for a key given with
    /// [`signing_key`](Self::signing_key) its fingerprint in `signing.id`), and
    /// an open with another key fails with [`Error::Config`] naming the file.
    /// So does a writable open **without** signing of a dir that records a key
    /// (either file, of any kind): its entries would be unsigned, hidden from
    /// the signed opens and removed by their `verify --repair`. A read-only
    /// open without signing is allowed and checks no signatures.
    pub fn sign_entries(mut self) -> Self {
        self.signing = Signing::KeyFile;
        self
    }

    /// Sign every entry with this key (see [`sign_entries`](Self::sign_entries)).
    /// With a cache dir, the first signed open records a fingerprint of the key
    /// (never the key) in `signing.id`, 0600; later opens with another key are
    /// refused.
    pub fn signing_key(mut self, key: [u8; 32]) -> Self {
        self.signing = Signing::Key(Signer::new(key));
        self
    }

    /// Open the cache for reading only (default: no). The engine then never
    /// writes:
    ///
    /// - puts, removals, [`clear`](Cache::clear),
    ///   [`cleanup_expired`](Cache::cleanup_expired), [`gc`](Cache::gc),
    ///   [`sign_unsigned`](Cache::sign_unsigned) and blob writes fail with
    ///   [`Error::ReadOnly`];
    /// - gets serve hits but record no access (the hit and miss counts stay in
    ///   this process), and an expired or damaged entry is a miss that stays;
    /// - the dir must exist but is neither created nor required to be
    ///   writable, and the local blob store is opened with
    ///   [`LocalBlobStore::open_read_only`], which creates no `blobs/` or
    ///   `tmp/` (a missing `blobs/` reads as every blob missing);
    /// - with signing, `signing.key` is read if present and never created, and
    ///   no `signing.id` is recorded;
    /// - without signing, a dir that records a key (`signing.key` or
    ///   `signing.id`) is opened all the same, since nothing is written, but no
    ///   signature is checked: an entry whose metadata was edited by hand is
    ///   served as it stands. (A writable open without signing of such a dir is
    ///   refused: see [`sign_entries`](Self::sign_entries).)
    ///
    /// The backend is opened by the caller: open it read-only too (the facade
    /// does), since a backend may write on its own when it opens.
    ///
    /// ```
    /// use cacheness_core::{Cache, Error, key};
    /// use cacheness_memory::MemoryBackend;
    /// use std::sync::Arc;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let backend = Arc::new(MemoryBackend::new());
    /// Cache::builder().dir(dir.path()).open_shared(backend.clone())?
    ///     .put(&key!(model = "xgboost"), &[0.1, 0.9])?;
    ///
    /// let reader = Cache::builder().dir(dir.path()).read_only(true).open_shared(backend)?;
    /// assert_eq!(reader.get::<Vec<f64>>(&key!(model = "xgboost"))?, Some(vec![0.1, 0.9]));
    /// assert!(matches!(
    ///     reader.put(&key!(model = "lightgbm"), &[0.5]),
    ///     Err(Error::ReadOnly { operation: "put" })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// A blob store to use instead of the local directory.
    pub fn blob_store(mut self, store: Arc<dyn BlobStore>) -> Self {
        self.blob_store = Some(store);
        self
    }

    /// Keeps `value` alive as long as the cache is open, and drops it after the
    /// cache's last write: for what its opener holds on the cache's behalf,
    /// such as the facade's lock on the cache dir.
    pub fn hold(mut self, value: Arc<dyn std::any::Any + Send + Sync>) -> Self {
        self.held.0.push(value);
        self
    }

    /// The codec values are stored with (default [`JsonCodec`]).
    pub fn codec<D: Codec>(self, codec: D) -> CacheBuilder<D> {
        CacheBuilder {
            dir: self.dir,
            default_ttl: self.default_ttl,
            max_size: self.max_size,
            low_watermark: self.low_watermark,
            verify_integrity: self.verify_integrity,
            inline_threshold: self.inline_threshold,
            access_granularity: self.access_granularity,
            durability: self.durability,
            clock: self.clock,
            codec,
            blob_store: self.blob_store,
            signing: self.signing,
            read_only: self.read_only,
            held: self.held,
        }
    }

    /// Opens the cache over `backend`, checking the configuration.
    pub fn open(self, backend: impl MetadataBackend + 'static) -> Result<Cache<C>> {
        self.open_shared(Arc::new(backend))
    }

    /// Opens the cache over a backend that is shared (with a memory layer, a
    /// migration, or another cache).
    pub fn open_shared(self, backend: Arc<dyn MetadataBackend>) -> Result<Cache<C>> {
        if self.max_size == Some(0) {
            return Err(Error::Config {
                field: "max_size",
                reason: "must be greater than zero".into(),
            });
        }
        if !(self.low_watermark > 0.0 && self.low_watermark <= 1.0) {
            return Err(Error::Config {
                field: "low_watermark",
                reason: format!("{} is not in (0, 1]", self.low_watermark),
            });
        }
        let read_only = self.read_only;
        if let (true, Some(dir)) = (read_only, &self.dir) {
            inspect_dir(dir)?;
        }
        if let (Signing::Off, false, Some(dir)) = (&self.signing, read_only, &self.dir) {
            refuse_unsigned_writer(dir)?;
        }
        let blobs = match (self.blob_store, &self.dir) {
            (Some(store), _) if read_only => {
                Some(Arc::new(ReadOnlyBlobs(store)) as Arc<dyn BlobStore>)
            }
            (Some(store), _) => Some(store),
            (None, Some(dir)) if read_only => Some(Arc::new(ReadOnlyBlobs(Arc::new(
                LocalBlobStore::open_read_only(dir)?,
            ))) as Arc<dyn BlobStore>),
            (None, Some(dir)) => {
                prepare_dir(dir)?;
                Some(Arc::new(LocalBlobStore::open(dir, self.durability)?) as Arc<dyn BlobStore>)
            }
            (None, None) => None,
        };
        let inline_allowed = backend.capabilities().inline_values;
        let inline_limit = match (&blobs, inline_allowed) {
            (_, false) => None,
            (None, true) => Some(usize::MAX),
            (Some(_), true) => Some(self.inline_threshold),
        };
        if blobs.is_none() && !inline_allowed {
            return Err(Error::Config {
                field: "dir",
                reason: format!(
                    "the {} backend cannot hold values inline, so it needs a cache directory",
                    backend.name()
                ),
            });
        }
        let now = self.clock.now_ms();
        let signer = match (self.signing, &self.dir) {
            (Signing::Off, _) => None,
            (Signing::Key(signer), _) => Some(signer),
            (Signing::KeyFile, Some(dir)) if read_only => {
                Some(Signer::read_key_file(dir)?.ok_or_else(|| Error::Config {
                    field: "signing",
                    reason: format!(
                        "{} does not exist, and a read-only open does not create it",
                        dir.join(crate::signing::KEY_FILE).display()
                    ),
                })?)
            }
            (Signing::KeyFile, Some(dir)) => Some(Signer::from_key_file(dir)?),
            (Signing::KeyFile, None) => {
                return Err(Error::Config {
                    field: "signing",
                    reason: "a signing key file needs a cache directory; pass the key instead"
                        .into(),
                });
            }
        };
        if let (Some(signer), Some(dir)) = (&signer, &self.dir) {
            check_dir_key(dir, signer, backend.as_ref(), read_only)?;
        }
        let approx_total_size = match self.max_size {
            Some(_) => backend.total_size()?,
            None => 0,
        };
        Ok(Cache {
            backend,
            blobs,
            codec: self.codec,
            clock: self.clock,
            signer,
            mismatches: MismatchLog::default(),
            settings: Settings {
                dir: self.dir,
                default_ttl: self.default_ttl,
                max_size: self.max_size,
                low_watermark: self.low_watermark,
                verify_integrity: self.verify_integrity,
                access_granularity_ms: duration_ms(self.access_granularity),
                inline_limit,
                read_only,
            },
            pending: Mutex::new(PendingAccess {
                last_flush_ms: now,
                ..PendingAccess::default()
            }),
            session: SessionCounters::default(),
            approx_total_size: AtomicU64::new(approx_total_size),
            puts_since_resync: AtomicU64::new(0),
            _held: self.held,
        })
    }
}

/// Checks the cache dir is a writable directory, creating it (0700) if missing.
fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Config {
            field: "dir",
            reason: format!("{} exists and is not a directory", dir.display()),
        });
    }
    create_private_dir(dir)?;
    let metadata =
        std::fs::metadata(dir).map_err(|source| Error::io("inspect directory", dir, source))?;
    if metadata.permissions().readonly() {
        return Err(Error::Config {
            field: "dir",
            reason: format!("{} is not writable", dir.display()),
        });
    }
    Ok(())
}

/// Checks the cache dir of a read-only open: it must exist and be a directory;
/// nothing is created and it need not be writable.
fn inspect_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(Error::Config {
            field: "dir",
            reason: format!("{} exists and is not a directory", dir.display()),
        }),
        Err(source) => Err(Error::io("open cache directory read-only", dir, source)),
    }
}

/// The blob store of a read-only cache: reads go through, writes and removals
/// are refused, and temp files are not collected.
#[derive(Debug)]
struct ReadOnlyBlobs(Arc<dyn BlobStore>);

impl BlobStore for ReadOnlyBlobs {
    fn write(&self, _key: &CacheKey, _parts: &[&[u8]]) -> Result<String> {
        Err(Error::ReadOnly {
            operation: "write a blob",
        })
    }

    fn write_hashed(
        &self,
        _key: &CacheKey,
        _body: &[u8],
        _header: &mut dyn FnMut(&ContentHash) -> Vec<u8>,
    ) -> Result<(String, ContentHash)> {
        Err(Error::ReadOnly {
            operation: "write a blob",
        })
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.0.read(name)
    }

    fn read_stored(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.0.read_stored(name)
    }

    fn read_limited(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        self.0.read_limited(name, limit)
    }

    fn open_stored(&self, name: &str) -> Result<Option<crate::blob::StoredBlob>> {
        self.0.open_stored(name)
    }

    fn remove(&self, _name: &str) -> Result<()> {
        Err(Error::ReadOnly {
            operation: "remove a blob",
        })
    }

    fn list(&self, visit: &mut dyn FnMut(&str)) -> Result<()> {
        self.0.list(visit)
    }

    fn modified(&self, name: &str) -> Option<std::time::SystemTime> {
        self.0.modified(name)
    }

    fn collect_temp_files(&self, _grace: Duration) -> Result<u64> {
        Ok(0)
    }

    fn local_path(&self, name: &str) -> Option<PathBuf> {
        self.0.local_path(name)
    }
}

/// When an entry stops being served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Expiry {
    /// The cache's default TTL.
    #[default]
    Default,
    /// Never, whatever the default.
    Never,
    /// This long after it is stored.
    After(Duration),
}

/// Options of one put; see [`Cache::put_with`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PutOptions {
    /// When the entry expires.
    pub expiry: Expiry,
    /// Free text describing the value.
    pub description: String,
    /// A namespace label: no `/`, `\`, `..` or NUL, at most 255 bytes.
    pub prefix: String,
    /// Free user metadata.
    pub user_metadata: UserMetadata,
}

impl PutOptions {
    /// The defaults: the cache's TTL, no description, no prefix.
    pub fn new() -> Self {
        PutOptions::default()
    }

    /// Expire this long after the put.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.expiry = Expiry::After(ttl);
        self
    }

    /// Never expire.
    pub fn no_expiry(mut self) -> Self {
        self.expiry = Expiry::Never;
        self
    }

    /// Describe the value.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// File the entry under a prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Attach a user metadata field.
    pub fn metadata(
        mut self,
        name: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.user_metadata.insert(name.into(), value.into());
        self
    }
}

/// Options of one get; see [`Cache::get_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Treat entries older than this (since their put) as missing.
    pub max_age: Option<Duration>,
}

impl GetOptions {
    /// Only accept entries stored at most `max_age` ago.
    pub fn max_age(max_age: Duration) -> Self {
        GetOptions {
            max_age: Some(max_age),
        }
    }
}

/// Which entries [`Cache::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only entries with this prefix.
    pub prefix: Option<String>,
    /// Only entries whose key comes after this one: pass the last key of a page to
    /// get the next.
    pub after: Option<CacheKey>,
    /// At most this many entries.
    pub limit: Option<usize>,
    /// Also list entries that have expired but were not yet cleaned up.
    pub include_expired: bool,
}

/// Statistics of a cache.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Number of entries (expired ones not yet cleaned up included).
    pub entries: u64,
    /// Stored bytes of all entries.
    pub total_size: u64,
    /// The size limit, if any.
    pub max_size: Option<u64>,
    /// Gets that returned a value.
    pub hits: u64,
    /// Gets that found nothing usable.
    pub misses: u64,
    /// Entries removed by the size limit.
    pub evictions: u64,
    /// The memory layer's own statistics, when the backend has one in front.
    pub layer: Option<LayerStats>,
}

impl Stats {
    /// Hits over all gets; 0 when there were none.
    pub fn hit_ratio(&self) -> f64 {
        let gets = self.hits + self.misses;
        if gets == 0 {
            0.0
        } else {
            self.hits as f64 / gets as f64
        }
    }
}

impl Cache<JsonCodec> {
    /// A builder with the defaults: no dir, no TTL, no size limit, integrity checks
    /// on, 4 KiB inline threshold, JSON codec, system clock.
    pub fn builder() -> CacheBuilder<JsonCodec> {
        CacheBuilder::default()
    }
}

/// Why stored bytes could not be used.
enum Damage {
    Missing,
    Invalid(String),
}

impl<C: Codec> Cache<C> {
    /// Stores `value` under `key`, replacing what was there, with the default TTL.
    pub fn put<T: Serialize + ?Sized>(&self, key: &impl ToKey, value: &T) -> Result<()> {
        self.put_with(key, value, &PutOptions::default())
    }

    /// Stores `value` under `key` with `options` (TTL, description, prefix, metadata).
    ///
    /// On error nothing is stored and no file is left behind.
    pub fn put_with<T: Serialize + ?Sized>(
        &self,
        key: &impl ToKey,
        value: &T,
        options: &PutOptions,
    ) -> Result<()> {
        let cache_key = key.to_key();
        let encoded = self.codec.encode(value).map_err(|source| Error::Encode {
            key: cache_key,
            codec: self.codec.name().to_owned(),
            source,
        })?;
        self.store(
            cache_key,
            key.params(),
            &encoded,
            self.codec.name(),
            type_name::<T>(),
            options,
        )
    }

    /// Stores raw bytes under `key`, without a codec.
    pub fn put_bytes(&self, key: &impl ToKey, bytes: &[u8]) -> Result<()> {
        self.put_bytes_with(key, bytes, &PutOptions::default())
    }

    /// Stores raw bytes under `key` with `options`.
    pub fn put_bytes_with(
        &self,
        key: &impl ToKey,
        bytes: &[u8],
        options: &PutOptions,
    ) -> Result<()> {
        self.store(
            key.to_key(),
            key.params(),
            bytes,
            RAW_CODEC,
            "bytes",
            options,
        )
    }

    /// The value under `key`, or `None` if it is missing, expired or corrupted.
    ///
    /// An intact value that does not decode as `T` is an error, and the entry stays.
    pub fn get<T: DeserializeOwned>(&self, key: &impl ToKey) -> Result<Option<T>> {
        self.get_with(key, &GetOptions::default())
    }

    /// [`get`](Cache::get) with options, such as a maximum age.
    pub fn get_with<T: DeserializeOwned>(
        &self,
        key: &impl ToKey,
        options: &GetOptions,
    ) -> Result<Option<T>> {
        Ok(self
            .load_decoded(key.to_key(), options, false)?
            .map(|(value, _)| value))
    }

    /// The value under `key` together with its entry (metadata as of the read).
    pub fn get_with_entry<T: DeserializeOwned>(
        &self,
        key: &impl ToKey,
    ) -> Result<Option<(T, Entry)>> {
        Ok(self
            .load_decoded(key.to_key(), &GetOptions::default(), true)?
            .map(|(value, entry)| (value, SharedEntry::into_entry(entry))))
    }

    /// The stored value's bytes as they were encoded (decompressed, not decoded),
    /// whatever the codec.
    pub fn get_bytes(&self, key: &impl ToKey) -> Result<Option<Vec<u8>>> {
        Ok(self
            .load(key.to_key(), &GetOptions::default(), false)?
            .map(|(loaded, entry)| loaded.into_vec(&entry)))
    }

    /// The value under `key`; if there is none, computes it with `make`, stores it
    /// and returns it.
    pub fn get_or_insert_with<T, F>(&self, key: &impl ToKey, make: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        self.get_or_try_insert_with(key, || Ok::<T, Error>(make()))
    }

    /// Like [`get_or_insert_with`](Cache::get_or_insert_with) for a computation that
    /// can fail; its error is returned and nothing is stored.
    pub fn get_or_try_insert_with<T, E, F>(&self, key: &impl ToKey, make: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: FnOnce() -> Result<T, E>,
    {
        if let Some(value) = self.get(key)? {
            return Ok(value);
        }
        let value = make()?;
        self.put(key, &value)?;
        Ok(value)
    }

    /// Whether an unexpired entry exists under `key` (its bytes are not checked).
    pub fn contains(&self, key: &impl ToKey) -> Result<bool> {
        let now = self.clock.now_ms();
        Ok(self
            .backend
            .get_shared(&key.to_key())?
            .is_some_and(|entry| !entry.is_expired(now)))
    }

    /// The entry under `key` (metadata only), expired or not.
    pub fn entry(&self, key: &impl ToKey) -> Result<Option<Entry>> {
        self.backend.get(&key.to_key())
    }

    /// Removes the entry under `key` and its blob; whether there was one.
    pub fn remove(&self, key: &impl ToKey) -> Result<bool> {
        self.check_writable("remove")?;
        let removed = self.backend.remove(&key.to_key())?;
        if let Some(entry) = &removed {
            self.delete_blob(entry);
        }
        Ok(removed.is_some())
    }

    /// Removes every entry filed under `prefix`; how many.
    pub fn remove_prefix(&self, prefix: &str) -> Result<u64> {
        self.check_writable("remove")?;
        validate_prefix(prefix)?;
        let mut removed = 0;
        loop {
            let batch = self.scan_keys(ScanFilter::all().prefix(prefix).limit(REMOVAL_BATCH))?;
            for key in &batch {
                if let Some(entry) = self.backend.remove(key)? {
                    self.delete_blob(&entry);
                    removed += 1;
                }
            }
            if batch.len() < REMOVAL_BATCH {
                return Ok(removed);
            }
        }
    }

    /// Entries in ascending key order, filtered and paged by `options`.
    ///
    /// A [`ListedEntry`] dereferences to the [`Entry`]; backends that keep
    /// entries in memory share theirs instead of copying them.
    pub fn list(&self, options: &ListOptions) -> Result<Vec<ListedEntry>> {
        let now = self.clock.now_ms();
        let filter = ScanFilter {
            prefix: options.prefix.clone(),
            after: options.after,
            limit: if options.include_expired {
                options.limit
            } else {
                None
            },
        };
        let limit = options.limit.unwrap_or(usize::MAX);
        let mut entries = Vec::new();
        if limit == 0 {
            return Ok(entries);
        }
        self.backend.scan_listed(&filter, &mut |entry| {
            if options.include_expired || !entry.is_expired(now) {
                entries.push(entry);
            }
            if entries.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(entries)
    }

    /// Entry count, size and hit/miss/eviction counters.
    ///
    /// Counters are the backend's persisted totals (plus reads not yet flushed)
    /// where the backend keeps them, else this process's since open.
    pub fn stats(&self) -> Result<Stats> {
        let backend_stats = self.backend.stats()?;
        let counters = if self.backend.capabilities().counters {
            let mut counters = backend_stats.counters;
            counters.add(self.lock_pending().counters);
            counters
        } else {
            Counters {
                hits: self.session.hits.load(Ordering::Relaxed),
                misses: self.session.misses.load(Ordering::Relaxed),
                evictions: self.session.evictions.load(Ordering::Relaxed),
            }
        };
        Ok(Stats {
            entries: backend_stats.entries,
            total_size: backend_stats.total_size,
            max_size: self.settings.max_size,
            hits: counters.hits,
            misses: counters.misses,
            evictions: counters.evictions,
            layer: self.backend.layer_stats(),
        })
    }

    /// Removes every expired entry and its blob; how many.
    pub fn cleanup_expired(&self) -> Result<u64> {
        self.check_writable("clean up expired entries")?;
        let now = self.clock.now_ms();
        let mut removed = 0;
        loop {
            let batch = self.backend.expired(now, REMOVAL_BATCH)?;
            let mut removed_in_batch = 0;
            for entry in &batch {
                if let Some(gone) = self.backend.remove_if_unchanged(entry)? {
                    self.delete_blob(&gone);
                    removed_in_batch += 1;
                }
            }
            removed += removed_in_batch;
            // A batch where every entry changed under us means others are at work;
            // stop rather than spin.
            if batch.len() < REMOVAL_BATCH || removed_in_batch == 0 {
                return Ok(removed);
            }
        }
    }

    /// Removes every entry and its blob; how many.
    pub fn clear(&self) -> Result<u64> {
        self.check_writable("clear")?;
        self.lock_pending().touches.clear();
        let removed = self.backend.clear()?;
        for entry in &removed {
            self.delete_blob(entry);
        }
        self.approx_total_size.store(0, Ordering::Relaxed);
        Ok(removed.len() as u64)
    }

    /// Writes buffered reads to the backend and flushes it (nothing, on a
    /// read-only cache).
    pub fn flush(&self) -> Result<()> {
        if self.settings.read_only {
            return Ok(());
        }
        self.flush_access()?;
        self.backend.flush()
    }

    /// The file holding an entry's bytes, when it has one.
    pub fn blob_path(&self, entry: &Entry) -> Option<PathBuf> {
        let name = entry.blob_name()?;
        self.blobs.as_ref()?.local_path(name)
    }

    /// The metadata backend.
    pub fn backend(&self) -> &dyn MetadataBackend {
        self.backend.as_ref()
    }

    /// The signer, when entries are signed.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    /// The blob store, when the cache has one.
    pub fn blob_store(&self) -> Option<&dyn BlobStore> {
        self.blobs.as_deref()
    }

    /// The cache directory, when the cache has one.
    pub fn dir(&self) -> Option<&Path> {
        self.settings.dir.as_deref()
    }

    /// Whether the cache was opened read-only ([`CacheBuilder::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.settings.read_only
    }

    /// [`Error::ReadOnly`] naming `operation` if the cache is read-only: every
    /// operation that writes checks this first.
    pub(crate) fn check_writable(&self, operation: &'static str) -> Result<()> {
        if self.settings.read_only {
            Err(Error::ReadOnly { operation })
        } else {
            Ok(())
        }
    }

    /// The current time of the cache's clock, in ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn store(
        &self,
        key: CacheKey,
        params: Option<&Params>,
        raw: &[u8],
        codec: &str,
        type_tag: &str,
        options: &PutOptions,
    ) -> Result<()> {
        self.check_writable("put")?;
        validate_prefix(&options.prefix)?;
        check_entry_limits(key, params, options)?;
        let now = self.clock.now_ms();
        let compressed = compress(raw);
        let (compression, stored) = match &compressed {
            Some(compressed) => (Compression::Lz4, compressed.as_slice()),
            None => (Compression::None, raw),
        };
        let stored_size = stored.len() as u64;
        if let Some(limit) = self.settings.max_size
            && stored_size > limit
        {
            return Err(Error::TooLarge {
                key,
                size: stored_size,
                limit,
            });
        }
        let expires_at = match options.expiry {
            Expiry::Default => self
                .settings
                .default_ttl
                .map(|ttl| now.saturating_add(duration_ms(ttl))),
            Expiry::Never => None,
            Expiry::After(ttl) => Some(now.saturating_add(duration_ms(ttl))),
        };
        let mut entry = Entry {
            key,
            prefix: options.prefix.clone(),
            description: options.description.clone(),
            type_tag: type_tag.to_owned(),
            codec: codec.to_owned(),
            params: params.cloned(),
            created_at: now,
            accessed_at: now,
            expires_at,
            access_count: 0,
            stored_size,
            raw_size: raw.len() as u64,
            compression,
            // Set below, with the blob or the inline bytes.
            content_hash: ContentHash([0; 32]),
            location: Location::Inline(Vec::new()),
            signature: None,
            user_metadata: options.user_metadata.clone(),
        };
        let inline = self
            .settings
            .inline_limit
            .is_some_and(|limit| stored.len() <= limit);
        // The signature covers the content hash and the location's kind, not the
        // blob's name, so it goes into the blob's header before the name exists.
        let signer = self.signer.as_ref();
        let seal = |entry: &mut Entry, hash: &ContentHash| {
            entry.content_hash = *hash;
            if let Some(signer) = signer {
                entry.signature = Some(signer.sign(entry));
            }
        };
        let written_blob = match (&self.blobs, inline) {
            (_, true) => {
                seal(&mut entry, &ContentHash::of(stored));
                entry.location = Location::Inline(stored.to_vec());
                None
            }
            (Some(blobs), false) => {
                entry.location = Location::Blob(String::new());
                let (name, hash) = blobs.write_hashed(&key, stored, &mut |hash| {
                    seal(&mut entry, hash);
                    BlobHeader::from_entry(&entry).encode()
                })?;
                if entry.content_hash != hash {
                    // The contract has the last `header` call made with the real
                    // hash; should a store break it, the entry still carries it.
                    seal(&mut entry, &hash);
                }
                entry.location = Location::Blob(name.clone());
                Some(name)
            }
            (None, false) => {
                unreachable!("open() guarantees a blob store or an unbounded inline limit")
            }
        };
        let replaced = match self.backend.put(entry) {
            Ok(replaced) => replaced,
            Err(error) => {
                if let (Some(blobs), Some(name)) = (&self.blobs, &written_blob) {
                    let _ = blobs.remove(name);
                }
                return Err(error);
            }
        };
        let replaced_size = replaced.as_ref().map_or(0, |old| old.stored_size);
        // A rebuild running beside this put may have found our blob before we
        // committed and made an entry of it: that "replaced" entry is our own
        // value, and its blob is the one we just wrote.
        if let Some(old) = replaced
            .as_ref()
            .filter(|old| old.blob_name() != written_blob.as_deref())
        {
            self.delete_blob(old);
        }
        self.enforce_size_limit(key, stored_size, replaced_size)
    }

    /// Evicts down to the low watermark if the cache is over its size limit now;
    /// how many entries went.
    pub(crate) fn enforce_limit_now(&self) -> Result<u64> {
        self.check_writable("evict")?;
        let Some(limit) = self.settings.max_size else {
            return Ok(0);
        };
        let total = self.backend.total_size()?;
        self.approx_total_size.store(total, Ordering::Relaxed);
        if total <= limit {
            return Ok(0);
        }
        let before = self.session.evictions.load(Ordering::Relaxed);
        self.evict_to_low_watermark(total, limit, None)?;
        Ok(self.session.evictions.load(Ordering::Relaxed) - before)
    }

    fn enforce_size_limit(&self, just_put: CacheKey, added: u64, removed: u64) -> Result<()> {
        let Some(limit) = self.settings.max_size else {
            return Ok(());
        };
        let estimate = self
            .approx_total_size
            .fetch_add(added, Ordering::Relaxed)
            .saturating_add(added)
            .saturating_sub(removed);
        self.approx_total_size.store(estimate, Ordering::Relaxed);
        let puts = self.puts_since_resync.fetch_add(1, Ordering::Relaxed) + 1;
        if estimate <= limit && !puts.is_multiple_of(SIZE_RESYNC_PUTS) {
            return Ok(());
        }
        let total = self.backend.total_size()?;
        self.approx_total_size.store(total, Ordering::Relaxed);
        if total > limit {
            self.evict_to_low_watermark(total, limit, Some(just_put))?;
        }
        Ok(())
    }

    /// Evicts least recently accessed entries until the stored total is at most
    /// the low watermark, sparing the entry just put.
    fn evict_to_low_watermark(
        &self,
        mut total: u64,
        limit: u64,
        spare: Option<CacheKey>,
    ) -> Result<()> {
        // Reads not yet written would make recently used entries look cold.
        self.flush_access()?;
        let target = (limit as f64 * self.settings.low_watermark) as u64;
        let mut evicted = 0u64;
        'batches: while total > target {
            let candidates = self.backend.eviction_candidates(REMOVAL_BATCH)?;
            let mut removed_in_batch = 0;
            for candidate in candidates.iter().filter(|entry| Some(entry.key) != spare) {
                if total <= target {
                    break 'batches;
                }
                if let Some(gone) = self.backend.remove_if_unchanged(candidate)? {
                    self.delete_blob(&gone);
                    total = total.saturating_sub(gone.stored_size);
                    removed_in_batch += 1;
                    evicted += 1;
                }
            }
            if removed_in_batch == 0 {
                break;
            }
        }
        self.approx_total_size.store(total, Ordering::Relaxed);
        if evicted > 0 {
            self.session.evictions.fetch_add(evicted, Ordering::Relaxed);
            self.lock_pending().counters.evictions += evicted;
            tracing::debug!(
                evicted,
                total,
                limit,
                "evicted entries to the low watermark"
            );
        }
        Ok(())
    }

    fn load_decoded<T: DeserializeOwned>(
        &self,
        key: CacheKey,
        options: &GetOptions,
        keep_entry: bool,
    ) -> Result<Option<(T, Arc<SharedEntry>)>> {
        let Some((loaded, entry)) = self.load(key, options, keep_entry)? else {
            return Ok(None);
        };
        if entry.codec != self.codec.name() {
            return Err(Error::CodecMismatch {
                key,
                stored: entry.codec.clone(),
                requested: self.codec.name().to_owned(),
            });
        }
        let decoded = match loaded {
            Loaded::Owned(mut bytes) => self.codec.decode(&mut bytes),
            Loaded::Inline => self.codec.decode_slice(loaded.bytes(&entry)),
        };
        let value = decoded.map_err(|source| Error::Decode {
            key,
            type_name: type_name::<T>(),
            codec: entry.codec.clone(),
            source,
        })?;
        Ok(Some((value, entry)))
    }

    /// The decompressed stored bytes and the entry, recording the hit or miss.
    ///
    /// Without `keep_inline`, inline bytes are moved out of the returned entry
    /// instead of copied when the backend kept no share of it: a plain get has no
    /// use for them.
    fn load(
        &self,
        key: CacheKey,
        options: &GetOptions,
        keep_inline: bool,
    ) -> Result<Option<(Loaded, Arc<SharedEntry>)>> {
        let now = self.clock.now_ms();
        // A blob can vanish because another writer replaced the entry between our
        // metadata read and our file read: look again once before calling it damage.
        for attempt in 0..2 {
            let Some(mut entry) = self.backend.get_shared(&key)? else {
                self.record_miss(now);
                return Ok(None);
            };
            // Checked first, and never a reason to delete: an entry signed with
            // another key (or not yet signed) is a miss that stays, so a handle
            // with the wrong key cannot empty the cache. `verify` reports it.
            if let Some(signer) = &self.signer
                && !signer.verify(&entry)
            {
                self.mismatches.warn(&entry);
                self.record_miss(now);
                return Ok(None);
            }
            if entry.is_expired(now) {
                if !self.settings.read_only
                    && let Some(gone) = self.backend.remove_if_unchanged(&entry)?
                {
                    self.delete_blob(&gone);
                }
                self.record_miss(now);
                return Ok(None);
            }
            if options
                .max_age
                .is_some_and(|max_age| now.saturating_sub(entry.created_at) > duration_ms(max_age))
            {
                self.record_miss(now);
                return Ok(None);
            }
            let checked = entry.is_checked();
            match self.read_stored(&mut entry, keep_inline, checked)? {
                Ok(bytes) => {
                    if !checked && self.settings.verify_integrity {
                        // Its parameters and any inline bytes were hashed above.
                        entry.mark_checked();
                    }
                    self.record_hit(key, now, entry.accessed_at);
                    return Ok(Some((bytes, entry)));
                }
                Err(Damage::Missing) if attempt == 0 => continue,
                Err(damage) => {
                    let reason = match damage {
                        Damage::Missing => "blob file is missing".to_owned(),
                        Damage::Invalid(reason) => reason,
                    };
                    let path = self.blob_path(&entry);
                    if self.settings.read_only {
                        tracing::warn!(
                            key = %key,
                            path = ?path,
                            reason = %reason,
                            "corrupted cache entry read as a miss (read-only: kept)"
                        );
                        self.record_miss(now);
                        return Ok(None);
                    }
                    tracing::warn!(
                        key = %key,
                        path = ?path,
                        reason = %reason,
                        "removing corrupted cache entry"
                    );
                    if let Some(gone) = self.backend.remove_if_unchanged(&entry)? {
                        self.delete_blob(&gone);
                    }
                    self.record_miss(now);
                    return Ok(None);
                }
            }
        }
        self.record_miss(now);
        Ok(None)
    }

    /// Reads and checks an entry's stored bytes and decompresses them. An entry
    /// already `checked` (a shared entry that passed before) is not hashed
    /// again, except for bytes read from a blob file.
    fn read_stored(
        &self,
        entry: &mut Arc<SharedEntry>,
        keep_inline: bool,
        checked: bool,
    ) -> Result<Result<Loaded, Damage>> {
        // The parameters an entry was made from hash to its key: an entry whose key
        // was damaged on disk must not serve the bytes stored for another key (an
        // inline value has no blob name to betray it).
        if !checked
            && self.settings.verify_integrity
            && entry
                .params
                .as_ref()
                .is_some_and(|params| params.key() != entry.key)
        {
            return Ok(Err(Damage::Invalid(
                "the entry's parameters do not hash to its key".into(),
            )));
        }
        let loaded = match &entry.location {
            Location::Inline(_) => match take_inline_bytes(entry, keep_inline) {
                Some(bytes) => Loaded::Owned(bytes),
                None => Loaded::Inline,
            },
            Location::Blob(name) => {
                let Some(blobs) = &self.blobs else {
                    return Ok(Err(Damage::Invalid(
                        "entry has a blob but the cache has no blob store".into(),
                    )));
                };
                // A name that is not one the store could have made is damage in the
                // metadata, not an I/O error.
                if crate::blob::validate_blob_name(name).is_err() {
                    return Ok(Err(Damage::Invalid(format!(
                        "invalid blob name `{}`",
                        name.escape_debug()
                    ))));
                }
                // The name carries the key: an entry whose key was damaged on disk
                // must not serve the bytes of the key the blob belongs to.
                if name.get(3..35) != Some(entry.key.to_hex().as_str()) {
                    return Ok(Err(Damage::Invalid(format!(
                        "blob `{name}` belongs to another key"
                    ))));
                }
                // Never more than the entry's bytes and a header: a huge or
                // sparse file planted at the name is a size mismatch, not an
                // allocation of its length.
                let limit = crate::blob::MAX_HEADER_BYTES
                    .saturating_add(entry.stored_size)
                    .saturating_add(1);
                let Some(mut file) = blobs.read_limited(name, limit)? else {
                    return Ok(Err(Damage::Missing));
                };
                match payload_offset(&file) {
                    Ok(offset) => {
                        file.drain(..offset);
                        Loaded::Owned(file)
                    }
                    Err(reason) => return Ok(Err(Damage::Invalid(reason))),
                }
            }
        };
        let stored = loaded.bytes(entry);
        if stored.len() as u64 != entry.stored_size {
            return Ok(Err(Damage::Invalid(format!(
                "{} stored bytes, expected {}",
                stored.len(),
                entry.stored_size
            ))));
        }
        let verify = (self.settings.verify_integrity || self.signer.is_some())
            && !(checked && matches!(entry.location, Location::Inline(_)));
        if verify && ContentHash::of(stored) != entry.content_hash {
            return Ok(Err(Damage::Invalid("content hash mismatch".into())));
        }
        if entry.compression == Compression::Lz4 {
            return Ok(decompress(stored, entry.raw_size)
                .map(Loaded::Owned)
                .map_err(Damage::Invalid));
        }
        if entry.raw_size != entry.stored_size {
            return Ok(Err(Damage::Invalid(
                "raw size differs from stored size without compression".into(),
            )));
        }
        Ok(Ok(loaded))
    }

    fn delete_blob(&self, entry: &Entry) {
        let (Some(blobs), Some(name)) = (&self.blobs, entry.blob_name()) else {
            return;
        };
        if let Err(error) = blobs.remove(name) {
            tracing::warn!(key = %entry.key, %error, "could not delete blob");
        }
    }

    fn scan_keys(&self, filter: ScanFilter) -> Result<Vec<CacheKey>> {
        let mut keys = Vec::new();
        self.backend.scan(&filter, &mut |entry| {
            keys.push(entry.key);
            ControlFlow::Continue(())
        })?;
        Ok(keys)
    }

    fn lock_pending(&self) -> MutexGuard<'_, PendingAccess> {
        // The pending batch holds plain counters; a panic elsewhere cannot leave it
        // inconsistent, so a poisoned lock is still usable.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record_hit(&self, key: CacheKey, now: u64, recorded_access: u64) {
        self.session.hits.fetch_add(1, Ordering::Relaxed);
        let record_access = !self.settings.read_only
            && now >= recorded_access.saturating_add(self.settings.access_granularity_ms);
        let due = {
            let mut pending = self.lock_pending();
            if record_access {
                let touch = pending.touches.entry(key).or_insert((now, 0));
                touch.0 = touch.0.max(now);
                touch.1 += 1;
            }
            pending.counters.hits += 1;
            !self.settings.read_only
                && (pending.touches.len() >= FLUSH_MAX_TOUCHES
                    || now.saturating_sub(pending.last_flush_ms) >= FLUSH_INTERVAL_MS)
        };
        if due {
            self.flush_access_logged();
        }
    }

    fn record_miss(&self, now: u64) {
        self.session.misses.fetch_add(1, Ordering::Relaxed);
        let due = {
            let mut pending = self.lock_pending();
            pending.counters.misses += 1;
            !self.settings.read_only
                && now.saturating_sub(pending.last_flush_ms) >= FLUSH_INTERVAL_MS
        };
        if due {
            self.flush_access_logged();
        }
    }

    fn flush_access_logged(&self) {
        if let Err(error) = self.flush_access() {
            tracing::warn!(%error, "could not record cache reads");
        }
    }

    fn flush_access(&self) -> Result<()> {
        if self.settings.read_only {
            // Reads of a read-only cache are counted in this process only.
            return Ok(());
        }
        let batch = {
            let mut pending = self.lock_pending();
            pending.last_flush_ms = self.clock.now_ms();
            AccessBatch {
                touches: pending
                    .touches
                    .drain()
                    .map(|(key, (accessed_at, count))| Touch {
                        key,
                        accessed_at,
                        count,
                    })
                    .collect(),
                counters: std::mem::take(&mut pending.counters),
            }
        };
        if batch.is_empty() {
            return Ok(());
        }
        self.backend.touch(&batch)
    }
}

impl<C: Codec> Drop for Cache<C> {
    fn drop(&mut self) {
        if let Err(error) = self.flush() {
            tracing::warn!(%error, "could not flush the cache on drop");
        }
    }
}

/// Checks a prefix is a plain label: no path separators, `..` or NUL.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let reason = if prefix.len() > 255 {
        Some("longer than 255 bytes")
    } else if prefix.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if prefix.contains("..") {
        Some("contains `..`")
    } else if prefix.contains('\0') {
        Some("contains a NUL byte")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidInput {
            what: "prefix",
            value: prefix.escape_debug().to_string(),
            reason: reason.into(),
        }),
        None => Ok(()),
    }
}

/// Checks what a put would store against the limits that keep it readable
/// everywhere: the parameters (see [`Params::check_limits`]), the description
/// and the user metadata.
fn check_entry_limits(key: CacheKey, params: Option<&Params>, options: &PutOptions) -> Result<()> {
    if let Some(params) = params {
        params.check_limits()?;
    }
    let over = |what, actual: usize, limit: usize| Error::LimitExceeded {
        key,
        what,
        actual: actual as u64,
        limit: limit as u64,
    };
    if options.description.len() > MAX_DESCRIPTION_LEN {
        return Err(over(
            "length of the description (bytes)",
            options.description.len(),
            MAX_DESCRIPTION_LEN,
        ));
    }
    if options.user_metadata.is_empty() {
        return Ok(());
    }
    if let Some(depth) = options
        .user_metadata
        .values()
        .map(json_depth)
        .max()
        .filter(|depth| *depth > MAX_NESTING)
    {
        return Err(over(
            "nesting depth of the user metadata (levels)",
            depth,
            MAX_NESTING,
        ));
    }
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, &options.user_metadata).map_err(|error| {
        Error::InvalidInput {
            what: "user metadata",
            value: key.to_string(),
            reason: error.to_string(),
        }
    })?;
    if counter.0 > MAX_USER_METADATA_LEN {
        return Err(over(
            "size of the user metadata as JSON (bytes)",
            counter.0,
            MAX_USER_METADATA_LEN,
        ));
    }
    Ok(())
}

/// How deeply arrays and objects nest in `value` (0 for a scalar), measured
/// without recursion so any depth is safe to measure.
fn json_depth(value: &serde_json::Value) -> usize {
    use serde_json::Value as Json;
    // Each value with the number of arrays and objects around it.
    let mut deepest = 0;
    let mut pending = vec![(value, 0usize)];
    while let Some((value, around)) = pending.pop() {
        match value {
            Json::Array(items) => {
                deepest = deepest.max(around + 1);
                pending.extend(items.iter().map(|item| (item, around + 1)));
            }
            Json::Object(fields) => {
                deepest = deepest.max(around + 1);
                pending.extend(fields.values().map(|item| (item, around + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Counts the bytes written to it, to size JSON without building it.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A read's stored bytes, checked and decompressed: the read's own, or the
/// shared entry's inline bytes as they are (read in place, not copied).
enum Loaded {
    Owned(Vec<u8>),
    Inline,
}

impl Loaded {
    fn bytes<'a>(&'a self, entry: &'a Entry) -> &'a [u8] {
        match (self, &entry.location) {
            (Loaded::Owned(bytes), _) => bytes,
            (Loaded::Inline, Location::Inline(bytes)) => bytes,
            (Loaded::Inline, Location::Blob(_)) => &[],
        }
    }

    fn into_vec(self, entry: &Entry) -> Vec<u8> {
        match self {
            Loaded::Owned(bytes) => bytes,
            Loaded::Inline => self.bytes(entry).to_vec(),
        }
    }
}

/// The inline bytes of `entry`, moved out when the caller does not keep them and
/// nobody else shares the entry; `None` otherwise (they are read in place).
fn take_inline_bytes(entry: &mut Arc<SharedEntry>, keep: bool) -> Option<Vec<u8>> {
    if keep {
        return None;
    }
    match SharedEntry::get_mut(entry)? {
        Entry {
            location: Location::Inline(bytes),
            ..
        } => Some(std::mem::take(bytes)),
        _ => None,
    }
}

/// lz4 compression when it saves at least 10 %; large values are sampled first so
/// incompressible data does not pay for a full pass.
fn compress(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() < COMPRESS_MIN_LEN || raw.len() > u32::MAX as usize {
        return None;
    }
    let saves_enough = |compressed: usize, original: usize| compressed * 10 <= original * 9;
    if raw.len() > 2 * COMPRESS_SAMPLE_LEN {
        let sample = &raw[..COMPRESS_SAMPLE_LEN];
        if !saves_enough(lz4_flex::compress(sample).len(), sample.len()) {
            return None;
        }
    }
    let compressed = lz4_flex::compress_prepend_size(raw);
    saves_enough(compressed.len(), raw.len()).then_some(compressed)
}

/// Decompresses stored lz4 bytes whose raw size the entry records; the size the
/// data claims is checked first so damaged bytes cannot ask for a huge buffer.
pub(crate) fn decompress(stored: &[u8], raw_size: u64) -> Result<Vec<u8>, String> {
    let Some(prefix) = stored.get(..4) else {
        return Err("compressed data is shorter than its size prefix".into());
    };
    let claimed = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as u64;
    if claimed != raw_size {
        return Err(format!(
            "compressed data claims {claimed} bytes, the entry {raw_size}"
        ));
    }
    lz4_flex::decompress_size_prepended(stored).map_err(|error| format!("lz4: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_used_only_when_it_pays() {
        assert!(compress(b"short").is_none());
        assert!(
            compress(&[b'a'; COMPRESS_MIN_LEN - 1]).is_none(),
            "small values are not worth it"
        );
        let text = "the same line again\n".repeat(100);
        let compressed = compress(text.as_bytes()).unwrap();
        assert_eq!(
            decompress(&compressed, text.len() as u64).unwrap(),
            text.as_bytes()
        );
        let noise: Vec<u8> = (0..200_000u32 / 32)
            .flat_map(|block| *blake3::hash(&block.to_le_bytes()).as_bytes())
            .collect();
        assert!(compress(&noise).is_none());
    }

    #[test]
    fn decompression_checks_the_claimed_size() {
        let compressed = compress(&[7u8; 1000]).unwrap();
        assert!(decompress(&compressed, 999).is_err());
        assert!(decompress(&compressed[..2], 1000).is_err());
        let mut truncated = compressed.clone();
        truncated.truncate(compressed.len() - 1);
        assert!(decompress(&truncated, 1000).is_err());
    }

    #[test]
    fn prefixes_that_could_be_paths_are_rejected() {
        for bad in ["a/b", "..", "a..b", "a\\b", "a\0b", &"x".repeat(256)] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
        for good in ["", "models", "v1.2", "with space"] {
            assert!(validate_prefix(good).is_ok(), "{good:?}");
        }
    }
}
