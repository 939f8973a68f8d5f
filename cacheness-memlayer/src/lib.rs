//! The memory layer of cacheness: hot entries served from memory in front of any
//! metadata backend, never stale across processes.
//!
//! [`MemLayer<B>`](MemLayer) wraps a [`MetadataBackend`](cacheness_core::MetadataBackend)
//! and is one itself, so it stacks on the `sqlite` or `json` backend, or on a
//! backend of your own. Reads of entries it holds cost a hash-table lookup and a
//! clone: no syscall, no SQL, no file read for values stored inline.
//!
//! ```
//! use std::time::Duration;
//! use cacheness_core::{Cache, key};
//! use cacheness_memlayer::{Capacity, MemLayer, MemLayerConfig};
//! use cacheness_memory::MemoryBackend;
//!
//! let config = MemLayerConfig::new()
//!     .capacity(Capacity::Bytes(16 << 20))
//!     .ttl(Duration::from_secs(60));
//! let cache = Cache::builder().open(MemLayer::new(MemoryBackend::new(), config)?)?;
//! cache.put(&key!(model = "xgboost"), &[0.25, 0.75])?;
//! assert_eq!(cache.get::<Vec<f64>>(&key!(model = "xgboost"))?, Some(vec![0.25, 0.75]));
//! assert_eq!(cache.stats()?.layer.map(|layer| layer.hits), Some(1));
//! # Ok::<(), cacheness_core::Error>(())
//! ```
//!
//! # Configuration
//!
//! [`MemLayerConfig`] keeps the seed's defaults: 1 000 entries, a TTL of 300 s.
//! `capacity` is a number of entries or a number of bytes (each entry then
//! weighs its size in memory). `check_interval` (default 0) is how long copies
//! are trusted before the backend is asked again whether another process wrote.
//!
//! # Eviction policy
//!
//! The seed let users pick `lru`, `lfu`, `fifo` or `rr`. Those names are not
//! carried over, and a `policy` field is rejected as unknown rather than ignored:
//! the layer uses [quick_cache]'s policy, a variant of CLOCK-Pro very close to
//! S3-FIFO. New entries enter a small probationary queue; an entry read again
//! while there is promoted to the main queue, the others leave early and only
//! their keys are remembered (ghosts), so a key that comes back soon is admitted
//! straight into the main queue. For cache workloads this beats each of the
//! seed's options: unlike LRU and FIFO, a burst of one-off reads (a scan, a
//! listing, a batch job) cannot flush the hot set; unlike LFU, it adapts when the
//! hot set moves, without counts that never age; unlike random replacement, it
//! keeps what is used. Hits only set a flag (no list reordering under a write
//! lock as in LRU), so concurrent reads stay cheap. Its published hit ratios are
//! comparable to W-TinyLFU.
//!
//! # Consistency
//!
//! - Writes go to the backend first and are visible in the layer only after the
//!   backend accepted them; `put` returns what the backend replaced.
//! - Removes, `remove_if_unchanged` and `clear` drop the copies; `touch` updates
//!   them; scans, counts and the other bulk methods read the backend.
//! - Other processes: before each read (or once per `check_interval`), the layer
//!   asks the backend's `data_version` (SQLite: a look at the WAL-index header in
//!   shared memory, and `PRAGMA data_version` once it moved; memory: never
//!   changes). If it moved, every copy is dropped.
//!   With `check_interval = 0` a read never returns what another process already
//!   replaced or removed; with an interval, a copy may be up to that old. A
//!   backend that cannot tell (`data_version` is `None`) gets no copies served
//!   with interval 0, and copies for at most the interval otherwise.
//! - `ttl` bounds how long a copy lives even when nothing says it changed.
//!
//! # Values in blob files
//!
//! [`MemLayer`] holds entries, and with them the values stored inline. A value
//! in a blob file (every value of the `json` backend, by default) is read from
//! its file at each get, unless the cache's blob store is wrapped in a
//! [`BlobLayer`], which holds the bytes of recently read small blob files. The
//! facade does both when a memory layer is configured.
//!
//! Under a byte capacity, an entry larger than a shard of the layer (about
//! `capacity / shards`) is not held; it is read from the backend every time.
//! Keys not in the backend are not remembered: reads of missing keys always ask
//! the backend.
//!
//! [quick_cache]: https://docs.rs/quick_cache

mod blobs;
pub mod config;
pub mod error;
mod layer;

pub use blobs::{BlobLayer, MAX_HELD_BLOB_BYTES};
pub use config::{Capacity, MemLayerConfig};
pub use error::MemLayerError;
pub use layer::MemLayer;
