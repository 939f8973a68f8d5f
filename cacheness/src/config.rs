//! Configuration: which backend, where, and the cache's limits, from code, a
//! config file (serde) or the environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::registry::{BACKENDS, backend_info};
use crate::settings::{CacheSettings, create_settings, read_settings};

use cacheness_core::ops::{MigrateReport, Progress};
use cacheness_core::{
    Cache, Clock, Durability, Error, EvictionPolicy, MetadataBackend, NamedCodec, Result,
    SingleFlight, SystemClock,
};

/// How to open a cache. Defaults: the platform's cache dir
/// (`~/.cache/cacheness` on Linux), backend `sqlite`, integrity checks on,
/// values up to 4 KiB inline, [`Durability::Flush`]; the size limit, default
/// TTL, eviction policy and codec of the dir's stored settings (for a new
/// dir: no limit, no TTL, `lru`, [`NamedCodec::default`]).
///
/// The settings that define a cache (size limit, default TTL, eviction, codec,
/// signing) are stored in its dir when it is created (`settings.json`, see
/// [`CacheSettings`](crate::ops::CacheSettings)). A setting left unset here
/// (`None`) is the stored one; a set one that differs is used by this handle
/// with a `warn!` naming both. (A cache reads the entries of every built-in
/// codec, whichever it writes with: a codec change never makes entries
/// unreadable.)
///
/// It deserializes from a config file (unknown fields are errors); durations
/// are written as seconds or with a unit (`"90s"`, `"15m"`, `"24h"`, `"7d"`):
///
/// ```
/// use cacheness::CacheConfig;
///
/// let config: CacheConfig = serde_json::from_str(
///     r#"{ "dir": "/var/cache/myapp", "backend": "memory", "max_size": 1000000, "default_ttl": "24h" }"#,
/// )?;
/// assert_eq!(config.default_ttl, Some(std::time::Duration::from_secs(24 * 3600)));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The cache directory: blob files, and the metadata of disk backends.
    /// `None`: the platform's cache dir (`$XDG_CACHE_HOME/cacheness`, else
    /// `~/.cache/cacheness` on Linux) for disk backends; no dir at all for
    /// `memory` and `sqlite-memory`.
    pub dir: Option<PathBuf>,
    /// The metadata backend's name; see [`BACKENDS`] (default `sqlite`, or
    /// the first disk backend compiled in).
    pub backend: String,
    /// The most stored bytes before entries are evicted; `None`: the dir's
    /// stored limit (none for a new dir).
    pub max_size: Option<u64>,
    /// The TTL of entries put without their own; `None`: the dir's stored one.
    #[serde(deserialize_with = "duration_text::deserialize")]
    pub default_ttl: Option<Duration>,
    /// Which entries the size limit evicts first once the expired ones are
    /// gone: `"lru"` (least recently read, the default), `"lrs"` (least
    /// recently stored) or `"lfu"` (least frequently read); `None`: the
    /// dir's stored policy.
    pub eviction: Option<EvictionPolicy>,
    /// The codec values are stored with, by name (see [`NamedCodec::ALL`]);
    /// `None`: the dir's stored codec, or for a new dir
    /// [`NamedCodec::default`]. Entries of every built-in codec are read
    /// whatever this is.
    pub codec: Option<NamedCodec>,
    /// Whether reads check stored bytes against their blake3 hash.
    pub verify_integrity: bool,
    /// Stored values up to this many bytes live inline in the metadata.
    pub inline_threshold: usize,
    /// How hard writes try to reach the disk. [`Durability::Sync`] also syncs the
    /// metadata: it turns on the json backend's journal fsync and raises the
    /// sqlite backend's `synchronous` to at least `FULL`.
    pub durability: Durability,
    /// Reads closer together than this record the access once (see
    /// [`CacheBuilder::access_granularity`](cacheness_core::CacheBuilder::access_granularity)).
    #[serde(deserialize_with = "duration_text::deserialize_required")]
    pub access_granularity: Duration,
    /// Sign entries with a keyed blake3 MAC (key in `signing.key` in the dir), so
    /// metadata edited by hand is rejected instead of served.
    pub sign_entries: bool,
    /// Whether `get_or_insert_with` computes a missing key once per process
    /// (`"in_process"`, the default) or once across the processes sharing
    /// the dir (`"across_processes"`, with a lock file per key).
    pub single_flight: SingleFlight,
    /// Open an existing cache for reading only: nothing in the dir is created,
    /// migrated, written or deleted (reads record no access and a damaged entry
    /// reads as a miss). The configured backend must be the dir's current one.
    pub read_only: bool,
    /// When the dir belongs to the other disk backend (its metadata, or the
    /// markers of a switch, say so), a writable open copies its entries into the
    /// configured backend and makes that one current. With `false`, such an open
    /// is an error naming the dir's backend: for tools that must never switch a
    /// cache just by opening it (the CLI).
    pub switch_backend_on_open: bool,
    /// A memory layer for hot keys in front of the backend; `None` for none. A
    /// backend named `memlayer+NAME` adds one with the defaults (1 000 entries,
    /// 300 s).
    #[cfg(feature = "memlayer")]
    pub memory_layer: Option<cacheness_memlayer::MemLayerConfig>,
    /// Options of the `json` backend.
    #[cfg(feature = "json")]
    pub json: cacheness_json::JsonOptions,
    /// Options of the `sqlite` and `sqlite-memory` backends (pragmas).
    #[cfg(feature = "sqlite")]
    pub sqlite: cacheness_sqlite::SqliteOptions,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            dir: None,
            backend: DEFAULT_BACKEND.into(),
            max_size: None,
            default_ttl: None,
            eviction: None,
            codec: None,
            verify_integrity: true,
            inline_threshold: cacheness_core::cache::DEFAULT_INLINE_THRESHOLD,
            durability: Durability::Flush,
            access_granularity: cacheness_core::cache::DEFAULT_ACCESS_GRANULARITY,
            sign_entries: false,
            single_flight: SingleFlight::default(),
            read_only: false,
            switch_backend_on_open: true,
            #[cfg(feature = "memlayer")]
            memory_layer: None,
            #[cfg(feature = "json")]
            json: cacheness_json::JsonOptions::default(),
            #[cfg(feature = "sqlite")]
            sqlite: cacheness_sqlite::SqliteOptions::default(),
        }
    }
}

impl CacheConfig {
    /// The defaults; change them with the setters below, which are named
    /// after the fields they set:
    ///
    /// ```
    /// use std::time::Duration;
    /// use cacheness::{CacheConfig, EvictionPolicy};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let cache = CacheConfig::new()
    ///     .dir(dir.path())
    ///     .backend("memory")
    ///     .max_size(64 << 20)
    ///     .default_ttl(Duration::from_secs(3600))
    ///     .eviction(EvictionPolicy::Lfu)
    ///     .open()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        CacheConfig::default()
    }

    /// The cache directory (created with mode 0700 if missing).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The metadata backend, by name; see [`BACKENDS`].
    pub fn backend(mut self, name: impl Into<String>) -> Self {
        self.backend = name.into();
        self
    }

    /// The size limit in stored bytes; `None` for none.
    pub fn max_size(mut self, bytes: impl Into<Option<u64>>) -> Self {
        self.max_size = bytes.into();
        self
    }

    /// The TTL of entries put without their own; `None` for none.
    pub fn default_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.default_ttl = ttl.into();
        self
    }

    /// Which entries the size limit evicts first; `None` for the dir's.
    pub fn eviction(mut self, policy: impl Into<Option<EvictionPolicy>>) -> Self {
        self.eviction = policy.into();
        self
    }

    /// The codec values are stored with.
    pub fn codec(mut self, codec: impl Into<Option<NamedCodec>>) -> Self {
        self.codec = codec.into();
        self
    }

    /// Whether reads verify content hashes.
    pub fn verify_integrity(mut self, verify: bool) -> Self {
        self.verify_integrity = verify;
        self
    }

    /// Stored values up to this size live inline in the metadata.
    pub fn inline_threshold(mut self, bytes: usize) -> Self {
        self.inline_threshold = bytes;
        self
    }

    /// How hard writes try to reach the disk.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Reads closer together than this record the access once.
    pub fn access_granularity(mut self, granularity: Duration) -> Self {
        self.access_granularity = granularity;
        self
    }

    /// Sign entries; see [`CacheConfig::sign_entries`](#structfield.sign_entries).
    pub fn sign_entries(mut self, sign: bool) -> Self {
        self.sign_entries = sign;
        self
    }

    /// Who waits for whom when `get_or_insert_with` computes a missing key;
    /// see [`SingleFlight`].
    pub fn single_flight(mut self, single_flight: SingleFlight) -> Self {
        self.single_flight = single_flight;
        self
    }

    /// Open an existing cache for reading only; see
    /// [`CacheConfig::read_only`](#structfield.read_only).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Whether a writable open switches a dir that belongs to the other disk
    /// backend; see [`CacheConfig::switch_backend_on_open`](#structfield.switch_backend_on_open).
    pub fn switch_backend_on_open(mut self, switch: bool) -> Self {
        self.switch_backend_on_open = switch;
        self
    }

    /// A memory layer for hot keys in front of the backend.
    #[cfg(feature = "memlayer")]
    pub fn memory_layer(
        mut self,
        layer: impl Into<Option<cacheness_memlayer::MemLayerConfig>>,
    ) -> Self {
        self.memory_layer = layer.into();
        self
    }

    /// Options of the `json` backend.
    #[cfg(feature = "json")]
    pub fn json(mut self, options: cacheness_json::JsonOptions) -> Self {
        self.json = options;
        self
    }

    /// Options of the `sqlite` and `sqlite-memory` backends.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(mut self, options: cacheness_sqlite::SqliteOptions) -> Self {
        self.sqlite = options;
        self
    }

    /// The defaults overridden by the environment: `CACHENESS_DIR`,
    /// `CACHENESS_BACKEND`, `CACHENESS_MAX_SIZE_MB`,
    /// `CACHENESS_DEFAULT_TTL_HOURS` (fractions allowed), `CACHENESS_EVICTION`
    /// (`lru`, `lrs`, `lfu`) and `CACHENESS_CODEC` (a codec's name). A
    /// variable that is set but invalid is an error naming it.
    pub fn from_env() -> Result<Self> {
        CacheConfig::default().with_vars(|name| std::env::var(name).ok())
    }

    /// This configuration overridden by variables looked up with `lookup`.
    pub fn with_vars(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        if let Some(dir) = lookup("CACHENESS_DIR") {
            self.dir = Some(dir.into());
        }
        if let Some(backend) = lookup("CACHENESS_BACKEND") {
            self.backend = backend.trim().to_owned();
        }
        if let Some(megabytes) = lookup("CACHENESS_MAX_SIZE_MB") {
            let megabytes: f64 = megabytes.trim().parse().map_err(|_| Error::Config {
                field: "CACHENESS_MAX_SIZE_MB",
                reason: format!("`{megabytes}` is not a number of megabytes"),
            })?;
            if !(megabytes.is_finite() && megabytes > 0.0) {
                return Err(Error::Config {
                    field: "CACHENESS_MAX_SIZE_MB",
                    reason: format!("{megabytes} is not a positive size"),
                });
            }
            self.max_size = Some((megabytes * 1024.0 * 1024.0) as u64);
        }
        if let Some(policy) = lookup("CACHENESS_EVICTION") {
            self.eviction = Some(policy.trim().parse().map_err(|error| Error::Config {
                field: "CACHENESS_EVICTION",
                reason: format!("{error}"),
            })?);
        }
        if let Some(codec) = lookup("CACHENESS_CODEC") {
            let codec = codec.parse().map_err(|error| Error::Config {
                field: "CACHENESS_CODEC",
                reason: format!("{error}"),
            })?;
            self.codec = Some(codec);
        }
        if let Some(hours) = lookup("CACHENESS_DEFAULT_TTL_HOURS") {
            let parsed: Option<f64> = hours.trim().parse().ok();
            let ttl = parsed
                .filter(|hours| hours.is_finite() && *hours > 0.0)
                .and_then(|hours| Duration::try_from_secs_f64(hours * 3600.0).ok())
                .ok_or_else(|| Error::Config {
                    field: "CACHENESS_DEFAULT_TTL_HOURS",
                    reason: format!("`{hours}` is not a positive number of hours"),
                })?;
            self.default_ttl = Some(ttl);
        }
        Ok(self)
    }

    /// Checks the configuration and opens the cache.
    pub fn open(&self) -> Result<Cache> {
        self.open_with_clock(Arc::new(SystemClock))
    }

    /// Opens the cache with all its times read from `clock` (tests drive a
    /// [`ManualClock`](cacheness_core::ManualClock) instead of sleeping).
    pub fn open_with_clock(&self, clock: Arc<dyn Clock>) -> Result<Cache> {
        let info = backend_info(split_layer(&self.backend)?.1)?;
        if self.max_size == Some(0) {
            return Err(Error::Config {
                field: "max_size",
                reason: "must be greater than zero".into(),
            });
        }
        if info.needs_dir && self.dir.is_none() {
            return CacheConfig {
                dir: Some(default_dir()?),
                ..self.clone()
            }
            .open_with_clock(clock);
        }
        let Some(dir) = &self.dir else {
            return self.builder(clock).open_shared(self.open_backend()?);
        };
        check_dir(dir, self.read_only)?;
        if !info.needs_dir && self.read_only {
            crate::migration::refuse_disk_cache(dir, info.name)?;
        }
        if self.read_only {
            let config = match info.needs_dir {
                true => self.with_settings(dir, false)?,
                false => self.clone(),
            };
            return config.open_read_only(dir, info.name, config.builder(clock));
        }
        // A writer without the key of a signed dir would write entries its
        // signed handles hide and `verify --repair` removes: refused before
        // anything in the dir is created or switched.
        if !self.sign_entries {
            cacheness_core::signing::refuse_unsigned_writer(dir)?;
        }
        // The backend may create files in the dir: it must exist first.
        cacheness_core::files::create_private_dir(dir)?;
        let writable = std::fs::metadata(dir)
            .map_err(|source| Error::io("inspect directory", dir, source))?
            .permissions();
        if writable.readonly() {
            return Err(Error::Config {
                field: "dir",
                reason: format!("{} is not writable", dir.display()),
            });
        }
        self.open_writable(dir, info, clock)
    }

    /// The engine's builder for this configuration (its settings resolved).
    fn builder(&self, clock: Arc<dyn Clock>) -> cacheness_core::CacheBuilder {
        let mut builder = Cache::builder()
            .max_size(self.max_size)
            .default_ttl(self.default_ttl)
            .eviction(self.eviction.unwrap_or_default())
            .verify_integrity(self.verify_integrity)
            .inline_threshold(self.inline_threshold)
            .durability(self.durability)
            .access_granularity(self.access_granularity)
            .codec(self.codec.unwrap_or_default())
            .single_flight(self.single_flight)
            .shared_clock(clock);
        if let Some(dir) = &self.dir {
            builder = builder.dir(dir);
        }
        if self.sign_entries {
            builder = builder.sign_entries();
        }
        builder
    }

    /// This configuration with the dir's stored settings filled in where it
    /// leaves them unset; with `create`, the settings are stored first if the
    /// dir has none.
    fn with_settings(&self, dir: &Path, create: bool) -> Result<CacheConfig> {
        let stored = match read_settings(dir)? {
            Some(stored) => Some(stored),
            None if create => {
                let settings = CacheSettings::new(
                    self.codec.unwrap_or_default(),
                    self.max_size,
                    self.default_ttl,
                    self.eviction.unwrap_or_default(),
                    self.sign_entries,
                );
                Some(create_settings(dir, &settings)?)
            }
            None => None,
        };
        let Some(stored) = stored else {
            return Ok(self.clone());
        };
        warn_if_differs(dir, "codec", self.codec, Some(stored.codec));
        warn_if_differs(dir, "max_size", self.max_size, stored.max_size);
        warn_if_differs(dir, "default_ttl", self.default_ttl, stored.default_ttl());
        warn_if_differs(dir, "eviction", self.eviction, Some(stored.eviction));
        Ok(CacheConfig {
            codec: Some(self.codec.unwrap_or(stored.codec)),
            max_size: self.max_size.or(stored.max_size),
            default_ttl: self.default_ttl.or(stored.default_ttl()),
            eviction: Some(self.eviction.unwrap_or(stored.eviction)),
            ..self.clone()
        })
    }

    /// Opens the cache in `dir` for writing: the backend switch or rebuild the
    /// dir asks for, under the dir's lease.
    fn open_writable(
        &self,
        dir: &Path,
        info: &crate::registry::BackendInfo,
        clock: Arc<dyn Clock>,
    ) -> Result<Cache> {
        // Decided, and marked on disk, before the backend creates its metadata;
        // the lease is held as long as the cache is open.
        let (opening, memory_lease) = match info.needs_dir {
            true => (
                Some(crate::migration::begin_open(
                    dir,
                    info.name,
                    self.switch_backend_on_open,
                )?),
                None,
            ),
            false => (
                None,
                Some(crate::migration::begin_memory_open(dir, info.name)?),
            ),
        };
        // Recorded under the lease (exclusive while the dir is being created),
        // and only once the dir is known to be this backend's to open: an open
        // refused above (a memory backend over a disk cache, a switch it may
        // not make) must not give the dir's cache its settings. A memory
        // backend's dir holds no cache that outlives it: it has none.
        let config = match info.needs_dir {
            true => &self.with_settings(dir, true)?,
            false => self,
        };
        #[allow(unused_mut)]
        let mut builder = config.builder(clock);
        // With a memory layer, the bytes of hot values in blob files are held
        // too, in front of the local blob store.
        #[cfg(feature = "memlayer")]
        if let Some(layer) = config.layer_config(split_layer(&config.backend)?.0) {
            let local = cacheness_core::LocalBlobStore::open(dir, config.durability)?;
            let layer = cacheness_memlayer::BlobLayer::new(Arc::new(local), &layer)?;
            builder = builder.blob_store(Arc::new(layer));
        }
        let lease = match (&opening, memory_lease) {
            (Some(opening), _) => Some(opening.lease.clone()),
            (None, lease) => lease,
        };
        if let Some(lease) = lease {
            builder = builder.hold(lease);
        }
        let backend = config.open_backend()?;
        let (switch, rebuild) = match opening {
            Some(opening) => {
                opening.created()?;
                (opening.switch, opening.rebuild)
            }
            None => (None, None),
        };
        if let Some(switch) = switch {
            let source = CacheConfig {
                backend: switch.from.to_owned(),
                ..config.clone()
            }
            .open_plain_backend()?;
            switch.run(dir, source.as_ref(), backend.as_ref(), &mut log_progress)?;
        }
        let cache = builder.open_shared(backend)?;
        if info.needs_dir && self.sign_entries {
            record_signing(dir)?;
        }
        if let Some(rebuild) = rebuild {
            rebuild.run(&cache)?;
        }
        Ok(cache)
    }

    /// Opens an existing cache for reading: nothing is created, migrated,
    /// written or deleted.
    fn open_read_only(
        &self,
        dir: &Path,
        backend: &'static str,
        builder: cacheness_core::CacheBuilder,
    ) -> Result<Cache> {
        if let Some(needed) = BACKENDS.iter().find(|info| info.name == backend)
            && needed.needs_dir
        {
            match crate::migration::current_backend(dir)? {
                None => {
                    return Err(Error::Config {
                        field: "dir",
                        reason: format!("{} holds no cache metadata", dir.display()),
                    });
                }
                Some(current) if current != backend => {
                    return Err(Error::Config {
                        field: "backend",
                        reason: format!(
                            "{} is a {current} cache, not {backend}; open it with backend \
                             `{current}` or migrate it first",
                            dir.display()
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        builder.read_only(true).open_shared(self.open_backend()?)
    }

    /// Copies every entry of the dir's current disk backend into `to` (`json` or
    /// `sqlite`), under the same lock and with the same markers as the migration
    /// a writable open runs, so a migration killed half way is redone by the next
    /// open or call. Afterwards the dir opens with `to`; the old metadata stays.
    pub fn migrate_to(
        &self,
        to: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<MigrateReport> {
        let dir = self.dir.as_deref().ok_or_else(|| Error::Config {
            field: "dir",
            reason: "migration works on a cache dir; set one".into(),
        })?;
        let info = backend_info(to)?;
        if !info.needs_dir {
            return Err(Error::Config {
                field: "backend",
                reason: format!(
                    "the {to} backend keeps its metadata in memory and cannot hold the entries of {}",
                    dir.display()
                ),
            });
        }
        check_dir(dir, true)?;
        let Some(current) = crate::migration::current_backend(dir)? else {
            return Err(Error::Config {
                field: "dir",
                reason: format!("{} holds no cache metadata to migrate", dir.display()),
            });
        };
        let opening = crate::migration::begin_open(dir, info.name, true)?;
        let Some(pending) = opening.switch else {
            return Err(Error::Config {
                field: "backend",
                reason: format!("{} already uses the {current} backend", dir.display()),
            });
        };
        let config = |backend: &str| CacheConfig {
            backend: backend.to_owned(),
            read_only: false,
            ..self.clone()
        };
        let target = config(pending.to).open_plain_backend()?;
        let source = config(pending.from).open_plain_backend()?;
        pending.run(dir, source.as_ref(), target.as_ref(), progress)
    }
}

/// The backend a configuration opens unless it names one: `sqlite`, else the
/// other disk backend, else `memory` (whatever is compiled in).
const DEFAULT_BACKEND: &str = if cfg!(feature = "sqlite") {
    "sqlite"
} else if cfg!(feature = "json") {
    "json"
} else {
    "memory"
};

/// The cache dir of a configuration without one: `cacheness` in the
/// platform's cache directory (`$XDG_CACHE_HOME`, else `~/.cache`, on Linux).
pub fn default_dir() -> Result<PathBuf> {
    directories::BaseDirs::new()
        .map(|dirs| dirs.cache_dir().join("cacheness"))
        .ok_or_else(|| Error::Config {
            field: "dir",
            reason: "no platform cache directory (is HOME set?); set `dir` or CACHENESS_DIR".into(),
        })
}

/// Signing was turned on (a signed open, `sign_unsigned`) and the open
/// succeeded: the dir's settings say so from now on.
fn record_signing(dir: &Path) -> Result<()> {
    match read_settings(dir)? {
        Some(stored) if !stored.sign_entries => crate::settings::write_settings(
            dir,
            &CacheSettings {
                sign_entries: true,
                ..stored
            },
        ),
        _ => Ok(()),
    }
}

/// Logs a setting this handle uses that differs from the dir's stored one.
fn warn_if_differs<T: PartialEq + std::fmt::Debug>(
    dir: &Path,
    setting: &str,
    configured: Option<T>,
    stored: Option<T>,
) {
    if let Some(configured) = configured
        && Some(&configured) != stored.as_ref()
    {
        tracing::warn!(
            dir = %dir.display(),
            setting,
            configured = ?configured,
            stored = ?stored,
            "this handle uses a setting other than the cache's stored one; \
             change the stored one with `cacheness settings` or cacheness::ops::write_settings"
        );
    }
}

/// `dir` must be a directory, or (for a writable open) missing.
fn check_dir(dir: &Path, must_exist: bool) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(Error::Config {
            field: "dir",
            reason: format!("{} exists and is not a directory", dir.display()),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !must_exist => Ok(()),
        Err(source) => Err(Error::io("open cache dir", dir, source)),
    }
}

/// Logs a long migration's progress every 1 000 entries.
fn log_progress(progress: Progress) {
    if progress.done.is_multiple_of(1_000) {
        tracing::info!(done = progress.done, total = ?progress.total, "migrating");
    }
}

impl CacheConfig {
    /// Opens this configuration's metadata backend alone, with its options.
    pub fn open_backend(&self) -> Result<Arc<dyn MetadataBackend>> {
        let (layered, name) = split_layer(&self.backend)?;
        let backend = CacheConfig {
            backend: name.to_owned(),
            ..self.clone()
        }
        .open_plain_backend()?;
        #[cfg(feature = "memlayer")]
        if let Some(config) = self.layer_config(layered) {
            let layer = cacheness_memlayer::MemLayer::new(backend, config)?;
            return Ok(Arc::new(layer));
        }
        let _ = layered;
        Ok(backend)
    }

    /// The memory layer's configuration, if one is on: a `memory_layer` section,
    /// or a backend named `memlayer+NAME` (the defaults).
    #[cfg(feature = "memlayer")]
    fn layer_config(&self, layered: bool) -> Option<cacheness_memlayer::MemLayerConfig> {
        let config = match (&self.memory_layer, layered) {
            (Some(config), _) => config.clone(),
            (None, true) => cacheness_memlayer::MemLayerConfig::default(),
            (None, false) => return None,
        };
        config.enabled.then_some(config)
    }

    /// The backend without a memory layer.
    fn open_plain_backend(&self) -> Result<Arc<dyn MetadataBackend>> {
        backend_info(&self.backend)?.open(self, self.dir.as_deref())
    }
}

/// Splits `memlayer+NAME` into (true, NAME); any other name into (false, name).
fn split_layer(name: &str) -> Result<(bool, &str)> {
    match name.strip_prefix("memlayer+") {
        Some(inner) if cfg!(feature = "memlayer") => Ok((true, inner)),
        Some(_) => Err(Error::Config {
            field: "backend",
            reason: format!(
                "`{name}` needs the memory layer; enable the `memlayer` feature of cacheness"
            ),
        }),
        None => Ok((false, name)),
    }
}

/// Opens the metadata backend called `name` (for disk backends, in `dir`) with
/// default options, without a cache around it: for tools that work on metadata
/// directly, such as migration.
pub fn open_backend(name: &str, dir: Option<&Path>) -> Result<Arc<dyn MetadataBackend>> {
    CacheConfig {
        dir: dir.map(Path::to_path_buf),
        backend: name.to_owned(),
        ..CacheConfig::default()
    }
    .open_backend()
}

/// The disk backend `dir` belongs to: the one whose metadata is there, or when
/// both are (a migration leaves its source in place), the one the last
/// migration went to (or came from, while one is unfinished). `Ok(None)` when
/// the dir holds no metadata; an error naming both files when nothing says which
/// is current, or when a marker is not a regular file.
pub fn detect_backend(dir: &Path) -> Result<Option<&'static str>> {
    crate::migration::current_backend(dir)
}

/// Migrates the cache in `dir` to the disk backend `to` with default options;
/// see [`CacheConfig::migrate_to`].
pub fn migrate_dir(
    dir: &Path,
    to: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<MigrateReport> {
    CacheConfig {
        dir: Some(dir.to_path_buf()),
        ..CacheConfig::default()
    }
    .migrate_to(to, progress)
}

/// Durations in config files: a number of seconds, or text with a unit.
mod duration_text {
    use super::*;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Seconds(f64),
            WithUnit(String),
        }
        match Option::<Text>::deserialize(deserializer)? {
            None => Ok(None),
            Some(Text::Seconds(seconds)) => seconds_to_duration(seconds)
                .map(Some)
                .map_err(serde::de::Error::custom),
            Some(Text::WithUnit(text)) => parse(&text).map(Some).map_err(serde::de::Error::custom),
        }
    }

    pub(super) fn deserialize_required<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        deserialize(deserializer)?.ok_or_else(|| serde::de::Error::custom("a duration is required"))
    }

    fn seconds_to_duration(seconds: f64) -> Result<Duration, String> {
        Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("{seconds} is not a valid number of seconds"))
    }

    /// `"90"`, `"90s"`, `"1.5h"`, `"250ms"`, `"15m"`, `"7d"`.
    pub(super) fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number.trim().parse().map_err(|_| {
            format!("`{text}` is not a duration such as \"90s\", \"15m\" or \"24h\"")
        })?;
        let scale = match unit.trim() {
            "ms" => 0.001,
            "" | "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            other => {
                return Err(format!(
                    "unknown duration unit `{other}` in `{text}` (use ms, s, m, h or d)"
                ));
            }
        };
        seconds_to_duration(number * scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    #[test]
    fn environment_overrides_defaults() {
        let config = CacheConfig::default()
            .with_vars(vars(&[
                ("CACHENESS_DIR", "/tmp/x"),
                ("CACHENESS_BACKEND", "memory"),
                ("CACHENESS_MAX_SIZE_MB", "1.5"),
                ("CACHENESS_DEFAULT_TTL_HOURS", "0.5"),
            ]))
            .unwrap();
        assert_eq!(config.dir.as_deref(), Some(Path::new("/tmp/x")));
        assert_eq!(config.max_size, Some(1_572_864));
        assert_eq!(config.default_ttl, Some(Duration::from_secs(1800)));
        let untouched = CacheConfig::default().with_vars(vars(&[])).unwrap();
        assert_eq!(untouched, CacheConfig::default());
    }

    #[test]
    fn invalid_environment_values_name_the_variable() {
        for (name, value) in [
            ("CACHENESS_MAX_SIZE_MB", "lots"),
            ("CACHENESS_MAX_SIZE_MB", "0"),
            ("CACHENESS_DEFAULT_TTL_HOURS", "-1"),
            ("CACHENESS_DEFAULT_TTL_HOURS", "soon"),
            ("CACHENESS_CODEC", "yaml"),
        ] {
            let error = CacheConfig::default()
                .with_vars(vars(&[(name, value)]))
                .unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(duration_text::parse("90").unwrap(), Duration::from_secs(90));
        assert_eq!(
            duration_text::parse("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            duration_text::parse("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            duration_text::parse("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert!(duration_text::parse("3 fortnights").is_err());
        assert!(duration_text::parse("-5s").is_err());
    }

    #[test]
    fn config_files_reject_unknown_fields() {
        let error =
            serde_json::from_str::<CacheConfig>(r#"{"backend": "memory", "max_size_mb": 5}"#)
                .unwrap_err();
        assert!(error.to_string().contains("max_size_mb"), "{error}");
        let config: CacheConfig = serde_json::from_str(r#"{"default_ttl": 60}"#).unwrap();
        assert_eq!(config.default_ttl, Some(Duration::from_secs(60)));
        let with_unit: CacheConfig = serde_json::from_str(r#"{"default_ttl": "1m"}"#).unwrap();
        assert_eq!(with_unit, config);
    }

    #[test]
    fn unknown_backends_list_what_is_available() {
        let error = CacheConfig::new()
            .backend("redis")
            .open()
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown backend `redis`"), "{error}");
        assert!(error.contains("memory"), "{error}");
    }
}
