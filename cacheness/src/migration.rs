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
use std::sync::Arc;
use std::time::{Duration, Instant};

use cacheness_core::files::{open_regular, refuse_irregular};
use cacheness_core::ops::{MigrateReport, Progress};
use cacheness_core::{Durability, Error, LocalBlobStore, MetadataBackend, Result, ops};

use crate::registry;

/// Written before a migration creates its target and removed when it ends.
/// While it exists (or the rebuild marker does), gc and verify in any process
/// take no blob for an orphan: the core knows both names.
const IN_PROGRESS: &str = ops::INCOMPLETE_METADATA_MARKERS[0];
/// Serializes migrations between processes.
const LOCK: &str = ".cacheness-migrate.lock";
/// The names of the disk backends (whose metadata lives in the cache dir),
/// from the registry.
fn disk_names() -> impl Iterator<Item = &'static str> {
    registry::disk_backends().map(|info| info.name)
}

/// Whether `backend`'s metadata is in `dir` (see [`BackendInfo::has_metadata`](crate::registry::BackendInfo::has_metadata)).
fn has_metadata(dir: &Path, backend: &str) -> bool {
    registry::disk_backend(backend).is_some_and(|info| info.has_metadata(dir))
}

fn done_marker(dir: &Path, from: &str, to: &str) -> PathBuf {
    dir.join(format!(".cacheness-migrated-{from}-to-{to}"))
}

/// The disk backend a switch from (or to) `backend` goes to (or comes from):
/// a switch is between the two disk backends.
fn the_other(backend: &str) -> Option<&'static str> {
    registry::disk_backend(backend)?;
    let mut others = disk_names().filter(|name| *name != backend);
    match (others.next(), others.next()) {
        (Some(other), None) => Some(other),
        _ => None,
    }
}

fn disk_backend(name: &str) -> Option<&'static str> {
    registry::disk_backend(name).map(|info| info.name)
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

/// An in-progress marker whose source still has metadata: one that names a
/// source with none was planted or outlived its source, and means nothing.
fn live_in_progress(dir: &Path) -> Result<Option<(&'static str, &'static str)>> {
    Ok(in_progress(dir)?.filter(|(from, _)| has_metadata(dir, from)))
}

/// The target of the one completed-switch marker, if exactly one exists.
fn last_switch_target(dir: &Path) -> Result<Option<&'static str>> {
    let mut completed = Vec::new();
    for from in disk_names() {
        let to = the_other(from).expect("a disk backend has another");
        if marker_exists(&done_marker(dir, from, to))? {
            completed.push(to);
        }
    }
    Ok(match completed.as_slice() {
        [to] => Some(to),
        _ => None,
    })
}

/// The backend whose metadata is authoritative in `dir`: see the module docs.
/// `Ok(None)` when the dir holds no metadata; an error when it holds both
/// backends' metadata and nothing says which is current. The current backend's
/// metadata may be missing (lost after a switch, while the stale source's is
/// still there): it stays the current one, to be rebuilt, never replaced by
/// the stale copy.
pub(crate) fn current_backend(dir: &Path) -> Result<Option<&'static str>> {
    if let Some((from, _)) = live_in_progress(dir)? {
        return Ok(Some(from));
    }
    let present: Vec<&'static str> = disk_names()
        .filter(|backend| has_metadata(dir, backend))
        .collect();
    match (present.as_slice(), last_switch_target(dir)?) {
        ([], _) => Ok(None),
        (_, Some(to)) => Ok(Some(to)),
        ([only], None) => Ok(Some(only)),
        (both, None) => Err(Error::Config {
            field: "dir",
            reason: format!(
                "{} holds both {} and no marker says which is current; move the stale one \
                 away",
                dir.display(),
                both.iter()
                    .filter_map(|name| registry::disk_backend(name))
                    .map(|info| {
                        let files = [info.metadata_files, info.metadata_logs].concat();
                        format!("{} metadata ({})", info.name, files.join("/"))
                    })
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        }),
    }
}

/// A writable handle's share of the dir: `.cacheness-migrate.lock` held shared
/// for as long as the handle is open. A switch needs it exclusive, so it cannot
/// run while any process has the cache open for writing with either backend:
/// such a process would go on writing into the metadata the switch leaves behind.
#[derive(Debug)]
pub(crate) struct DirLease {
    file: File,
    path: PathBuf,
}

/// How long a switch waits for other handles to close before it gives up.
const SWITCH_WAIT: Duration = Duration::from_secs(2);
/// How long an open waits for an exclusive hold that is not a switch.
const HOLD_WAIT: Duration = Duration::from_secs(10);

impl DirLease {
    /// Blocks while a switch holds the dir, then holds it shared.
    fn shared(dir: &Path) -> Result<DirLease> {
        let path = dir.join(LOCK);
        let file = open_regular(&path, private_file().write(true).create(true))
            .map_err(|source| Error::io("open migration lock", &path, source))?;
        let lease = DirLease { file, path };
        lease.wait_shared(dir)?;
        Ok(lease)
    }

    /// Takes the shared hold. While a switch holds the dir exclusive (its
    /// in-progress marker is there) it is waited for however long its copy
    /// takes; an exclusive hold without one (a cache being created, which takes
    /// milliseconds, or a stray lock) is waited for a bounded time, then named.
    fn wait_shared(&self, dir: &Path) -> Result<()> {
        let mut started = Instant::now();
        let mut told = false;
        loop {
            match self.file.try_lock_shared() {
                Ok(()) => return Ok(()),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(Error::io("lock cache dir", &self.path, source));
                }
            }
            if fs::symlink_metadata(dir.join(IN_PROGRESS)).is_ok() {
                if !told {
                    tracing::info!(dir = %dir.display(), "waiting for a backend switch to finish");
                    told = true;
                }
                started = Instant::now();
            } else if started.elapsed() >= HOLD_WAIT {
                return Err(Error::Config {
                    field: "dir",
                    reason: format!(
                        "{} is held exclusive by another process with no switch under way; \
                         if no cacheness process is running, something else holds that lock",
                        self.path.display()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Trades the shared hold for an exclusive one, waiting a bounded time for
    /// other handles to close. `Ok(false)` when, meanwhile, `still_needed`
    /// turned false (another opener did the switch): the hold is shared again.
    /// Fails naming the lock when other handles stay open.
    fn make_exclusive(&self, still_needed: impl Fn() -> Result<bool>) -> Result<bool> {
        self.file
            .unlock()
            .map_err(|source| Error::io("unlock cache dir", &self.path, source))?;
        let mut started = Instant::now();
        loop {
            match self.file.try_lock() {
                Ok(()) => return Ok(true),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(Error::io("lock cache dir", &self.path, source));
                }
            }
            if !still_needed()? {
                self.make_shared()?;
                return Ok(false);
            }
            if let Some(dir) = self.path.parent()
                && fs::symlink_metadata(dir.join(IN_PROGRESS)).is_ok()
            {
                // Another opener is running this switch: wait for it, however
                // long its copy takes, then decide again.
                self.wait_shared(dir)?;
                if !still_needed()? {
                    return Ok(false);
                }
                self.file
                    .unlock()
                    .map_err(|source| Error::io("unlock cache dir", &self.path, source))?;
                started = Instant::now();
                continue;
            }
            if started.elapsed() >= SWITCH_WAIT {
                self.make_shared()?;
                return Err(Error::Config {
                    field: "backend",
                    reason: format!(
                        "switching the backend of {} needs every other handle of the cache \
                         closed, and some process still has it open (it holds {} shared)",
                        self.path.parent().unwrap_or(&self.path).display(),
                        self.path.display()
                    ),
                });
            }
            // Other openers of the same backend let go within milliseconds.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Back to a shared hold after a switch.
    /// (Converting a lock is not atomic on Linux: another process may take it
    /// in between, so this waits as [`wait_shared`](Self::wait_shared) does.)
    fn make_shared(&self) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.wait_shared(dir)
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

/// What a writable open of a disk backend holds and still has to do.
pub(crate) struct Opening {
    /// Held for the handle's life (see [`DirLease`]).
    pub(crate) lease: Arc<DirLease>,
    /// A switch to run once the target backend is open.
    pub(crate) switch: Option<Pending>,
    /// A rebuild to run once the cache is open.
    pub(crate) rebuild: Option<RebuildAtOpen>,
    /// The dir held no metadata: the hold is exclusive until the backend has
    /// created its own ([`Opening::created`]).
    creating: bool,
}

impl Opening {
    /// Called once the backend is open (its metadata created): the hold goes
    /// back to shared.
    pub(crate) fn created(&self) -> Result<()> {
        if self.creating {
            self.lease.make_shared()?;
        }
        Ok(())
    }
}

/// A switch decided under the exclusive hold: from `from` into the backend
/// being opened.
pub(crate) struct Pending {
    pub(crate) from: &'static str,
    pub(crate) to: &'static str,
    lease: Arc<DirLease>,
}

/// Called before a writable open of the disk backend `target` creates its
/// metadata. Takes the dir's lease; settles markers a dead process left; when the
/// dir's current backend is the other one (or a switch into `target` was cut
/// short), makes the hold exclusive and writes the in-progress marker, and
/// returns the switch to run once `target` is open.
///
/// With `allowed` false, a switch that would be needed is an error naming the
/// dir's backend instead (for tools that must never switch a cache by opening it).
pub(crate) fn begin_open(dir: &Path, target: &'static str, allowed: bool) -> Result<Opening> {
    let lease = Arc::new(DirLease::shared(dir)?);
    // No switch runs while we hold the lease, so a marker found now was left by
    // a process that died (or planted): settle it.
    settle_markers(dir, target)?;
    let mut creating = false;
    if no_metadata(dir) {
        // The first backend to create its metadata claims the dir; it does so
        // alone, so two openers with different backends (or a memory handle
        // with its own blobs) never make two caches of one dir.
        if lease.make_exclusive(|| Ok(no_metadata(dir)))? {
            creating = no_metadata(dir);
            if !creating {
                lease.make_shared()?;
            }
        }
    }
    if creating || !needs_switch(dir, target)? {
        let rebuild = RebuildAtOpen::check(dir, target)?;
        return Ok(Opening {
            lease,
            switch: None,
            rebuild,
            creating,
        });
    }
    let current = current_backend(dir)?.unwrap_or(target);
    if !allowed {
        return Err(Error::Config {
            field: "backend",
            reason: format!(
                "{} is a {current} cache, not {target}, and this open may not switch it",
                dir.display()
            ),
        });
    }
    refuse_lost_source(dir, current, target)?;
    let exclusive = lease.make_exclusive(|| needs_switch(dir, target))?;
    // Another process may have switched it while we waited.
    if !exclusive || !needs_switch(dir, target)? {
        if exclusive {
            lease.make_shared()?;
        }
        check_current(dir, target)?;
        let rebuild = RebuildAtOpen::check(dir, target)?;
        return Ok(Opening {
            lease,
            switch: None,
            rebuild,
            creating: false,
        });
    }
    let from = the_other(target).expect("a disk backend has another");
    if live_in_progress(dir)?.is_none() {
        write_in_progress(dir, from, target)?;
    }
    Ok(Opening {
        lease: lease.clone(),
        switch: Some(Pending {
            from,
            to: target,
            lease,
        }),
        rebuild: None,
        creating: false,
    })
}

/// Holds the dir shared and checks it holds no disk cache, for a handle whose
/// metadata is in memory but whose blob files are in the dir: while it is
/// open, no disk cache can be created there (whose blobs its gc would take for
/// orphans).
pub(crate) fn begin_memory_open(dir: &Path, backend: &str) -> Result<Arc<DirLease>> {
    let lease = Arc::new(DirLease::shared(dir)?);
    refuse_disk_cache(dir, backend)?;
    Ok(lease)
}

/// A backend that keeps its metadata in memory sees none of a disk cache's
/// entries, so its gc would take every blob file for an orphan.
pub(crate) fn refuse_disk_cache(dir: &Path, backend: &str) -> Result<()> {
    match current_backend(dir)? {
        None => Ok(()),
        Some(current) => Err(Error::Config {
            field: "backend",
            reason: format!(
                "{} is a {current} cache; the {backend} backend keeps its metadata in memory \
                 and cannot hold its entries",
                dir.display()
            ),
        }),
    }
}

fn no_metadata(dir: &Path) -> bool {
    disk_names().all(|backend| !has_metadata(dir, backend))
}

/// After waiting for another process's switch: the dir must now be `target`'s.
fn check_current(dir: &Path, target: &str) -> Result<()> {
    match current_backend(dir)? {
        Some(current) if current != target => Err(Error::Config {
            field: "backend",
            reason: format!(
                "{} was switched to {current} by another process while this open waited",
                dir.display()
            ),
        }),
        _ => Ok(()),
    }
}

/// Removes an in-progress marker whose source has no metadata (planted, or
/// its source gone), and settles a switch away from `target` that was cut
/// short: `target`'s metadata is still whole and current, so a done marker
/// says so before the in-progress one goes.
///
/// With no metadata in the dir at all, markers describe nothing: they are
/// removed, so the metadata this open creates (or rebuilds) is current.
fn settle_markers(dir: &Path, target: &'static str) -> Result<()> {
    if no_metadata(dir) {
        for from in disk_names() {
            let to = the_other(from).expect("a disk backend has another");
            remove_marker(&done_marker(dir, from, to))?;
        }
        return remove_marker(&dir.join(IN_PROGRESS));
    }
    match in_progress(dir)? {
        Some((from, to)) if marker_exists(&done_marker(dir, from, to))? => {
            // The done marker is written before the in-progress one is removed:
            // with both, the copy was whole (or the marker was planted).
            remove_marker(&dir.join(IN_PROGRESS))?;
            sync_dir(dir)
        }
        Some((from, _)) if !has_metadata(dir, from) => {
            tracing::warn!(dir = %dir.display(), "removing a migration marker whose source has no metadata");
            remove_marker(&dir.join(IN_PROGRESS))?;
            sync_dir(dir)
        }
        Some((from, to)) if from == target => {
            mark_done(dir, to, from)?;
            remove_marker(&dir.join(IN_PROGRESS))?;
            sync_dir(dir)
        }
        _ => Ok(()),
    }
}

/// A switch from a backend whose metadata is gone would copy nothing and empty
/// the target: the lost metadata must be rebuilt with its own backend first.
fn refuse_lost_source(dir: &Path, current: &str, target: &str) -> Result<()> {
    if has_metadata(dir, current) {
        return Ok(());
    }
    Err(Error::Config {
        field: "backend",
        reason: format!(
            "{} is a {current} cache whose metadata is missing; open it with the {current} \
             backend, which rebuilds it from the blob files, before switching to {target}",
            dir.display()
        ),
    })
}

/// Both metadata sets with no marker naming the current one is an error: a
/// handle of each backend would each take the other's blobs for orphans.
fn needs_switch(dir: &Path, target: &'static str) -> Result<bool> {
    let current = current_backend(dir)?;
    Ok(current.is_some_and(|current| current != target) || live_in_progress(dir)?.is_some())
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
    for other_from in disk_names() {
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
        self.lease.make_shared()?;
        check_current(dir, to)?;
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

/// Written before an open rebuilds lost metadata, removed when the rebuild
/// finished (`Cache::rebuild` writes and removes the same marker): while it
/// exists, `gc` and `verify` in any process take no blob for an orphan, and the
/// next open finishes the job.
pub(crate) const REBUILDING: &str = ops::REBUILD_MARKER;

/// A sqlite cache whose database is gone while its blob files are still there
/// (also after a switch to sqlite, beside the stale json copy): the open
/// recreates the entries from the blob headers, as the json backend does when
/// its metadata is lost. Also a rebuild a killed process left unfinished.
pub(crate) struct RebuildAtOpen {
    marker: PathBuf,
}

impl RebuildAtOpen {
    /// `Some` when opening `backend` in `dir` must rebuild; then the marker is
    /// written, before the backend creates its metadata.
    pub(crate) fn check(dir: &Path, backend: &str) -> Result<Option<RebuildAtOpen>> {
        let marker = dir.join(REBUILDING);
        let unfinished = fs::symlink_metadata(&marker).is_ok();
        let lost = registry::disk_backend(backend).is_some_and(|info| info.rebuilt_when_lost)
            && !has_metadata(dir, backend)
            && current_backend(dir)?.is_none_or(|current| current == backend)
            && has_blob_files(dir);
        if !unfinished && !lost {
            return Ok(None);
        }
        open_regular(&marker, private_file().write(true).create(true))
            .and_then(|file| file.sync_all())
            .map_err(|source| Error::io("mark rebuild", &marker, source))?;
        sync_dir(dir)?;
        Ok(Some(RebuildAtOpen { marker }))
    }

    /// Rebuilds the entries of `cache` from its blob files, then removes the
    /// marker (a failed rebuild leaves it for the next open).
    pub(crate) fn run(self, cache: &cacheness_core::Cache) -> Result<()> {
        let report = cache.rebuild(&mut ops::no_progress)?;
        remove_marker(&self.marker)?;
        tracing::warn!(
            dir = ?cache.dir(),
            restored = report.restored,
            invalid = report.invalid.len(),
            "the metadata was missing or half rebuilt; rebuilt it from the blob files"
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
