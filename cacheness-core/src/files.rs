//! Opening files in a cache dir that someone else may have tampered with.
//!
//! Every file cacheness opens by a fixed name (metadata, journal, lock, markers,
//! blob files) goes through [`open_regular`]: a symbolic link at that name is
//! refused instead of followed (it could lead outside the dir), and anything that
//! is not a regular file (a FIFO, a device, a directory) is refused instead of
//! opened, so a FIFO planted where a file was expected cannot hang the process.
//! Files and directories cacheness creates are private to their owner
//! ([`create_private_file`], [`create_private_dir`]). A backend that keeps its
//! metadata in the cache dir uses the same helpers.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use crate::error::{Error, Result};

/// Opens `path` with `options` and returns it only if it is a regular file.
///
/// A symbolic link as the last component is refused (`O_NOFOLLOW`); the open
/// itself never blocks (`O_NONBLOCK`, cleared again before the file is returned),
/// and a file that is not regular is refused with [`io::ErrorKind::InvalidInput`].
/// Both refusals carry a message saying what was found. The `options`' own custom
/// flags, if any, are replaced.
pub fn open_regular(path: &Path, options: &OpenOptions) -> io::Result<File> {
    let mut options = options.clone();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        options.custom_flags(flags.bits() as i32);
    }
    let file = options
        .open(path)
        .map_err(|error| explain_refusal(path, error))?;
    let file_type = file.metadata()?.file_type();
    if !file_type.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "is a {}, not a regular file; cacheness opens only regular files in its cache dir",
                describe(&file_type)
            ),
        ));
    }
    #[cfg(unix)]
    {
        let flags = rustix::fs::fcntl_getfl(&file)?;
        rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)?;
    }
    Ok(file)
}

/// [`open_regular`] for reading.
pub fn open_regular_read(path: &Path) -> io::Result<File> {
    open_regular(path, OpenOptions::new().read(true))
}

/// Checks, without opening it, that `path` is missing or a regular file (not a
/// symbolic link, FIFO, socket, device or directory): for files another library
/// opens by name (SQLite's database and its `-wal`/`-shm`).
pub fn refuse_irregular(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_file() => Ok(()),
        Ok(metadata) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "is a {}, not a regular file; cacheness opens only regular files in its cache dir",
                describe(&metadata.file_type())
            ),
        )),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// The open's own error says too little when it met something planted:
/// `ELOOP` from `O_NOFOLLOW` says "too many levels of symbolic links", and a FIFO
/// opened for writing with no reader says "no such device or address".
fn explain_refusal(path: &Path, error: io::Error) -> io::Error {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a symbolic link; cacheness does not follow links in its cache dir",
        ),
        Ok(metadata) if !metadata.file_type().is_file() => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "is a {}, not a regular file; cacheness opens only regular files in its cache dir",
                describe(&metadata.file_type())
            ),
        ),
        _ => error,
    }
}

fn describe(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return "device";
        }
    }
    if file_type.is_symlink() {
        "symbolic link"
    } else if file_type.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.json");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &path,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let error = open_regular_read(&path).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("FIFO"), "{error}");
        // Opened for writing, a FIFO without a reader fails the open itself.
        let error = open_regular(&path, OpenOptions::new().write(true)).unwrap_err();
        assert!(error.to_string().contains("FIFO"), "{error}");
        assert!(refuse_irregular(&path).is_err());
    }

    #[test]
    fn a_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("outside");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("marker");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = open_regular(&link, OpenOptions::new().write(true).truncate(true)).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(refuse_irregular(&link).is_err());
    }

    #[test]
    fn a_regular_file_opens_blocking_and_a_missing_one_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        std::fs::write(&path, b"x").unwrap();
        let file = open_regular_read(&path).unwrap();
        let flags = rustix::fs::fcntl_getfl(&file).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK));
        assert!(refuse_irregular(&path).is_ok());
        let missing = open_regular_read(&dir.path().join("missing")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(refuse_irregular(&dir.path().join("missing")).is_ok());
    }
}

/// Creates `path` and its parents; new directories are private (0700) on Unix.
pub fn create_private_dir(path: &Path) -> Result<()> {
    create_private_dir_io(path).map_err(|source| Error::io("create directory", path, source))
}

pub(crate) fn create_private_dir_io(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Creates a new file that only its owner can read (0600 on Unix).
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}
