//! Operating a cache: verify stored bytes, rebuild metadata from blob files, collect
//! garbage, and migrate entries between backends. Each returns a report of what it
//! did and calls a progress callback as it goes.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::backend::{MetadataBackend, ScanFilter};
use crate::blob::{BlobHeader, BlobStore, payload_offset, validate_blob_name};
use crate::cache::Cache;
use crate::codec::Codec;
use crate::entry::{Compression, ContentHash, Entry, Location};
use crate::error::Result;
use crate::key::CacheKey;

/// Entries are read from a backend in pages of this many.
const PAGE: usize = 1_000;

/// Where a long operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// What [`Cache::verify`] found (and, with `repair`, removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Stored bytes checked.
    pub bytes: u64,
    /// Entries whose bytes fail their size, hash or compression check.
    pub corrupted: Vec<CacheKey>,
    /// Entries whose blob file is missing.
    pub missing: Vec<CacheKey>,
    /// Blob files that no entry refers to.
    pub orphaned: Vec<String>,
    /// Whether the damage found was removed.
    pub repaired: bool,
    /// How long it took.
    pub elapsed: Duration,
}

impl VerifyReport {
    /// Whether nothing was found wrong.
    pub fn is_clean(&self) -> bool {
        self.corrupted.is_empty() && self.missing.is_empty() && self.orphaned.is_empty()
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
    /// Blobs without a valid header, or whose bytes fail their hash: reported, not restored.
    pub invalid: Vec<(String, String)>,
    /// Stored bytes of the restored entries.
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// What [`Cache::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// Expired entries removed.
    pub expired: u64,
    /// Blob files no entry referred to, removed.
    pub orphaned_blobs: u64,
    /// Temporary files of dead writers removed.
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

/// Checks stored bytes against an entry: size, hash and that they decompress.
fn check_stored(entry: &Entry, stored: &[u8]) -> std::result::Result<(), String> {
    if stored.len() as u64 != entry.stored_size {
        return Err(format!(
            "{} stored bytes, expected {}",
            stored.len(),
            entry.stored_size
        ));
    }
    if ContentHash::of(stored) != entry.content_hash {
        return Err("content hash mismatch".into());
    }
    if entry.compression == Compression::Lz4 {
        let raw =
            lz4_flex::decompress_size_prepended(stored).map_err(|error| format!("lz4: {error}"))?;
        if raw.len() as u64 != entry.raw_size {
            return Err("decompressed size differs from the entry".into());
        }
    }
    Ok(())
}

/// The key a blob name belongs to (`ab/<key>-<nonce>`).
fn key_of_blob(name: &str) -> Option<CacheKey> {
    validate_blob_name(name).ok()?;
    name.get(3..35)?.parse().ok()
}

impl<C: Codec> Cache<C> {
    /// Checks every entry's bytes against its hash and lists corrupted entries,
    /// entries whose blob is missing, and blob files no entry refers to. With
    /// `repair`, removes the damaged entries and the orphaned files.
    pub fn verify(&self, repair: bool, progress: &mut dyn FnMut(Progress)) -> Result<VerifyReport> {
        let started = Instant::now();
        let mut report = VerifyReport {
            repaired: repair,
            ..VerifyReport::default()
        };
        // Blobs are listed before entries are scanned, so a put racing with the
        // scan makes its blob look referenced or unlisted, never orphaned...
        let listed = self.list_blobs()?;
        let total = self.backend().len().ok();
        let mut referenced = HashSet::new();
        let mut damaged = Vec::new();
        for_each_entry(self.backend(), |entry| {
            report.entries += 1;
            report.bytes += entry.stored_size;
            let signed = self.signer().is_none_or(|signer| signer.verify(&entry));
            let outcome = match &entry.location {
                _ if !signed => Err(Some("signature does not match the entry".to_owned())),
                Location::Inline(bytes) => check_stored(&entry, bytes).map_err(Some),
                Location::Blob(name) if key_of_blob(name) != Some(entry.key) => {
                    referenced.insert(name.clone());
                    Err(Some("blob belongs to another key".to_owned()))
                }
                Location::Blob(name) => {
                    referenced.insert(name.clone());
                    match self.read_blob_payload(name) {
                        Ok(Some(stored)) => check_stored(&entry, &stored).map_err(Some),
                        Ok(None) => Err(None),
                        Err(reason) => Err(Some(reason)),
                    }
                }
            };
            match outcome {
                Ok(()) => {}
                Err(Some(_)) => {
                    report.corrupted.push(entry.key);
                    damaged.push(entry);
                }
                Err(None) => {
                    report.missing.push(entry.key);
                    damaged.push(entry);
                }
            }
            progress(Progress {
                phase: "entries",
                done: report.entries,
                total,
            });
            Ok(())
        })?;
        // ...except one whose entry was put after the scan passed its key.
        report.orphaned = self.unreferenced(&listed, &referenced)?;
        if repair {
            for entry in &damaged {
                if let Some(gone) = self.backend().remove_if_unchanged(entry)? {
                    self.remove_blob_of(&gone);
                }
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

    /// Recreates metadata from the headers of the blob files, after the metadata
    /// was lost or damaged. For each key the newest valid blob wins; blobs without
    /// a valid header, or whose bytes fail their hash, are reported and left alone.
    /// Entries already in the metadata are kept. Values that lived inline in the
    /// lost metadata cannot be recovered (they had no file).
    pub fn rebuild(&self, progress: &mut dyn FnMut(Progress)) -> Result<RebuildReport> {
        let started = Instant::now();
        let mut report = RebuildReport::default();
        let names = self.list_blobs()?;
        let total = Some(names.len() as u64);
        let mut newest: BTreeMap<CacheKey, (BlobHeader, String)> = BTreeMap::new();
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
            let Some(file) = blobs.read_stored(&name)? else {
                continue;
            };
            let header = match BlobHeader::decode(&file) {
                Ok((header, offset)) => {
                    let entry = header.clone().into_entry(name.clone());
                    let signed = self.signer().is_none_or(|signer| signer.verify(&entry));
                    let checked = check_stored(&entry, &file[offset..]).and_then(|()| {
                        if signed {
                            Ok(())
                        } else {
                            Err("signature does not match the header".to_owned())
                        }
                    });
                    match checked {
                        Ok(()) if key_of_blob(&name) == Some(header.key) => header,
                        Ok(()) => {
                            report
                                .invalid
                                .push((name, "blob name does not match its header's key".into()));
                            continue;
                        }
                        Err(reason) => {
                            report.invalid.push((name, reason));
                            continue;
                        }
                    }
                }
                Err(reason) => {
                    report.invalid.push((name, reason));
                    continue;
                }
            };
            let newer = newest
                .get(&header.key)
                .is_none_or(|(current, _)| header.created_at > current.created_at);
            if newer {
                if newest.insert(header.key, (header, name)).is_some() {
                    report.superseded += 1;
                }
            } else {
                report.superseded += 1;
            }
        }
        for (key, (header, name)) in newest {
            match self.backend().get(&key)? {
                Some(existing) if existing.blob_name() == Some(name.as_str()) => {
                    report.present += 1
                }
                Some(existing) if existing.created_at >= header.created_at => report.present += 1,
                _ => {
                    report.bytes += header.stored_size;
                    let entry = header.into_entry(name);
                    if let Some(replaced) = self.backend().put(entry)? {
                        self.remove_blob_of(&replaced);
                    }
                    report.restored += 1;
                }
            }
        }
        self.backend().flush()?;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Removes expired entries, orphaned blob files and temporary files of dead
    /// writers, then enforces the size limit.
    pub fn gc(&self, progress: &mut dyn FnMut(Progress)) -> Result<GcReport> {
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
        let verified = self.orphans()?;
        if let Some(blobs) = self.blob_store() {
            for name in &verified {
                blobs.remove(name)?;
            }
            report.orphaned_blobs = verified.len() as u64;
            report.temp_files = blobs.collect_temp_files(crate::blob::GRACE_PERIOD)?;
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

    /// Blob files that no entry refers to (rechecked against the metadata one by
    /// one, so a concurrent put's new blob is not counted).
    fn orphans(&self) -> Result<Vec<String>> {
        let listed = self.list_blobs()?;
        let mut referenced = HashSet::new();
        for_each_entry(self.backend(), |entry| {
            if let Some(name) = entry.blob_name() {
                referenced.insert(name.to_owned());
            }
            Ok(())
        })?;
        self.unreferenced(&listed, &referenced)
    }

    /// The listed blobs not in `referenced` whose key's current entry does not
    /// refer to them either (looked up again, for puts that raced with the scan),
    /// sorted.
    fn unreferenced(
        &self,
        listed: &HashSet<String>,
        referenced: &HashSet<String>,
    ) -> Result<Vec<String>> {
        let mut orphans = Vec::new();
        for name in listed.difference(referenced) {
            let now_referenced = key_of_blob(name)
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

    /// The stored bytes of a blob: `Ok(None)` if it is missing, `Err(reason)` if it
    /// is not a valid blob file.
    fn read_blob_payload(&self, name: &str) -> std::result::Result<Option<Vec<u8>>, String> {
        let Some(blobs) = self.blob_store() else {
            return Err("the cache has no blob store".into());
        };
        match blobs.read_stored(name) {
            Ok(Some(mut file)) => {
                let offset = payload_offset(&file)?;
                file.drain(..offset);
                Ok(Some(file))
            }
            Ok(None) => Ok(None),
            Err(error) => Err(error.to_string()),
        }
    }

    fn remove_blob_of(&self, entry: &Entry) {
        if let (Some(blobs), Some(name)) = (self.blob_store(), entry.blob_name())
            && let Err(error) = blobs.remove(name)
        {
            tracing::warn!(key = %entry.key, %error, "could not delete blob");
        }
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
