//! # cacheness
//!
//! A persistent cache for Rust programs. A value (any serde type, or raw bytes) is
//! stored under a key made of named parameters and comes back fast, across runs,
//! threads and processes. Entries have TTLs, the cache has a size limit, stored
//! bytes are integrity-checked, and the index of entries (the *metadata*) lives in
//! a backend chosen for the workload:
//!
//! | backend | feature | metadata in | for |
//! |---|---|---|---|
//! | `sqlite` | `sqlite` (default) | `cache_metadata.db`, SQLite in WAL mode | production, many processes |
//! | `json` | `json` | `metadata.json` + an append-only journal | small caches, readable metadata |
//! | `memory` | `memory` (default) | a `DashMap` in the process | temporary caches, fastest |
//! | `sqlite-memory` | `sqlite` | SQLite `:memory:` | SQL semantics without disk |
//!
//! Feature `memlayer` adds a memory layer for hot keys in front of any of them
//! (`backend("memlayer+sqlite")`).
//!
//! ```
//! use std::time::Duration;
//! use cacheness::{CacheConfig, key};
//!
//! let dir = tempfile::tempdir()?;
//! let cache = CacheConfig::builder()
//!     .dir(dir.path())
//!     .backend("sqlite")
//!     .default_ttl(Duration::from_secs(3600))
//!     .open()?;
//!
//! let key = key!(model = "xgboost", dataset = "customer_data", version = "1.0");
//! let scores = cache.get_or_insert_with(&key, || vec![0.91, 0.87])?;
//! assert_eq!(cache.get::<Vec<f64>>(&key)?, Some(scores));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The crate re-exports [`cacheness_core`]'s API; a custom backend implements
//! [`MetadataBackend`] and opens with [`Cache::builder`].

mod config;
mod migration;

pub use cacheness_core::ops::{
    GcOptions, GcReport, MigrateReport, Progress, RebuildReport, VerifyOptions, VerifyReport,
    migrate, no_progress,
};
pub use cacheness_core::{
    AccessBatch, BackendStats, BlobHeader, BlobStore, BoxError, Cache, CacheBuilder, CacheKey,
    Capabilities, Clock, Codec, Compression, ContentHash, Counters, Durability, Entry, Error,
    Expiry, GetOptions, JsonCodec, ListOptions, ListedEntry, LocalBlobStore, Location, ManualClock,
    MetadataBackend, Params, PutOptions, RAW_CODEC, Result, ScanFilter, SignReport, Stats,
    SystemClock, ToKey, Touch, UserMetadata, Value, key,
};
pub use config::{
    BACKENDS, BackendInfo, CacheConfig, ConfigBuilder, detect_backend, migrate_dir, open_backend,
};

/// The backend crates compiled in, for direct use, with the option types that
/// [`CacheConfig`]'s sections take.
pub mod backends {
    #[cfg(feature = "json")]
    pub use cacheness_json::{JsonBackend, JsonOptions};
    #[cfg(feature = "memlayer")]
    pub use cacheness_memlayer::{Capacity, MemLayer, MemLayerConfig};
    #[cfg(feature = "memory")]
    pub use cacheness_memory::MemoryBackend;
    #[cfg(feature = "sqlite")]
    pub use cacheness_sqlite::{SqliteBackend, SqliteOptions, Synchronous, TempStore};
}

/// The full core crate, for backend authors.
pub use cacheness_core as core;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
