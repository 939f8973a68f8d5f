//! Small filesystem helpers: the lock guard, file identity, atomic replacement.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use cacheness_core::files;

use crate::error::JsonError;

/// Holds the cross-process lock of a cache dir until dropped.
pub(crate) struct LockGuard<'a> {
    file: &'a File,
}

/// Which kind of lock to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockKind {
    /// Readers: many at once, no writer.
    Shared,
    /// One writer, nobody else.
    Exclusive,
}

impl<'a> LockGuard<'a> {
    pub(crate) fn acquire(file: &'a File, kind: LockKind, path: &Path) -> Result<Self, JsonError> {
        let locked = match kind {
            LockKind::Shared => fs4::FileExt::lock_shared(file),
            LockKind::Exclusive => fs4::FileExt::lock(file),
        };
        locked.map_err(|source| JsonError::io("lock", path, source))?;
        Ok(LockGuard { file })
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if let Err(error) = fs4::FileExt::unlock(self.file) {
            tracing::warn!(%error, "cannot unlock the json metadata lock file");
        }
    }
}

/// What identifies a file across renames: a replaced journal is another file.
pub(crate) type Identity = (u64, u64);

#[cfg(unix)]
pub(crate) fn identity(metadata: &Metadata) -> Identity {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

#[cfg(not(unix))]
pub(crate) fn identity(metadata: &Metadata) -> Identity {
    let created = metadata
        .created()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos());
    (created as u64, (created >> 64) as u64)
}

/// The cache dir, held open so that the journal's `stat` before each operation
/// resolves one name rather than the whole path (about half the cost of a `stat`
/// by path, measured on this project's 2-core VM: ~1.0 µs against ~1.9 µs). It
/// is opened on first use and opened again, by path, whenever the view is
/// reloaded (the view's new state starts without it), so a cache dir
/// that was removed and made again is found at the next reload.
#[derive(Debug, Default)]
pub(crate) struct HeldDir {
    #[cfg(target_os = "linux")]
    fd: Option<rustix::fd::OwnedFd>,
}

impl HeldDir {
    /// The identity and length of the file `name` in the dir at `dir`, or `None`
    /// if it does not exist. A symbolic link is not followed: its own identity
    /// differs from any file's, so the view reloads and the open refuses it.
    #[cfg(target_os = "linux")]
    pub(crate) fn stat(&mut self, dir: &Path, name: &str) -> io::Result<Option<(Identity, u64)>> {
        use rustix::fs::{AtFlags, Mode, OFlags};
        let fd = match &mut self.fd {
            Some(fd) => fd,
            empty => empty.insert(rustix::fs::open(
                dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?),
        };
        match rustix::fs::statat(&*fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some((
                (stat.st_dev, stat.st_ino),
                u64::try_from(stat.st_size).unwrap_or(0),
            ))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }

    /// The identity and length of the file `name` in the dir at `dir`, or `None`
    /// if it does not exist.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn stat(&mut self, dir: &Path, name: &str) -> io::Result<Option<(Identity, u64)>> {
        match fs::metadata(dir.join(name)) {
            Ok(metadata) => Ok(Some((identity(&metadata), metadata.len()))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// Creates `dir` and its parents; new directories are private (0700) on Unix.
pub(crate) fn create_dir(dir: &Path) -> Result<(), JsonError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|source| JsonError::io("create directory", dir, source))
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// [`files::open_regular`], whose refusal also says what was found when the
/// open itself failed on a special file: opening a FIFO for writing without a
/// reader fails with `ENXIO` ("no such device or address") before the
/// regular-file check can run.
pub(crate) fn open_regular(path: &Path, options: &OpenOptions) -> io::Result<File> {
    files::open_regular(path, options).map_err(|error| explain_special(path, error))
}

#[cfg(unix)]
fn explain_special(path: &Path, error: io::Error) -> io::Error {
    use std::os::unix::fs::FileTypeExt;
    let is_fifo = fs::symlink_metadata(path).is_ok_and(|found| found.file_type().is_fifo());
    if is_fifo && error.kind() != io::ErrorKind::InvalidInput {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a FIFO, not a regular file; cacheness opens only regular files in its cache dir",
        )
    } else {
        error
    }
}

#[cfg(not(unix))]
fn explain_special(_path: &Path, error: io::Error) -> io::Error {
    error
}

/// Opens `path` for reading and appending, creating it if missing. Only a
/// regular file is opened: a symbolic link or a FIFO planted there is refused.
pub(crate) fn open_append(path: &Path, create: bool) -> io::Result<File> {
    open_regular(
        path,
        private_options().read(true).append(true).create(create),
    )
}

/// The temp file a replacement of `path` is written to. Temp files are only
/// written under the exclusive lock, so any found while holding it are stale.
pub(crate) fn temp_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Replaces `path` by a file holding `bytes`: written to a temp file, synced,
/// renamed over `path`, and the directory synced, so a reader sees the old or the
/// new file, whole.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), JsonError> {
    let temp = temp_path(path);
    let written = (|| {
        let mut file = open_regular(
            &temp,
            private_options().write(true).create(true).truncate(true),
        )?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(source) = written {
        let _ = fs::remove_file(&temp);
        return Err(JsonError::io("write", &temp, source));
    }
    if let Err(source) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(JsonError::io("rename into place", path, source));
    }
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<(), JsonError> {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| JsonError::io("sync directory", parent, source))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Deletes temp files of metadata replacements that a dead process left in
/// `dir`; the caller holds the exclusive lock, so none is in flight. Returns how many.
pub(crate) fn remove_stale_temp_files(dir: &Path, stems: &[&str]) -> usize {
    let Ok(listing) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for item in listing.flatten() {
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name.ends_with(".tmp")
            && stems.iter().any(|stem| {
                name.strip_prefix(stem)
                    .is_some_and(|rest| rest.starts_with('.'))
            });
        if ours && fs::remove_file(item.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_dir_sees_files_come_go_and_be_replaced() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("cache");
        fs::create_dir(&dir).unwrap();
        let mut held = HeldDir::default();
        assert_eq!(held.stat(&dir, "journal").unwrap(), None);

        fs::write(dir.join("journal"), b"one\n").unwrap();
        let (first, len) = held.stat(&dir, "journal").unwrap().unwrap();
        assert_eq!(len, 4);
        assert_eq!(first, identity(&fs::metadata(dir.join("journal")).unwrap()));
        fs::OpenOptions::new()
            .append(true)
            .open(dir.join("journal"))
            .unwrap()
            .write_all(b"two\n")
            .unwrap();
        assert_eq!(held.stat(&dir, "journal").unwrap(), Some((first, 8)));

        // Replaced by a rename, as compaction does: another file.
        fs::write(dir.join("journal.tmp"), b"x\n").unwrap();
        fs::rename(dir.join("journal.tmp"), dir.join("journal")).unwrap();
        let (second, len) = held.stat(&dir, "journal").unwrap().unwrap();
        assert_ne!(second, first);
        assert_eq!(len, 2);

        fs::remove_file(dir.join("journal")).unwrap();
        assert_eq!(held.stat(&dir, "journal").unwrap(), None);
    }

    #[test]
    fn a_dir_made_again_is_found_by_a_new_held_dir() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("cache");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("journal"), b"old\n").unwrap();
        let mut held = HeldDir::default();
        assert!(held.stat(&dir, "journal").unwrap().is_some());

        fs::remove_dir_all(&dir).unwrap();
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("journal"), b"new journal\n").unwrap();
        // The held dir is the removed one, where nothing is left: the backend
        // reloads on that, and its reloaded state holds the dir at the path again.
        assert_eq!(held.stat(&dir, "journal").unwrap().map(|(_, len)| len), {
            #[cfg(target_os = "linux")]
            {
                None
            }
            #[cfg(not(target_os = "linux"))]
            {
                Some(12)
            }
        });
        let mut fresh = HeldDir::default();
        assert_eq!(
            fresh.stat(&dir, "journal").unwrap().map(|(_, len)| len),
            Some(12)
        );
    }
}
