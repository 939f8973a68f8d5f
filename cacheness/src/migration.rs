//! Switching a cache dir between disk backends: when a cache is opened with one
//! backend and the dir holds only the other's metadata, the entries are migrated
//! once, under a lock that other processes opening the dir wait on.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use cacheness_core::{Durability, Error, LocalBlobStore, MetadataBackend, Result, ops};

/// Written before a migration starts and removed when it ends: found at open, it
/// means a migration was interrupted and is resumed.
const IN_PROGRESS: &str = ".cacheness-migrating";
/// Serializes migrations between processes.
const LOCK: &str = ".cacheness-migrate.lock";

/// The metadata file of a disk backend.
fn metadata_file(dir: &Path, backend: &str) -> Option<PathBuf> {
    match backend {
        "sqlite" => Some(dir.join("cache_metadata.db")),
        "json" => Some(dir.join("metadata.json")),
        _ => None,
    }
}

fn has_metadata(dir: &Path, backend: &str) -> bool {
    match backend {
        "json" => dir.join("metadata.json").exists() || dir.join("metadata.journal").exists(),
        other => metadata_file(dir, other).is_some_and(|path| path.exists()),
    }
}

/// Marker naming a migration that completed, so the leftover source metadata is
/// not reported at every open.
fn done_marker(dir: &Path, from: &str, to: &str) -> PathBuf {
    dir.join(format!(".cacheness-migrated-{from}-to-{to}"))
}

/// What opening `target` in `dir` must do about the other disk backend's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Nothing to migrate.
    Nothing,
    /// Migrate from this backend, then open.
    From(&'static str),
}

/// Decides, before the target backend is opened (which creates its file), whether
/// entries must come over from the other disk backend.
pub(crate) fn plan(dir: &Path, target: &str) -> Plan {
    let other = match target {
        "sqlite" => "json",
        "json" => "sqlite",
        _ => return Plan::Nothing,
    };
    if !has_metadata(dir, other) {
        return Plan::Nothing;
    }
    if dir.join(IN_PROGRESS).exists() || !has_metadata(dir, target) {
        return Plan::From(other);
    }
    if !done_marker(dir, other, target).exists() {
        tracing::warn!(
            dir = %dir.display(),
            configured = target,
            other,
            "the cache dir holds metadata of both backends; using the configured one and leaving the other untouched"
        );
    }
    Plan::Nothing
}

/// Copies every entry of `source` into `target` under the dir's migration lock,
/// resumably: an interrupted migration is finished by the next open.
pub(crate) fn run(
    dir: &Path,
    from: &str,
    to: &str,
    source: &dyn MetadataBackend,
    target: &dyn MetadataBackend,
) -> Result<()> {
    let lock_path = dir.join(LOCK);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| Error::io("open migration lock", &lock_path, source))?;
    lock.lock()
        .map_err(|source| Error::io("lock for migration", &lock_path, source))?;
    let in_progress = dir.join(IN_PROGRESS);
    let done = done_marker(dir, from, to);
    if done.exists() && !in_progress.exists() {
        // Another process finished it while we waited for the lock.
        return Ok(());
    }
    fs::write(&in_progress, format!("{from} -> {to}\n"))
        .map_err(|source| Error::io("mark migration", &in_progress, source))?;
    tracing::info!(dir = %dir.display(), from, to, "migrating cache metadata");
    let blobs = LocalBlobStore::open(dir, Durability::Flush)?;
    let report = ops::migrate(source, target, Some(&blobs), &mut |progress| {
        if progress.done.is_multiple_of(1_000) {
            tracing::info!(done = progress.done, total = ?progress.total, "migrating");
        }
    })?;
    File::create(&done).map_err(|source| Error::io("mark migration done", &done, source))?;
    fs::remove_file(&in_progress)
        .map_err(|source| Error::io("unmark migration", &in_progress, source))?;
    tracing::info!(
        dir = %dir.display(),
        from,
        to,
        entries = report.entries,
        copied = report.copied,
        elapsed = ?report.elapsed,
        "migrated cache metadata; the old metadata is left in place"
    );
    Ok(())
}
