//! The `json` metadata backend of cacheness: the index of a cache's entries in
//! human-readable files in the cache dir, safe to share between threads and
//! processes, and robust to crashes.
//!
//! ```
//! use cacheness_core::{Cache, MetadataBackend, key};
//! use cacheness_json::JsonBackend;
//!
//! let dir = tempfile::tempdir()?;
//! let cache = Cache::builder()
//!     .dir(dir.path())
//!     .open(JsonBackend::open(dir.path())?)?;
//! cache.put(&key!(experiment = "bench", idx = 1), &vec![1, 2, 3])?;
//! assert_eq!(cache.get::<Vec<i32>>(&key!(experiment = "bench", idx = 1))?, Some(vec![1, 2, 3]));
//! drop(cache);
//!
//! // Another process (or a later run) sees the entry.
//! let reopened = JsonBackend::open(dir.path())?;
//! assert_eq!(reopened.len()?, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Files
//!
//! - `metadata.json`: the *snapshot*, pretty-printed, with a `format_version`
//!   (first field), a `generation`, the hit/miss/eviction `counters` and the
//!   `entries` in ascending key order, one object per key in the core
//!   [`Entry`](cacheness_core::Entry) serde form.
//! - `metadata.journal`: what happened since the snapshot, one JSON object per
//!   line: first `{"header":{"format_version":1,"generation":G}}`, then
//!   `{"put":{..entry..}}`, `{"remove":{"key":".."}}`,
//!   `{"touch":{"touches":[..],"counters":{..}}}` (batched reads) or `{"clear":{}}`.
//!   A write is one append: O(1), whatever the number of entries.
//!
//! # Values
//!
//! Values up to the cache's `inline_threshold` (4 KiB by default) live in the
//! entry itself, base64 in its journal line and then in the snapshot, as in
//! the `sqlite` backend: a small put is one append and creates no file.
//! Larger values are blob files. Inline values are lost with the metadata (no
//! file holds them): a rebuild recovers the blob files' values and reports
//! how many inline entries it could not recover
//! ([`MetadataBackend::inline_lost`](cacheness_core::MetadataBackend::inline_lost),
//! hence `Cache::rebuild`'s report). With [`JsonOptions::inline_values`]
//! off, every value is a blob file and lost metadata can be rebuilt from the
//! files alone.
//! - `metadata.lock`: the lock file. Writers take an exclusive `flock` on it,
//!   readers that replay new journal lines a shared one.
//!
//! # Loading
//!
//! The snapshot is parsed with simd-json one entry at a time (cut from the
//! layout the writer produces, every cut checked), which keeps the parser's
//! buffers in the CPU cache; a snapshot of another layout (edited by hand) is
//! parsed whole, with the same result. See `docs/cacheness-json.md` for figures.
//!
//! # Compaction
//!
//! When the journal outgrows [`JsonOptions::compaction_min_bytes`] and
//! [`JsonOptions::compaction_ratio`] × the snapshot's size, the writer that
//! crossed the line (holding the exclusive lock) writes the next generation's
//! snapshot to a temp file, syncs it, renames it over `metadata.json`, then does
//! the same with a journal holding only a header for the new generation. A
//! crash between the two renames leaves a journal of an older generation, which
//! loaders recognise as already folded in and ignore.
//!
//! # Several processes
//!
//! Each process keeps the entries in a `BTreeMap`. Before each operation it
//! `stat`s the journal: the same file of the length it has applied means nothing
//! changed; a longer one means it replays only the new lines; another file (a
//! compaction by someone else) means it reloads. Every write happens under the
//! exclusive lock on an up-to-date view, so `put` returns exactly the entry it
//! replaced, even across processes. [`MetadataBackend::data_version`](cacheness_core::MetadataBackend::data_version)
//! counts the times writes of other handles were applied.
//!
//! # Read-only
//!
//! [`JsonBackend::open_read_only`] reads a cache without writing a byte (on a
//! read-only mount, or to look without changing anything): no file is created,
//! changed or deleted, the shared lock is taken only if `metadata.lock` exists
//! and can be opened, other processes' writes are followed, lost metadata is
//! rebuilt in memory only, and every write is [`JsonError::ReadOnly`].
//!
//! # Crashes and damage
//!
//! - A torn last journal line (a writer died mid-append) is ignored by readers
//!   and cut off by the next writer.
//! - A missing or unparseable snapshot, a journal newer than its snapshot, or no
//!   metadata at all beside blob files: the entries are rebuilt from the blob
//!   files' headers (the journal replayed over them), a new snapshot is written,
//!   and a `warn!` says so. A damaged snapshot is kept as `metadata.json.corrupt`.
//!   Values stored inline cannot be rebuilt: the journal's puts are replayed,
//!   the snapshot's inline values are gone. The repair counts the inline
//!   entries a damaged snapshot still names (its entries that parse alone)
//!   that no blob file or journal line brought back, and says when more may
//!   be lost uncounted (a missing snapshot, parts that do not parse).
//! - An entry that cannot be decoded (nested past simd-json's depth limit of
//!   1 024, a field of the wrong type), in the journal or the snapshot, never
//!   fails the open nor hides other entries. It is kept as written (compaction
//!   carries its text over), `get` of its key is an error naming it
//!   ([`JsonError::Unreadable`]),
//!   [`MetadataBackend::unreadable`](cacheness_core::MetadataBackend::unreadable)
//!   reports it, and `remove_unreadable` (what `cacheness verify --repair`
//!   calls), `remove`, `clear` or a new put of its key end it. Journal lines
//!   that serde_json refuses (its depth limit is 128) are read again with
//!   simd-json, so the journal reads exactly what the snapshot does. A damaged
//!   line or snapshot element that names no key is logged and passed over, and
//!   not carried into the next snapshot.
//! - Metadata of a newer format version is an error ([`JsonError::NewerFormat`]).
//! - A symbolic link, FIFO or other non-regular file at a metadata file's name
//!   (`metadata.json`, `metadata.journal`, `metadata.lock`, the temp files of a
//!   replacement) is an error naming the path and what was found; it is never
//!   followed or opened in a way that could block. The rebuild passes over
//!   blob files that are not regular files, and deletes nothing.
//! - Entries whose blob name could point outside the cache dir (`..`, absolute
//!   paths) are rejected at load with a `warn!`, and refused by `put`.
//! - Entries are never dropped at load for their age: expiry is the engine's job.

mod backend;
mod by_entry;
mod error;
mod files;
mod format;
mod options;
mod rebuild;

pub use backend::{JOURNAL_FILE, JsonBackend, LOCK_FILE, SNAPSHOT_FILE};
pub use error::JsonError;
pub use format::FORMAT_VERSION;
pub use options::{DEFAULT_COMPACTION_MIN_BYTES, DEFAULT_COMPACTION_RATIO, JsonOptions};
