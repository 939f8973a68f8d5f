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
//! let cache = CacheConfig::new()
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
//! [`#[memoize]`](macro@memoize) (feature `macros`, default) keeps a
//! function's results in a cache, keyed by its arguments; `AsyncCache`
//! (feature `tokio`) is the API as futures.
//!
//! The root holds what a user calls; [`ops`] holds maintenance, and
//! [`backend`] what a backend author or a tool over raw metadata needs (a
//! custom backend implements [`backend::MetadataBackend`] and opens with
//! [`Cache::builder`]).

mod config;
#[cfg(feature = "macros")]
pub mod memoize;
mod migration;
mod registry;
mod settings;

#[cfg(feature = "tokio")]
pub use cacheness_core::AsyncCache;
pub use cacheness_core::{
    Cache, CacheKey, Clock, Codec, Durability, Entry, Error, EvictionPolicy, Expiry, GetOptions,
    JsonCodec, ListOptions, ListedEntry, ManualClock, NamedCodec, Params, PutOptions, Result,
    SingleFlight, Stats, SystemClock, ToKey, UnknownCodec, Value, key::KeyError,
};
#[cfg(feature = "macros")]
pub use cacheness_macros::memoize;
pub use config::CacheConfig;

/// Builds [`Params`] (which hash to a [`CacheKey`]) from named parameters, in
/// any order: `key!(model = "xgboost", version = 2)`.
///
/// A macro of the facade's own that forwards to the core's, so the root
/// exports the macro alone (re-exporting the core's `key` would also export
/// the core's `key` module, which shares its name).
#[macro_export]
macro_rules! key {
    ($($parameters:tt)*) => {
        $crate::__core::key!($($parameters)*)
    };
}

/// The core crate, for [`key!`]'s expansion only; not part of the API.
#[doc(hidden)]
pub use cacheness_core as __core;

/// Maintenance: what [`Cache::verify`], [`Cache::rebuild`], [`Cache::gc`],
/// [`Cache::sign_unsigned`] and migrations take and report, and the
/// operations on a cache dir as a whole.
pub mod ops {
    pub use crate::config::{default_dir, detect_backend, migrate_dir};
    pub use crate::settings::{CacheSettings, SETTINGS_FILE, read_settings, write_settings};
    pub use cacheness_core::SignReport;
    pub use cacheness_core::ops::{
        GcOptions, GcReport, InlineLoss, MigrateReport, Progress, RebuildReport, VerifyOptions,
        VerifyReport, migrate, no_progress,
    };
}

/// For backend authors and tools that work on metadata directly: the
/// [`MetadataBackend`](backend::MetadataBackend) trait and what it trades in,
/// the engine's builder over a backend instance, the blob store, the registry
/// of backends [`CacheConfig`] opens by name, and the backend crates compiled
/// in, with the option types [`CacheConfig`]'s sections take.
///
/// A backend of your own depends on `cacheness-core` (and its `conformance`
/// feature in its tests); this module re-exports the parts of it a user of
/// the facade meets.
pub mod backend {
    pub use crate::config::open_backend;
    pub use crate::registry::{BACKENDS, BackendInfo};
    pub use cacheness_core::{
        AccessBatch, BackendStats, BlobHeader, BlobStore, BoxError, CacheBuilder, Capabilities,
        Compression, ContentHash, Counters, LayerStats, LocalBlobStore, Location, MetadataBackend,
        RAW_CODEC, ScanFilter, SharedEntry, Touch, UserMetadata, cache::LOCKS_DIR,
    };

    #[cfg(feature = "json")]
    pub use cacheness_json::{JsonBackend, JsonOptions};
    #[cfg(feature = "memlayer")]
    pub use cacheness_memlayer::{Capacity, MemLayer, MemLayerConfig};
    #[cfg(feature = "memory")]
    pub use cacheness_memory::MemoryBackend;
    #[cfg(feature = "sqlite")]
    pub use cacheness_sqlite::{SqliteBackend, SqliteOptions, Synchronous, TempStore};
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// docs/CODECS.md's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/CODECS.md")]
pub struct CodecsDoctests;
