//! Configuring and opening a [`Cache`]: [`CacheBuilder`] and the cache dir checks.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::access::PendingAccess;
use super::options::{DEFAULT_ACCESS_GRANULARITY, DEFAULT_INLINE_THRESHOLD, DEFAULT_LOW_WATERMARK};
#[cfg(doc)]
use super::options::{MAX_DESCRIPTION_LEN, MAX_USER_METADATA_LEN};
use super::{Cache, Held, SessionCounters, Settings, SingleFlight};
use crate::backend::MetadataBackend;
use crate::blob::{BlobStore, Durability, LocalBlobStore};
use crate::clock::{Clock, SystemClock, duration_ms};
use crate::codec::{Codec, NamedCodec};
use crate::entry::ContentHash;
use crate::error::{Error, Result};
use crate::eviction::EvictionPolicy;
use crate::files::create_private_dir;
use crate::key::CacheKey;
use crate::signing::{MismatchLog, Signer, check_dir_key, refuse_unsigned_writer};

/// Configures and opens a [`Cache`]; see [`Cache::builder`].
#[derive(Debug)]
pub struct CacheBuilder<C: Codec = NamedCodec> {
    dir: Option<PathBuf>,
    default_ttl: Option<Duration>,
    max_size: Option<u64>,
    low_watermark: f64,
    eviction: EvictionPolicy,
    verify_integrity: bool,
    inline_threshold: usize,
    access_granularity: Duration,
    durability: Durability,
    clock: Arc<dyn Clock>,
    codec: C,
    blob_store: Option<Arc<dyn BlobStore>>,
    signing: Signing,
    read_only: bool,
    single_flight: SingleFlight,
    held: Held,
}

/// Where a cache's signing key comes from.
#[derive(Debug, Clone)]
enum Signing {
    Off,
    KeyFile,
    Key(Signer),
}

impl Default for CacheBuilder<NamedCodec> {
    fn default() -> Self {
        CacheBuilder {
            dir: None,
            default_ttl: None,
            max_size: None,
            low_watermark: DEFAULT_LOW_WATERMARK,
            eviction: EvictionPolicy::default(),
            verify_integrity: true,
            inline_threshold: DEFAULT_INLINE_THRESHOLD,
            access_granularity: DEFAULT_ACCESS_GRANULARITY,
            durability: Durability::default(),
            clock: Arc::new(SystemClock),
            codec: NamedCodec::default(),
            blob_store: None,
            signing: Signing::Off,
            read_only: false,
            single_flight: SingleFlight::default(),
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

    /// The most stored bytes the cache holds before it evicts entries, expired
    /// ones first, then in the order of the [`eviction`](Self::eviction) policy
    /// (default: no limit).
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

    /// Which entries the size limit evicts first, once the expired ones are gone
    /// (default [`EvictionPolicy::Lru`]):
    ///
    /// - [`Lru`](EvictionPolicy::Lru), least recently used: the entry read
    ///   longest ago (an entry never read counts from its put);
    /// - [`Lrs`](EvictionPolicy::Lrs), least recently stored: the entry put
    ///   longest ago, however often it was read;
    /// - [`Lfu`](EvictionPolicy::Lfu), least frequently used: the entry read the
    ///   fewest times, ties by least recently used.
    ///
    /// Reads are written to the backend at most once per
    /// [`access_granularity`](Self::access_granularity) per key; the reads this
    /// cache held back in between are written just before it evicts, so its
    /// evictions order by every read it served. Reads served by other processes
    /// count at the granularity: an entry another process read within it looks
    /// as recent as that process's last recorded read.
    ///
    /// ```
    /// use cacheness_core::{Cache, EvictionPolicy};
    /// use cacheness_memory::MemoryBackend;
    ///
    /// let cache = Cache::builder()
    ///     .max_size(1 << 20)
    ///     .eviction("lfu".parse::<EvictionPolicy>()?)
    ///     .open(MemoryBackend::new())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn eviction(mut self, policy: EvictionPolicy) -> Self {
        self.eviction = policy;
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
    /// `access_count`, until the size limit is about to evict: then they are
    /// written first (see [`eviction`](Self::eviction)). Zero records every read.
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

    /// Whether [`get_or_insert_with`](Cache::get_or_insert_with) computes a
    /// missing key once per process (the default) or once across the
    /// processes that share the cache dir; see [`SingleFlight`].
    pub fn single_flight(mut self, single_flight: SingleFlight) -> Self {
        self.single_flight = single_flight;
        self
    }

    /// The codec values are stored with (default [`NamedCodec::default`]).
    pub fn codec<D: Codec>(self, codec: D) -> CacheBuilder<D> {
        CacheBuilder {
            dir: self.dir,
            default_ttl: self.default_ttl,
            max_size: self.max_size,
            low_watermark: self.low_watermark,
            eviction: self.eviction,
            verify_integrity: self.verify_integrity,
            inline_threshold: self.inline_threshold,
            access_granularity: self.access_granularity,
            durability: self.durability,
            clock: self.clock,
            codec,
            blob_store: self.blob_store,
            signing: self.signing,
            read_only: self.read_only,
            single_flight: self.single_flight,
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
                eviction: self.eviction,
                verify_integrity: self.verify_integrity,
                access_granularity_ms: duration_ms(self.access_granularity),
                inline_limit,
                read_only,
                single_flight: self.single_flight,
            },
            in_flight: Default::default(),
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

impl Cache<NamedCodec> {
    /// A builder with the defaults: no dir, no TTL, no size limit, integrity checks
    /// on, 4 KiB inline threshold, the default [`NamedCodec`], system clock.
    pub fn builder() -> CacheBuilder<NamedCodec> {
        CacheBuilder::default()
    }
}
