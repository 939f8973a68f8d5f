//! Operating a cache: verify stored bytes, rebuild metadata from blob files, collect
//! garbage, and migrate entries between backends. Each returns a report of what it
//! did and calls a progress callback as it goes.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::backend::{MetadataBackend, ScanFilter};
use crate::blob::check::{self, Damage};
use crate::blob::format::{BlobName, read_header};
use crate::blob::{BlobHeader, BlobStore, GRACE_PERIOD, older_than, supersedes};
use crate::cache::Cache;
use crate::codec::Codec;
use crate::entry::{Compression, ContentHash, Entry, Location};
use crate::error::Result;
use crate::key::CacheKey;

/// Entries are read from a backend in pages of this many.
const PAGE: usize = 1_000;

/// The file [`Cache::rebuild`] keeps in the cache dir while it puts entries
/// back: until it is gone, the metadata may lack entries whose blob files are
/// still there.
pub const REBUILD_MARKER: &str = ".cacheness-rebuilding";

/// Files whose presence in the cache dir says its metadata is being filled and
/// may not yet list every blob file: a backend switch in progress (the
/// facade's `.cacheness-migrating`) and a rebuild ([`REBUILD_MARKER`]). While
/// one is there, `gc` and `verify` take no blob file for an orphan.
pub const INCOMPLETE_METADATA_MARKERS: [&str; 2] = [".cacheness-migrating", REBUILD_MARKER];

/// The first of [`INCOMPLETE_METADATA_MARKERS`] present in `dir`, if any.
///
/// Presence is all that counts: a marker of any kind (a regular file, a
/// symbolic link, a FIFO, a directory) is present, and so is one whose
/// presence cannot be told (an error other than "not found"), since taking
/// blob files for orphans when it is there would delete entries' data.
pub fn incomplete_metadata_marker(dir: &Path) -> Option<&'static str> {
    INCOMPLETE_METADATA_MARKERS.into_iter().find(|marker| {
        !matches!(
            std::fs::symlink_metadata(dir.join(marker)),
            Err(error) if error.kind() == io::ErrorKind::NotFound
        )
    })
}

/// Where a long operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// The phase, e.g. `"entries"` or `"blobs"`.
    pub phase: &'static str,
    /// Items done in this phase.
    pub done: u64,
    /// Items in this phase, when known.
    pub total: Option<u64>,
}

/// A progress callback that ignores progress.
pub fn no_progress(_: Progress) {}

/// How [`Cache::gc_with`] works.
///
/// ```
/// use std::time::Duration;
/// use cacheness_core::GcOptions;
///
/// // Only when no other process or thread writes to the cache:
/// let now = GcOptions::new().grace(Duration::ZERO);
/// assert_eq!(now.grace, Duration::ZERO);
/// assert_eq!(GcOptions::default().grace, Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcOptions {
    /// How old an unreferenced blob file or a temp file must be before it is
    /// deleted ([`GRACE_PERIOD`], one hour, by default). Younger ones may
    /// belong to a put that has not committed yet, in any process. Zero
    /// deletes them whatever their age: safe only when nothing else writes.
    pub grace: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: GRACE_PERIOD,
        }
    }
}

impl GcOptions {
    /// The defaults.
    pub fn new() -> Self {
        GcOptions::default()
    }

    /// Sets [`grace`](Self::grace).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

/// How [`Cache::verify_with`] works.
///
/// ```
/// use cacheness_core::VerifyOptions;
///
/// let options = VerifyOptions::new().repair(true);
/// assert!(options.repair);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// Whether to remove what is found damaged: damaged entries, unreadable
    /// entries and orphaned blob files. Off by default.
    pub repair: bool,
    /// How old a blob file no entry refers to must be to count as orphaned
    /// (see [`GcOptions::grace`]).
    pub grace: Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            repair: false,
            grace: GRACE_PERIOD,
        }
    }
}

impl VerifyOptions {
    /// The defaults: report only, with the default grace period.
    pub fn new() -> Self {
        VerifyOptions::default()
    }

    /// Sets [`repair`](Self::repair).
    pub fn repair(mut self, repair: bool) -> Self {
        self.repair = repair;
        self
    }

    /// Sets [`grace`](Self::grace).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

/// What [`Cache::verify`] found (and, with `repair`, removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Stored bytes checked.
    pub bytes: u64,
    /// Entries whose bytes fail their size, hash or compression check, whose
    /// signature does not match, or whose blob file's header disagrees with
    /// them (or is not a regular file).
    pub corrupted: Vec<CacheKey>,
    /// Entries whose blob file is missing.
    pub missing: Vec<CacheKey>,
    /// Blob files that no entry refers to, older than the grace period.
    /// Always empty when [`orphans_skipped`](Self::orphans_skipped).
    pub orphaned: Vec<String>,
    /// Whether orphaned blob files were not looked for, because a marker of
    /// [`INCOMPLETE_METADATA_MARKERS`] says the metadata is being filled (a
    /// rebuild or a backend switch in progress, or cut short): a blob file
    /// without an entry may then be one whose entry is still to come.
    pub orphans_skipped: bool,
    /// Entries the backend holds but cannot decode, with the reason
    /// ([`MetadataBackend::unreadable`]).
    pub unreadable: Vec<(CacheKey, String)>,
    /// Whether the damage found was removed.
    pub repaired: bool,
    /// How long it took.
    pub elapsed: Duration,
}

impl VerifyReport {
    /// Whether nothing was found wrong.
    pub fn is_clean(&self) -> bool {
        self.corrupted.is_empty()
            && self.missing.is_empty()
            && self.orphaned.is_empty()
            && self.unreadable.is_empty()
    }
}

/// What [`Cache::rebuild`] restored from blob files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RebuildReport {
    /// Blob files read.
    pub blobs: u64,
    /// Entries put back into the metadata.
    pub restored: u64,
    /// Blobs whose entry was already in the metadata.
    pub present: u64,
    /// Blobs passed over for a newer blob of the same key.
    pub superseded: u64,
    /// Blobs without a valid header, whose header's parameters do not hash to
    /// its key, or whose bytes fail their hash: reported, not restored.
    pub invalid: Vec<(String, String)>,
    /// Stored bytes of the restored entries.
    pub bytes: u64,
    /// Entries whose value lived inline in lost or damaged metadata: no blob
    /// file holds them, so they are not restored. Reported by the backend
    /// ([`MetadataBackend::inline_lost`]), whose own repair of that metadata
    /// (at open) found them.
    pub inline_lost: InlineLoss,
    /// How long it took.
    pub elapsed: Duration,
}

/// Entries whose value was stored inline in metadata that was lost or
/// damaged. Their bytes were in the metadata alone, with no blob file to
/// rebuild them from (a backend holding small values inline trades that for
/// faster puts; the `json` backend's `inline_values = false` keeps every value
/// in a file).
///
/// Displayed as the sentence a report prints, empty when nothing was lost:
///
/// ```
/// use cacheness_core::ops::InlineLoss;
///
/// assert_eq!(InlineLoss::default().to_string(), "");
/// assert_eq!(
///     InlineLoss::new(3, false).to_string(),
///     "3 entries stored inline in the damaged metadata could not be recovered \
///      (no blob file holds them)"
/// );
/// assert!(InlineLoss::new(0, true).to_string().contains("if there were any"));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InlineLoss {
    /// Inline entries named by what could still be read of the damaged
    /// metadata whose values are gone.
    pub counted: u64,
    /// Whether metadata was lost that could not be read at all (a missing
    /// file, an unreadable part of one): entries stored inline there, if there
    /// were any, are gone uncounted.
    pub uncounted: bool,
}

impl InlineLoss {
    /// `counted` entries known lost; `uncounted`, whether more may be.
    pub fn new(counted: u64, uncounted: bool) -> Self {
        InlineLoss { counted, uncounted }
    }

    /// Whether nothing was lost.
    pub fn is_none(&self) -> bool {
        self.counted == 0 && !self.uncounted
    }

    /// Adds the losses of another repair.
    pub fn add(&mut self, other: InlineLoss) {
        self.counted = self.counted.saturating_add(other.counted);
        self.uncounted |= other.uncounted;
    }
}

impl std::fmt::Display for InlineLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.counted == 0 {
            if self.uncounted {
                f.write_str(
                    "entries stored inline in the lost metadata, if there were any, \
                     cannot be recovered (no blob file holds them)",
                )?;
            }
            return Ok(());
        }
        let (entries, them) = match self.counted {
            1 => ("entry", "it"),
            _ => ("entries", "them"),
        };
        write!(
            f,
            "{} {entries} stored inline in the damaged metadata could not be recovered \
             (no blob file holds {them})",
            self.counted
        )?;
        if self.uncounted {
            f.write_str("; more may have been in the parts that could not be read")?;
        }
        Ok(())
    }
}

/// What [`Cache::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// Expired entries removed.
    pub expired: u64,
    /// Blob files no entry referred to, removed.
    pub orphaned_blobs: u64,
    /// Whether orphaned blob files were not collected, because a marker of
    /// [`INCOMPLETE_METADATA_MARKERS`] says the metadata is being filled (a
    /// rebuild or a backend switch in progress, or cut short). Temp files are
    /// collected by age all the same.
    pub orphans_skipped: bool,
    /// Temporary files older than the grace period removed.
    pub temp_files: u64,
    /// Entries evicted to bring the cache under its size limit.
    pub evicted: u64,
    /// Stored bytes left.
    pub total_size: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// What [`migrate`] copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrateReport {
    /// Entries read from the source.
    pub entries: u64,
    /// Entries written to the target.
    pub copied: u64,
    /// Entries the target already had (an interrupted migration run again).
    pub already_present: u64,
    /// Inline values written out to blob files because the target cannot hold them.
    pub moved_to_blobs: u64,
    /// Stored bytes copied.
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// Visits every entry of `backend` page by page, so no backend holds a scan open
/// while the visitor writes.
fn for_each_entry(
    backend: &dyn MetadataBackend,
    mut visit: impl FnMut(Entry) -> Result<()>,
) -> Result<()> {
    let mut after = None;
    loop {
        let mut page = Vec::with_capacity(PAGE);
        let filter = ScanFilter {
            prefix: None,
            after,
            limit: Some(PAGE),
        };
        backend.scan(&filter, &mut |entry| {
            page.push(entry);
            ControlFlow::Continue(())
        })?;
        let full = page.len() == PAGE;
        after = page.last().map(|entry| entry.key);
        for entry in page {
            visit(entry)?;
        }
        if !full {
            return Ok(());
        }
    }
}

/// A blob file opened for checking: its header read (with a bound) and the
/// reader at the first stored byte.
struct HeadedBlob {
    header: BlobHeader,
    /// The file's length past the header: what it holds as stored bytes.
    payload_len: u64,
    reader: Box<dyn Read + Send>,
}

/// Opens blob `name` and reads its header, never more than the preamble
/// allows (a huge or sparse file at a blob's name costs nothing).
fn open_headed(blobs: &dyn BlobStore, name: &str) -> std::result::Result<Box<HeadedBlob>, Damage> {
    let stored = match blobs.open_stored(name) {
        Ok(Some(stored)) => stored,
        Ok(None) => return Err(Damage::Missing),
        Err(error) => return Err(Damage::Invalid(error.to_string())),
    };
    let len = stored.len;
    let mut reader = stored.reader;
    match read_header(&mut reader, len) {
        Ok((header, offset)) => Ok(Box::new(HeadedBlob {
            header,
            payload_len: len - offset,
            reader,
        })),
        Err(error) => Err(Damage::Invalid(error.to_string())),
    }
}

/// Checks the stored bytes that follow a blob's header against `entry`, as
/// [`check::check_stored`] does, without holding them: the length first (a
/// file of another length is damage, read no further), then the hash as the
/// bytes stream by. Compressed bytes are read whole to check that they
/// decompress: their length is the file's, checked first.
fn check_payload(entry: &Entry, blob: Box<HeadedBlob>) -> std::result::Result<(), String> {
    let HeadedBlob {
        payload_len,
        reader,
        ..
    } = *blob;
    check::check_length_and_hash(entry, payload_len, || None)?;
    let mut payload = reader.take(payload_len);
    let unreadable = |error: io::Error| format!("cannot read the stored bytes: {error}");
    if entry.compression == Compression::Lz4 {
        let mut stored = Vec::new();
        let capacity = usize::try_from(payload_len)
            .map_err(|_| format!("{payload_len} stored bytes do not fit in memory"))?;
        stored
            .try_reserve_exact(capacity)
            .map_err(|_| format!("{payload_len} stored bytes do not fit in memory"))?;
        payload.read_to_end(&mut stored).map_err(unreadable)?;
        return check::check_stored(entry, &stored, true).map(drop);
    }
    let mut hasher = blake3::Hasher::new();
    let read = io::copy(&mut payload, &mut hasher).map_err(unreadable)?;
    check::check_length_and_hash(entry, read, || {
        Some(ContentHash(*hasher.finalize().as_bytes()))
    })?;
    // Uncompressed here (compressed bytes returned above): no bytes needed.
    check::check_raw(entry, &[]).map(drop)
}

impl<C: Codec> Cache<C> {
    /// [`verify_with`](Self::verify_with) with the default grace period;
    /// `repair` removes what is found damaged.
    pub fn verify(&self, repair: bool, progress: &mut dyn FnMut(Progress)) -> Result<VerifyReport> {
        self.verify_with(&VerifyOptions::new().repair(repair), progress)
    }

    /// Checks every entry's bytes against its hash and its blob file's header
    /// against the entry, and lists corrupted entries, entries whose blob is
    /// missing, entries the backend cannot read, and blob files no entry refers
    /// to that are older than `options.grace`. With `options.repair`, removes
    /// the damaged and unreadable entries and the orphaned files.
    ///
    /// A blob file is never read whole to be checked: its header is read with
    /// a bound, its length compared with the entry's before any stored byte is
    /// read (a file of another length is corrupted), and its bytes hashed as
    /// they stream by.
    ///
    /// While a marker of [`INCOMPLETE_METADATA_MARKERS`] is in the cache dir
    /// (a rebuild or backend switch in progress or cut short), no blob file is
    /// taken for an orphan: [`VerifyReport::orphans_skipped`] says so.
    ///
    /// Safe beside writers in this and other processes: an entry found damaged
    /// is looked up again and counts only if it is still the same version (a
    /// put or removal that raced with the check is not damage), and a blob file
    /// younger than the grace period may be a put that has not committed its
    /// entry yet, so it is never orphaned.
    pub fn verify_with(
        &self,
        options: &VerifyOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<VerifyReport> {
        if options.repair {
            self.check_writable("repair")?;
        }
        let started = Instant::now();
        let mut report = VerifyReport {
            repaired: options.repair,
            ..VerifyReport::default()
        };
        // Blobs are listed before entries are scanned, so a put racing with the
        // scan makes its blob look referenced or unlisted, never orphaned...
        let listed = self.list_blobs()?;
        let total = self.backend().len().ok();
        let mut referenced = HashSet::new();
        let mut suspects = Vec::new();
        for_each_entry(self.backend(), |entry| {
            report.entries += 1;
            report.bytes += entry.stored_size;
            if let Some(name) = entry.blob_name() {
                referenced.insert(name.to_owned());
            }
            if let Err(damage) = self.check_entry(&entry) {
                suspects.push((entry, damage));
            }
            progress(Progress {
                phase: "entries",
                done: report.entries,
                total,
            });
            Ok(())
        })?;
        // A suspect that is no longer the key's current version changed under
        // us (replaced, removed, expired): not damage.
        let mut damaged = Vec::new();
        for (entry, damage) in suspects {
            let current = self.backend().get(&entry.key)?;
            if !current.is_some_and(|current| current.same_version(&entry)) {
                continue;
            }
            match &damage {
                Damage::Missing => {
                    tracing::warn!(key = %entry.key, blob = ?entry.blob_name(), "verify: blob file is missing");
                    report.missing.push(entry.key);
                }
                Damage::Invalid(reason) => {
                    tracing::warn!(key = %entry.key, blob = ?entry.blob_name(), %reason, "verify: entry is damaged");
                    report.corrupted.push(entry.key);
                }
            }
            damaged.push(entry);
        }
        self.backend().unreadable(&mut |key, reason| {
            tracing::warn!(%key, %reason, "verify: the backend cannot read this entry");
            report.unreadable.push((key, reason));
        })?;
        let unreadable_keys: HashSet<CacheKey> =
            report.unreadable.iter().map(|(key, _)| *key).collect();
        // ...except one whose entry was put after the scan passed its key.
        if let Some(marker) = self.incomplete_metadata() {
            tracing::info!(
                marker,
                "verify: the metadata is being filled; orphaned blob files not looked for"
            );
            report.orphans_skipped = true;
        } else {
            report.orphaned =
                self.unreferenced(&listed, &referenced, &unreadable_keys, options.grace)?;
        }
        if options.repair {
            // Entries first, then files: a kill in between leaves at most an
            // orphaned file for the next gc.
            for entry in &damaged {
                if let Some(gone) = self.backend().remove_if_unchanged(entry)? {
                    self.delete_blob(&gone);
                }
            }
            for (key, _) in &report.unreadable {
                self.backend().remove_unreadable(key)?;
            }
            if let Some(blobs) = self.blob_store() {
                for name in &report.orphaned {
                    blobs.remove(name)?;
                }
            }
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Checks one entry: its signature, its stored bytes and, for a blob, that
    /// the file's header describes it.
    fn check_entry(&self, entry: &Entry) -> std::result::Result<(), Damage> {
        if !self.signer().is_none_or(|signer| signer.verify(entry)) {
            return Err(Damage::Invalid("signature does not match the entry".into()));
        }
        match &entry.location {
            Location::Inline(bytes) => check::check_stored(entry, bytes, true)
                .map(drop)
                .map_err(Damage::Invalid),
            Location::Blob(name) => {
                check::check_blob_name(entry, name).map_err(Damage::Invalid)?;
                let Some(blobs) = self.blob_store() else {
                    return Err(Damage::Invalid("the cache has no blob store".into()));
                };
                let blob = open_headed(blobs, name)?;
                check::check_header(entry, &blob.header).map_err(Damage::Invalid)?;
                check_payload(entry, blob).map_err(Damage::Invalid)
            }
        }
    }

    /// Recreates metadata from the headers of the blob files, after the metadata
    /// was lost or damaged. For each key the newest valid blob wins; blobs without
    /// a valid header, whose header's parameters do not hash to its key, or whose
    /// bytes fail their hash, are reported and left alone. Entries already in
    /// the metadata are kept. Values that lived inline in the lost metadata
    /// cannot be recovered (they had no file): [`RebuildReport::inline_lost`]
    /// says how many the backend's own repair of it found gone.
    ///
    /// A blob file is never read whole to be checked: its header is read with
    /// a bound (64 MiB at most), a file whose length is not the header's plus
    /// the stored size the header gives is invalid before any stored byte is
    /// read, and the stored bytes are hashed as they stream by.
    ///
    /// While it runs, [`REBUILD_MARKER`] is in the cache dir (created 0600
    /// before anything is read; an error if something that is not a regular
    /// file is at its name), so `gc` and `verify` in any process take no blob
    /// file for an orphan while the metadata is still being filled. It is
    /// removed when the rebuild has finished, and only then: a rebuild that
    /// fails or is killed leaves it, and orphans stay uncollected until the
    /// next rebuild (or the facade's open, which runs one when it finds the
    /// marker) finishes the job.
    pub fn rebuild(&self, progress: &mut dyn FnMut(Progress)) -> Result<RebuildReport> {
        self.check_writable("rebuild")?;
        let marker = self.create_rebuild_marker()?;
        let started = Instant::now();
        let mut report = RebuildReport::default();
        let names = self.list_blobs()?;
        let total = Some(names.len() as u64);
        let mut newest: BTreeMap<CacheKey, Entry> = BTreeMap::new();
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        for name in names {
            report.blobs += 1;
            progress(Progress {
                phase: "blobs",
                done: report.blobs,
                total,
            });
            let Some(blobs) = self.blob_store() else {
                break;
            };
            let blob = match open_headed(blobs, &name) {
                Ok(blob) => blob,
                // Gone since it was listed.
                Err(Damage::Missing) => continue,
                // No valid header, not a regular file (swapped in since the
                // listing), unreadable: reported, not restored, and the rest
                // goes on.
                Err(Damage::Invalid(reason)) => {
                    report.invalid.push((name, reason));
                    continue;
                }
            };
            let header = blob.header.clone();
            let checked = BlobName::parse(&name)
                .and_then(|parsed| check::entry_of_blob(&parsed, header, blob.payload_len))
                .map_err(|error| error.to_string())
                .and_then(|entry| {
                    check_payload(&entry, blob)?;
                    if self.signer().is_none_or(|signer| signer.verify(&entry)) {
                        Ok(entry)
                    } else {
                        Err("signature does not match the header".to_owned())
                    }
                });
            let entry = match checked {
                Ok(entry) => entry,
                Err(reason) => {
                    report.invalid.push((name, reason));
                    continue;
                }
            };
            match newest.get(&entry.key) {
                None => {
                    newest.insert(entry.key, entry);
                }
                Some(current) => {
                    report.superseded += 1;
                    if supersedes(&entry, current) {
                        newest.insert(entry.key, entry);
                    }
                }
            }
        }
        for (key, entry) in newest {
            let name = entry.blob_name().unwrap_or_default().to_owned();
            match self.backend().get(&key)? {
                Some(existing) if existing.blob_name() == Some(name.as_str()) => {
                    report.present += 1
                }
                Some(existing) if existing.created_at >= entry.created_at => report.present += 1,
                _ => {
                    let stored_size = entry.stored_size;
                    let restored_at = entry.created_at;
                    match self.backend().put(entry)? {
                        Some(replaced) if replaced.blob_name() == Some(name.as_str()) => {}
                        Some(replaced) if replaced.created_at >= restored_at => {
                            // A put committed between the look-up above and this
                            // put: its entry is the newer one. Put it back and
                            // keep its blob; the restored one is left to gc.
                            self.backend().put(replaced)?;
                            report.present += 1;
                            continue;
                        }
                        Some(replaced) => self.delete_blob(&replaced),
                        None => {}
                    }
                    report.bytes += stored_size;
                    report.restored += 1;
                }
            }
        }
        self.backend().flush()?;
        report.inline_lost = self.backend().inline_lost();
        if let Some(marker) = marker {
            match std::fs::remove_file(&marker) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    return Err(crate::Error::io("remove rebuild marker", &marker, error));
                }
                _ => {}
            }
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Creates [`REBUILD_MARKER`] in the cache dir (a cache without a dir has
    /// no blob files to protect) and returns its path.
    fn create_rebuild_marker(&self) -> Result<Option<std::path::PathBuf>> {
        let Some(dir) = self.dir() else {
            return Ok(None);
        };
        let path = dir.join(REBUILD_MARKER);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        crate::files::open_regular(&path, &options)
            .map_err(|source| crate::Error::io("create rebuild marker", &path, source))?;
        Ok(Some(path))
    }

    /// The marker of [`INCOMPLETE_METADATA_MARKERS`] present in the cache dir.
    fn incomplete_metadata(&self) -> Option<&'static str> {
        self.dir().and_then(incomplete_metadata_marker)
    }

    /// [`gc_with`](Self::gc_with) with the default grace period.
    pub fn gc(&self, progress: &mut dyn FnMut(Progress)) -> Result<GcReport> {
        self.gc_with(&GcOptions::default(), progress)
    }

    /// Removes expired entries, orphaned blob files and temporary files older
    /// than `options.grace`, then enforces the size limit.
    ///
    /// Safe beside writers in this and other processes, and if killed at any
    /// point: it deletes an entry's blob only after the entry is removed (and
    /// only if the entry was unchanged), and a file that no entry refers to
    /// only once it is older than the grace period, so a put that has written
    /// its blob but not yet committed its entry keeps it. A kill leaves at most
    /// files that the next gc collects.
    ///
    /// While a marker of [`INCOMPLETE_METADATA_MARKERS`] is in the cache dir
    /// (a rebuild or backend switch in progress or cut short), no blob file is
    /// taken for an orphan: [`GcReport::orphans_skipped`] says so. Expired
    /// entries, temp files and the size limit are handled as always.
    pub fn gc_with(
        &self,
        options: &GcOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<GcReport> {
        let started = Instant::now();
        let mut report = GcReport {
            expired: self.cleanup_expired()?,
            ..GcReport::default()
        };
        progress(Progress {
            phase: "expired",
            done: report.expired,
            total: Some(report.expired),
        });
        let verified = if let Some(marker) = self.incomplete_metadata() {
            tracing::info!(
                marker,
                "gc: the metadata is being filled; orphaned blob files not collected"
            );
            report.orphans_skipped = true;
            Vec::new()
        } else {
            self.orphans(options.grace)?
        };
        if let Some(blobs) = self.blob_store() {
            for name in &verified {
                blobs.remove(name)?;
            }
            report.orphaned_blobs = verified.len() as u64;
            report.temp_files = blobs.collect_temp_files(options.grace)?;
        }
        progress(Progress {
            phase: "files",
            done: report.orphaned_blobs + report.temp_files,
            total: None,
        });
        report.evicted = self.enforce_limit_now()?;
        report.total_size = self.backend().total_size()?;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Blob files that no entry refers to and older than `grace` (rechecked
    /// against the metadata one by one, so a concurrent put's new blob is not
    /// counted).
    fn orphans(&self, grace: Duration) -> Result<Vec<String>> {
        let listed = self.list_blobs()?;
        let mut referenced = HashSet::new();
        for_each_entry(self.backend(), |entry| {
            if let Some(name) = entry.blob_name() {
                referenced.insert(name.to_owned());
            }
            Ok(())
        })?;
        let mut unreadable = HashSet::new();
        self.backend().unreadable(&mut |key, _| {
            unreadable.insert(key);
        })?;
        self.unreferenced(&listed, &referenced, &unreadable, grace)
    }

    /// The listed blobs not in `referenced`, older than `grace`, whose key has
    /// no unreadable entry (which may refer to them) and whose key's current
    /// entry does not refer to them either (looked up again, for puts that
    /// raced with the scan), sorted.
    ///
    /// The age is checked before the entry is looked up again: a blob older
    /// than the grace was written before the grace began, so it is no put in
    /// progress, and a put that committed since the scan is seen by the lookup.
    fn unreferenced(
        &self,
        listed: &HashSet<String>,
        referenced: &HashSet<String>,
        unreadable: &HashSet<CacheKey>,
        grace: Duration,
    ) -> Result<Vec<String>> {
        let Some(blobs) = self.blob_store() else {
            return Ok(Vec::new());
        };
        let mut orphans = Vec::new();
        for name in listed.difference(referenced) {
            let key = BlobName::parse(name).ok().map(|name| name.key());
            if key.is_some_and(|key| unreadable.contains(&key)) {
                continue;
            }
            if !older_than(blobs.modified(name), grace) {
                continue;
            }
            let now_referenced = key
                .map(|key| self.backend().get(&key))
                .transpose()?
                .flatten()
                .is_some_and(|entry| entry.blob_name() == Some(name.as_str()));
            if !now_referenced {
                orphans.push(name.clone());
            }
        }
        orphans.sort();
        Ok(orphans)
    }

    fn list_blobs(&self) -> Result<HashSet<String>> {
        let mut names = HashSet::new();
        if let Some(blobs) = self.blob_store() {
            blobs.list(&mut |name| {
                names.insert(name.to_owned());
            })?;
        }
        Ok(names)
    }
}

/// Copies every entry of `from` into `to`, in pages, reporting progress.
///
/// Blob files stay where they are (both backends describe the same cache dir);
/// values inline in `from` are written to `blobs` when `to` cannot hold inline
/// values. Entries `to` already has in the same version are skipped, so an
/// interrupted migration can simply be run again.
pub fn migrate(
    from: &dyn MetadataBackend,
    to: &dyn MetadataBackend,
    blobs: Option<&dyn BlobStore>,
    progress: &mut dyn FnMut(Progress),
) -> Result<MigrateReport> {
    let started = Instant::now();
    let mut report = MigrateReport::default();
    let total = from.len().ok();
    let target_inline = to.capabilities().inline_values;
    for_each_entry(from, |mut entry| {
        report.entries += 1;
        let present = to.get(&entry.key)?.is_some_and(|existing| {
            existing.same_version(&entry)
                || (existing.created_at == entry.created_at
                    && existing.content_hash == entry.content_hash)
        });
        if present {
            report.already_present += 1;
        } else {
            if let (Location::Inline(bytes), false) = (&entry.location, target_inline) {
                let Some(blobs) = blobs else {
                    return Err(crate::Error::Config {
                        field: "dir",
                        reason: format!(
                            "the {} backend cannot hold inline values and there is no blob store to move them to",
                            to.name()
                        ),
                    });
                };
                let header = BlobHeader::from_entry(&entry).encode();
                let name = blobs.write(&entry.key, &[&header, bytes])?;
                entry.location = Location::Blob(name);
                report.moved_to_blobs += 1;
            }
            report.bytes += entry.stored_size;
            to.put(entry)?;
            report.copied += 1;
        }
        progress(Progress {
            phase: "entries",
            done: report.entries,
            total,
        });
        Ok(())
    })?;
    to.flush()?;
    report.elapsed = started.elapsed();
    Ok(report)
}
