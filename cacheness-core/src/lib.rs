//! The core of [cacheness](https://docs.rs/cacheness), a persistent cache: the key
//! encoding, the unified entry schema, the [`MetadataBackend`] trait every backend
//! implements, the blob store, the codecs and the [`Cache`] engine.
//!
//! Most users depend on the `cacheness` facade instead, whose features pick
//! backends. Depend on this crate directly to write a backend of your own, or to
//! use the engine with a backend crate and nothing else:
//!
//! ```
//! use cacheness_core::{Cache, key};
//! use cacheness_memory::MemoryBackend;
//!
//! let dir = tempfile::tempdir()?;
//! let cache = Cache::builder().dir(dir.path()).open(MemoryBackend::new())?;
//! cache.put(&key!(model = "xgboost", version = 2), &[0.1, 0.9])?;
//! let scores: Option<Vec<f64>> = cache.get(&key!(version = 2, model = "xgboost"))?;
//! assert_eq!(scores, Some(vec![0.1, 0.9]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A backend proves it keeps the [`MetadataBackend`] contract by running the
//! shared conformance suite (feature `conformance`, a dev-dependency; not part
//! of the stable API: it gains checks in any release) from its `tests/`, in a
//! module of one line:
//!
//! ```ignore
//! // tests/conformance.rs
//! mod my_backend {
//!     cacheness_core::conformance_tests!(|dir: &std::path::Path| MyBackend::open(dir).unwrap());
//! }
//! ```

pub mod backend;
pub mod blob;
pub mod cache;
mod clock;
mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;
mod entry;
mod error;
pub mod eviction;
pub mod files;
pub mod key;
pub mod ops;
pub mod signing;

pub use backend::{
    AccessBatch, BackendStats, Capabilities, Counters, LayerStats, MetadataBackend, ScanFilter,
    Touch,
};
pub use blob::{BlobHeader, BlobStore, Durability, LocalBlobStore};
#[cfg(feature = "tokio")]
pub use cache::AsyncCache;
pub use cache::{
    Cache, CacheBuilder, Expiry, GetOptions, ListOptions, PutOptions, SingleFlight, Stats,
};
pub use clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "msgpack")]
pub use codec::MsgpackCodec;
pub use codec::{Codec, JsonCodec, NamedCodec, RAW_CODEC, UnknownCodec};
pub use entry::{
    Compression, ContentHash, Entry, ListedEntry, Location, SharedEntry, UserMetadata,
};
pub use error::{BoxError, Error, Result};
pub use eviction::EvictionPolicy;
pub use key::{CacheKey, Params, ToKey, Value};
pub use ops::{
    GcOptions, GcReport, MigrateReport, Progress, RebuildReport, VerifyOptions, VerifyReport,
    migrate,
};
pub use signing::{SignReport, Signer};
