//! Which disk backend a cache dir belongs to, and switching it to the other one.
//!
//! A dir can hold the metadata of both disk backends: a migration copies the
//! entries and leaves the source's metadata in place. Which one is *current* is
//! written down, so no open, command or `gc` ever works on the stale copy:
//!
//! - `.cacheness-migrating` (contents `FROM -> TO`) exists from before the target's
//!   metadata is created until the copy is complete: while it exists, `FROM` is
//!   current and the next writable open with `TO` runs the migration again.
//! - `.cacheness-migrated-FROM-to-TO` says the last completed migration went to
//!   `TO`. At most one such marker exists: a migration removes the others before
//!   it writes its own.
//!
//! Every migration runs under an exclusive lock on `.cacheness-migrate.lock`, taken
//! before the target's metadata is opened, so a process killed at any step leaves
//! either the in-progress marker (the next open redoes the copy) or the done
//! marker (the copy is whole). Marker and lock files are opened with
//! [`open_regular`] (no symlink is followed, nothing but a regular file is opened)
//! and created 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use cacheness_core::files::{open_regular, refuse_irregular};
use cacheness_core::ops::{MigrateReport, Progress};
use cacheness_core::{Durability, Error, LocalBlobStore, MetadataBackend, Result, ops};

/// Written before a migration creates its target and removed when it ends.
const IN_PROGRESS: &str = ".cacheness-migrating";
/// Serializes migrations between processes.
const LOCK: &str = ".cacheness-migrate.lock";
/// The disk backends, whose metadata lives in the cache dir.
const DISK_BACKENDS: [&str; 2] = ["json", "sqlite"];

/// Whether `backend`'s metadata is in `dir`. A json journal that is empty and has
/// no snapshot beside it holds no entry, so it does not count: an empty file
/// planted beside a sqlite cache must not make the dir look like two caches.
fn has_metadata(dir: &Path, backend: &str) -> bool {
    match backend {
        "sqlite" => dir.join("cache_metadata.db").exists(),
        "json" => {
            dir.join("metadata.json").exists()
                || fs::symlink_metadata(dir.join("metadata.journal"))
                    .is_ok_and(|metadata| metadata.len() > 0)
        }
        _ => false,
    }
}

fn done_marker(dir: &Path, from: &str, to: &str) -> PathBuf {
    dir.join(format!(".cacheness-migrated-{from}-to-{to}"))
}

fn the_other(backend: &str) -> Option<&'static str> {
    match backend {
        "sqlite" => Some("json"),
        "json" => Some("sqlite"),
        _ => None,
    }
}

fn disk_backend(name: &str) -> Option<&'static str> {
    DISK_BACKENDS.into_iter().find(|known| *known == name)
}

/// A marker's path, checked to be missing or a regular file.
fn marker_exists(path: &Path) -> Result<bool> {
    refuse_irregular(path).map_err(|source| Error::io("inspect migration marker", path, source))?;
    Ok(path.exists())
}

/// The migration an in-progress marker names, if there is one.
fn in_progress(dir: &Path) -> Result<Option<(&'static str, &'static str)>> {
    let path = dir.join(IN_PROGRESS);
    let mut text = String::new();
    match open_regular(&path, OpenOptions::new().read(true)) {
        Ok(file) => {
            file.take(64)
                .read_to_string(&mut text)
                .map_err(|source| Error::io("read migration marker", &path, source))?;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::io("read migration marker", &path, source)),
    }
    let parsed = text.trim().split_once(" -> ").and_then(|(from, to)| {
        let (from, to) = (disk_backend(from.trim())?, disk_backend(to.trim())?);
        (from != to).then_some((from, to))
    });
    parsed.map(Some).ok_or_else(|| Error::Corrupted {
        what: "migration marker",
        path,
        reason: format!("expected `json -> sqlite` or `sqlite -> json`, found {text:?}"),
    })
}

/// The backend whose metadata is authoritative in `dir`: see the module docs.
/// `Ok(None)` when the dir holds no metadata; an error when it holds both
/// backends' metadata and nothing says which is current.
pub(crate) fn current_backend(dir: &Path) -> Result<Option<&'static str>> {
    if let Some((from, _)) = in_progress(dir)? {
        return Ok(Some(from));
    }
    let present: Vec<&'static str> = DISK_BACKENDS
        .into_iter()
        .filter(|backend| has_metadata(dir, backend))
        .collect();
    match present.as_slice() {
        [] => Ok(None),
        [only] => Ok(Some(only)),
        _ => {
            let mut completed = Vec::new();
            for from in DISK_BACKENDS {
                let to = the_other(from).expect("a disk backend has another");
                if marker_exists(&done_marker(dir, from, to))? {
                    completed.push(to);
                }
            }
            match completed.as_slice() {
                [to] => Ok(Some(to)),
                _ => Err(Error::Config {
                    field: "dir",
                    reason: format!(
                        "{} holds both json metadata (metadata.json/metadata.journal) and sqlite \
                         metadata (cache_metadata.db) and no marker says which is current; move \
                         the stale one away",
                        dir.display()
                    ),
                }),
            }
        }
    }
}

/// The dir's migration lock, held until dropped.
pub(crate) struct MigrationLock {
    file: File,
}

impl MigrationLock {
    /// Blocks until this process holds the dir's migration lock.
    pub(crate) fn acquire(dir: &Path) -> Result<MigrationLock> {
        let path = dir.join(LOCK);
        let file = open_regular(&path, private_file().write(true).create(true))
            .map_err(|source| Error::io("open migration lock", &path, source))?;
        file.lock()
            .map_err(|source| Error::io("lock for migration", &path, source))?;
        Ok(MigrationLock { file })
    }
}

impl Drop for MigrationLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// A migration decided under the lock: from `from` into the backend being opened.
pub(crate) struct Pending {
    pub(crate) from: &'static str,
    pub(crate) to: &'static str,
    _lock: MigrationLock,
}

/// Called before a writable open of `target` creates its metadata: when the dir's
/// current backend is the other one (or a migration into `target` was cut short),
/// takes the migration lock and writes the in-progress marker, and returns the
/// migration to run once `target` is open. `None` when nothing is to be done.
///
/// With `allowed` false, a switch that would be needed is an error naming the
/// dir's backend instead (for tools that must never switch a cache by opening it).
pub(crate) fn prepare(dir: &Path, target: &str, allowed: bool) -> Result<Option<Pending>> {
    let Some(target) = disk_backend(target) else {
        return Ok(None);
    };
    if !needs_migration(dir, target)? {
        return Ok(None);
    }
    // Settling a switch away from `target` that was cut short keeps `target`
    // current: that is not a switch, and any writable open may do it.
    let settles_only = matches!(in_progress(dir)?, Some((_, to)) if to != target);
    if !allowed && !settles_only {
        let current = current_backend(dir)?.unwrap_or(target);
        return Err(Error::Config {
            field: "backend",
            reason: format!(
                "{} is a {current} cache, not {target}, and this open may not switch it",
                dir.display()
            ),
        });
    }
    let lock = MigrationLock::acquire(dir)?;
    // Another process may have finished (or undone) it while we waited.
    if !needs_migration(dir, target)? {
        return Ok(None);
    }
    let from = the_other(target).expect("a disk backend has another");
    match in_progress(dir)? {
        Some((_, to)) if to == target => {}
        Some(_) => {
            // A migration away from `target` was cut short: `target`'s metadata is
            // still complete and current, and the partial copy is stale. A done
            // marker says so before the in-progress one goes, or the dir would
            // hold both metadata sets with nothing naming the current one.
            mark_done(dir, from, target)?;
            remove_marker(&dir.join(IN_PROGRESS))?;
            sync_dir(dir)?;
            return Ok(None);
        }
        None => write_in_progress(dir, from, target)?,
    }
    Ok(Some(Pending {
        from,
        to: target,
        _lock: lock,
    }))
}

fn needs_migration(dir: &Path, target: &'static str) -> Result<bool> {
    match current_backend(dir) {
        Ok(current) => {
            Ok(current.is_some_and(|current| current != target) || in_progress(dir)?.is_some())
        }
        Err(Error::Config { reason, .. }) => {
            // Both metadata sets and no marker (a dir from before markers were
            // kept): the configured backend is used and the other left alone.
            tracing::warn!(dir = %dir.display(), configured = target, %reason, "using the configured backend");
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// Writes `FROM -> TO` to the in-progress marker: to a temp file, synced, then
/// renamed over the marker's name, so a reader never sees half of it.
fn write_in_progress(dir: &Path, from: &str, to: &str) -> Result<()> {
    let temp = dir.join(format!("{IN_PROGRESS}.tmp"));
    remove_marker(&temp)?;
    let mut file = open_regular(&temp, private_file().write(true).create_new(true))
        .map_err(|source| Error::io("mark migration", &temp, source))?;
    file.write_all(format!("{from} -> {to}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::io("mark migration", &temp, source))?;
    let path = dir.join(IN_PROGRESS);
    fs::rename(&temp, &path).map_err(|source| Error::io("mark migration", &path, source))?;
    sync_dir(dir)
}

/// Makes `.cacheness-migrated-FROM-to-TO` the one done marker: `to` is current.
fn mark_done(dir: &Path, from: &str, to: &str) -> Result<()> {
    for other_from in DISK_BACKENDS {
        let other_to = the_other(other_from).expect("a disk backend has another");
        if (other_from, other_to) != (from, to) {
            remove_marker(&done_marker(dir, other_from, other_to))?;
        }
    }
    let done = done_marker(dir, from, to);
    open_regular(&done, private_file().write(true).create(true))
        .and_then(|file| file.sync_all())
        .map_err(|source| Error::io("mark migration done", &done, source))
}

/// Removes a marker (a symlink planted there is removed, never followed).
fn remove_marker(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::io("remove migration marker", path, source)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| Error::io("sync cache dir", dir, source))
}

impl Pending {
    /// Copies every entry of `source` into `target` (emptied first: what it held
    /// is a stale copy or a partial one), then marks the migration done.
    pub(crate) fn run(
        self,
        dir: &Path,
        source: &dyn MetadataBackend,
        target: &dyn MetadataBackend,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<MigrateReport> {
        let (from, to) = (self.from, self.to);
        tracing::info!(dir = %dir.display(), from, to, "migrating cache metadata");
        // The blob files stay: the source's entries refer to them.
        let stale = target.clear()?;
        if !stale.is_empty() {
            tracing::info!(
                entries = stale.len(),
                to,
                "dropped the stale copy before migrating"
            );
        }
        let blobs = LocalBlobStore::open(dir, Durability::Flush)?;
        let report = ops::migrate(source, target, Some(&blobs), progress)?;
        target.flush()?;
        mark_done(dir, from, to)?;
        remove_marker(&dir.join(IN_PROGRESS))?;
        sync_dir(dir)?;
        tracing::info!(
            dir = %dir.display(),
            from,
            to,
            entries = report.entries,
            copied = report.copied,
            elapsed = ?report.elapsed,
            "migrated cache metadata; the old metadata is left in place"
        );
        Ok(report)
    }
}

/// A sqlite cache whose database is gone while its blob files are still there:
/// the open recreates the entries from the blob headers, as the json backend
/// does when its metadata is lost. Holds the migration lock, so processes opening
/// the dir at once rebuild it once.
pub(crate) struct RebuildAtOpen {
    _lock: MigrationLock,
}

impl RebuildAtOpen {
    /// `Some` when opening `backend` in `dir` must rebuild first.
    pub(crate) fn check(dir: &Path, backend: &str) -> Result<Option<RebuildAtOpen>> {
        let missing = |dir: &Path| {
            backend == "sqlite" && !has_metadata(dir, "sqlite") && !has_metadata(dir, "json")
        };
        if !missing(dir) || !has_blob_files(dir) {
            return Ok(None);
        }
        let lock = MigrationLock::acquire(dir)?;
        Ok(missing(dir).then_some(RebuildAtOpen { _lock: lock }))
    }

    /// Rebuilds the entries of `cache` from its blob files.
    pub(crate) fn run(self, cache: &cacheness_core::Cache) -> Result<()> {
        let report = cache.rebuild(&mut ops::no_progress)?;
        tracing::warn!(
            dir = ?cache.dir(),
            restored = report.restored,
            invalid = report.invalid.len(),
            "the sqlite metadata was missing; rebuilt it from the blob files"
        );
        Ok(())
    }
}

/// Whether `dir/blobs` holds any file in a shard directory.
fn has_blob_files(dir: &Path) -> bool {
    let Ok(shards) = fs::read_dir(dir.join("blobs")) else {
        return false;
    };
    shards.flatten().any(|shard| {
        shard.file_type().is_ok_and(|kind| kind.is_dir())
            && fs::read_dir(shard.path()).is_ok_and(|mut files| files.next().is_some())
    })
}
