//! [`LocalBlobStore`]: blobs in a sharded directory of the cache dir.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::format::{BlobName, validate_blob_name};
use super::{BlobStore, Durability, GRACE_PERIOD, StoredBlob, hash_then_write, older_than};
use crate::entry::ContentHash;
use crate::error::{Error, Result};
use crate::files::open_regular_read;
use crate::files::{create_private_dir, create_private_dir_io, create_private_file};
use crate::key::CacheKey;

/// Blobs in a sharded directory: `<dir>/blobs/ab/<key>-<nonce>`, written under
/// `<dir>/tmp/` and renamed into place.
///
/// Reads never follow a symbolic link inside the store (a planted shard link
/// could lead outside the cache dir). On Linux a read is one `openat2` relative
/// to the blobs dir, held open, with `RESOLVE_NO_SYMLINKS`: the kernel refuses a
/// link anywhere in `ab/<name>` at the moment of the open, so a shard swapped
/// for a link after an earlier read is refused too. Elsewhere (or where
/// `openat2` is not available) the shard is checked with `symlink_metadata`
/// before each read (and, on Linux, the file is opened with `O_NOFOLLOW`).
#[derive(Debug)]
pub struct LocalBlobStore {
    blobs_dir: PathBuf,
    tmp_dir: PathBuf,
    durability: Durability,
    #[cfg(target_os = "linux")]
    beneath: beneath::BlobsDir,
}

impl LocalBlobStore {
    /// Opens (creating if needed) the blob store under the cache dir `dir`, and
    /// collects temporary files older than [`GRACE_PERIOD`], which writers that
    /// died left behind.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self> {
        let store = LocalBlobStore {
            blobs_dir: dir.join("blobs"),
            tmp_dir: dir.join("tmp"),
            durability,
            #[cfg(target_os = "linux")]
            beneath: beneath::BlobsDir::default(),
        };
        for inner in [&store.blobs_dir, &store.tmp_dir] {
            create_private_dir(inner)?;
            refuse_symlink(inner).map_err(|source| Error::io("open blob store", inner, source))?;
        }
        store.collect_temp_files(GRACE_PERIOD)?;
        Ok(store)
    }

    /// Opens the blob store under the cache dir `dir` for reading only: it
    /// creates nothing (no `blobs/`, no `tmp/`) and collects no temp files, so
    /// it opens on a read-only mount and in a dir without those subdirs; a
    /// missing `blobs/` reads as every blob missing. A symlink at `blobs/` is
    /// refused, as [`open`](Self::open) refuses it.
    ///
    /// The store's own writes are not blocked (a write would make `tmp/`): a
    /// caller that must never write, as a read-only [`Cache`](crate::Cache)
    /// does, does not call them.
    pub fn open_read_only(dir: &Path) -> Result<Self> {
        let store = LocalBlobStore {
            blobs_dir: dir.join("blobs"),
            tmp_dir: dir.join("tmp"),
            durability: Durability::default(),
            #[cfg(target_os = "linux")]
            beneath: beneath::BlobsDir::default(),
        };
        match refuse_symlink(&store.blobs_dir) {
            Ok(()) => Ok(store),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(store),
            Err(source) => Err(Error::io("open blob store", &store.blobs_dir, source)),
        }
    }

    /// The path of the blob `name`, if its shard directory and the blobs
    /// directory are real directories: a symlink planted there could lead
    /// reads and deletes outside the cache dir, so it is treated as no shard
    /// at all.
    fn real_shard(&self, name: &str) -> Result<Option<PathBuf>> {
        let path = self.blob_path(name)?;
        let Some(shard) = path.parent() else {
            return Ok(None);
        };
        match refuse_symlink(&self.blobs_dir) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::InvalidInput => {
                tracing::warn!(blobs = %self.blobs_dir.display(), "blobs dir is not a directory (a symlink?); ignored");
                return Ok(None);
            }
            Err(source) => return Err(Error::io("inspect blobs dir", &self.blobs_dir, source)),
        }
        match fs::symlink_metadata(shard) {
            Ok(metadata) if metadata.is_dir() => Ok(Some(path)),
            Ok(_) => {
                tracing::warn!(shard = %shard.display(), "blob shard is not a directory (a symlink?); ignored");
                Ok(None)
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::io("inspect blob shard", shard, source)),
        }
    }

    /// The path of the blob `name`, after checking that the name is one this store
    /// could have made (so a name read from metadata cannot point outside the store).
    pub fn blob_path(&self, name: &str) -> Result<PathBuf> {
        validate_blob_name(name)?;
        Ok(self.blobs_dir.join(name))
    }

    fn write_temp(&self, temp_path: &Path, parts: &[&[u8]]) -> io::Result<()> {
        let mut file = create_private_file(temp_path)?;
        for part in parts {
            file.write_all(part)?;
        }
        self.finish_temp(&file)
    }

    /// Writes `header(&hash)` then `body` to a new temp file, hashing `body` on
    /// another thread while this one writes it: the body goes first, after room
    /// for a header of the length a placeholder hash gives, and the header last.
    fn write_temp_hashing(
        &self,
        temp_path: &Path,
        body: &[u8],
        header: &mut dyn FnMut(&ContentHash) -> Vec<u8>,
    ) -> io::Result<ContentHash> {
        let room = header(&ContentHash([0; 32])).len();
        let mut file = create_private_file(temp_path)?;
        let (hash, written) = std::thread::scope(|scope| {
            let hashing = std::thread::Builder::new()
                .name("cacheness-hash".into())
                .spawn_scoped(scope, || ContentHash::of(body));
            let written = file
                .seek(SeekFrom::Start(room as u64))
                .and_then(|_| file.write_all(body));
            let hash = match hashing {
                Ok(hashing) => hashing
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to be had: hash here, after the write.
                Err(_) => ContentHash::of(body),
            };
            (hash, written)
        });
        written?;
        let head = header(&hash);
        if head.len() == room {
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&head)?;
        } else {
            // A header whose length depends on the hash: write it all again.
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&head)?;
            file.write_all(body)?;
        }
        self.finish_temp(&file)?;
        Ok(hash)
    }

    fn finish_temp(&self, file: &File) -> io::Result<()> {
        if self.durability == Durability::Sync {
            file.sync_all()?;
        }
        Ok(())
    }

    /// Makes the temp dir again when it is gone but the cache dir is there (the
    /// cache dir was removed and made again under an open cache); whether it
    /// did. A cache dir that is gone stays gone: the store does not bring back
    /// a dir someone removed.
    fn make_temp_dir_again(&self) -> io::Result<bool> {
        let Some(cache_dir) = self.tmp_dir.parent() else {
            return Ok(false);
        };
        if !fs::symlink_metadata(cache_dir).is_ok_and(|metadata| metadata.is_dir()) {
            return Ok(false);
        }
        match create_private_dir_io(&self.tmp_dir) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
        refuse_symlink(&self.tmp_dir)?;
        tracing::warn!(tmp = %self.tmp_dir.display(), "blob temp dir was gone; made it again");
        Ok(true)
    }

    fn rename_into_place(&self, temp_path: &Path, blob_path: &Path) -> io::Result<()> {
        if let Some(shard) = blob_path.parent() {
            match refuse_symlink(shard) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        match fs::rename(temp_path, blob_path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if let Some(shard) = blob_path.parent() {
                    create_private_dir_io(shard)?;
                }
                fs::rename(temp_path, blob_path)
            }
            other => other,
        }?;
        if self.durability == Durability::Sync
            && let Some(shard) = blob_path.parent()
        {
            File::open(shard)?.sync_all()?;
        }
        Ok(())
    }

    /// Makes a new blob for `key`: `fill` writes its temp file (once more if the
    /// temp dir had to be made again), which is then renamed into place. A
    /// failed write leaves no file behind.
    fn write_with<T>(
        &self,
        key: &CacheKey,
        mut fill: impl FnMut(&Path) -> io::Result<T>,
    ) -> Result<(String, T)> {
        let name = BlobName::new(key);
        let blob_path = self.blobs_dir.join(name.as_str());
        let temp_path =
            self.tmp_dir
                .join(format!("{}-{}.tmp", std::process::id(), name.nonce_hex()));
        let written = fill(&temp_path)
            .or_else(|error| match error.kind() {
                io::ErrorKind::NotFound if self.make_temp_dir_again()? => fill(&temp_path),
                _ => Err(error),
            })
            .map_err(|source| Error::io("write blob", &temp_path, source))
            .and_then(|filled| {
                self.rename_into_place(&temp_path, &blob_path)
                    .map_err(|source| Error::io("rename blob", &blob_path, source))
                    .map(|()| filled)
            });
        if written.is_err() {
            let _ = fs::remove_file(&temp_path);
        }
        written.map(|filled| (name.into_string(), filled))
    }
}

/// Bodies at least this large are hashed on another thread while they are
/// written, which takes the hash (~0.4 ms for 4 MiB on one core of the
/// benchmark machine) off the put's path at the price of starting a thread.
/// At 1 MiB the overlap measured no gain beyond the noise (W3 of
/// `cacheness-bench`); at 64 MiB it took PUT from ~60 % to ~100 % of the disk.
const HASH_WHILE_WRITING_MIN: usize = 4 << 20;

impl LocalBlobStore {
    /// Opens a blob file for reading, never through a link, with the path to
    /// name in errors; `None` if there is no such blob.
    fn open_file(&self, name: &str) -> Result<Option<(File, PathBuf)>> {
        #[cfg(target_os = "linux")]
        {
            validate_blob_name(name)?;
            match self.beneath.open(&self.blobs_dir, name) {
                Ok(beneath::Opened::File(file)) => {
                    return Ok(Some((file, self.blobs_dir.join(name))));
                }
                Ok(beneath::Opened::Missing) => return Ok(None),
                Ok(beneath::Opened::Refused) => {
                    tracing::warn!(blob = name, blobs = %self.blobs_dir.display(), "blob path holds a symlink or a non-directory; ignored");
                    return Ok(None);
                }
                Ok(beneath::Opened::Unsupported) => {}
                Err(source) => {
                    return Err(Error::io("open blob", self.blobs_dir.join(name), source));
                }
            }
        }
        let Some(path) = self.real_shard(name)? else {
            return Ok(None);
        };
        match open_regular_read(&path) {
            Ok(file) => Ok(Some((file, path))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::io("read blob", path, source)),
        }
    }
}

impl BlobStore for LocalBlobStore {
    fn write(&self, key: &CacheKey, parts: &[&[u8]]) -> Result<String> {
        self.write_with(key, |temp_path| self.write_temp(temp_path, parts))
            .map(|(name, ())| name)
    }

    fn write_hashed(
        &self,
        key: &CacheKey,
        body: &[u8],
        header: &mut dyn FnMut(&ContentHash) -> Vec<u8>,
    ) -> Result<(String, ContentHash)> {
        if body.len() < HASH_WHILE_WRITING_MIN {
            return hash_then_write(self, key, body, header);
        }
        self.write_with(key, |temp_path| {
            self.write_temp_hashing(temp_path, body, &mut *header)
        })
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.read_limited(name, u64::MAX)
    }

    fn read_limited(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some((file, path)) = self.open_file(name)? else {
            return Ok(None);
        };
        read_whole(file, limit)
            .map(Some)
            .map_err(|source| Error::io("read blob", path, source))
    }

    fn open_stored(&self, name: &str) -> Result<Option<StoredBlob>> {
        let Some((file, path)) = self.open_file(name)? else {
            return Ok(None);
        };
        let len = file
            .metadata()
            .map_err(|source| Error::io("read blob", path, source))?
            .len();
        Ok(Some(StoredBlob::new(len, Box::new(file))))
    }

    fn remove(&self, name: &str) -> Result<()> {
        // Through a symlinked shard the file would be outside: leave it.
        let Some(path) = self.real_shard(name)? else {
            return Ok(());
        };
        match fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                Err(Error::io("remove blob", path, error))
            }
            _ => Ok(()),
        }
    }

    fn list(&self, visit: &mut dyn FnMut(&str)) -> Result<()> {
        let shards = match fs::read_dir(&self.blobs_dir) {
            Ok(shards) => shards,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(Error::io("list blobs", &self.blobs_dir, source)),
        };
        for shard in shards {
            let shard = shard.map_err(|source| Error::io("list blobs", &self.blobs_dir, source))?;
            let shard_path = shard.path();
            // `DirEntry::file_type` does not follow symlinks: a planted one is skipped.
            if !shard.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            let files = fs::read_dir(&shard_path)
                .map_err(|source| Error::io("list blobs", &shard_path, source))?;
            for file in files {
                let file = file.map_err(|source| Error::io("list blobs", &shard_path, source))?;
                // Not followed either: a link, FIFO or dir at a blob's name is
                // no blob, so nothing reads through it and gc never deletes it.
                if !file.file_type().is_ok_and(|kind| kind.is_file()) {
                    continue;
                }
                let (Some(shard_name), Some(file_name)) = (
                    shard.file_name().to_str().map(str::to_owned),
                    file.file_name().to_str().map(str::to_owned),
                ) else {
                    continue;
                };
                let name = format!("{shard_name}/{file_name}");
                if validate_blob_name(&name).is_ok() {
                    visit(&name);
                }
            }
        }
        Ok(())
    }

    fn modified(&self, name: &str) -> Option<SystemTime> {
        let path = self.real_shard(name).ok()??;
        // The link's own metadata, never its target's; only a regular file has
        // an age that speaks for a blob.
        let metadata = fs::symlink_metadata(&path).ok()?;
        if !metadata.is_file() {
            return None;
        }
        metadata.modified().ok()
    }

    fn collect_temp_files(&self, grace: Duration) -> Result<u64> {
        if refuse_symlink(&self.tmp_dir).is_err() {
            tracing::warn!(tmp = %self.tmp_dir.display(), "temp dir is a symlink; not collected");
            return Ok(0);
        }
        let entries = match fs::read_dir(&self.tmp_dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(source) => return Err(Error::io("list temp files", &self.tmp_dir, source)),
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if temp_file_is_stale(&path, grace) && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn local_path(&self, name: &str) -> Option<PathBuf> {
        self.blob_path(name).ok()
    }
}

/// The whole of a blob file, or its first `limit` bytes, in one allocation
/// sized from its length. Blob files are never changed once renamed into
/// place, so the length is final: no growing buffer, no extra read to find the
/// end. A file that came out shorter is caught by the engine's size check.
fn read_whole(file: File, limit: u64) -> io::Result<Vec<u8>> {
    let len = file.metadata()?.len().min(limit);
    let capacity = usize::try_from(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "blob too large for this platform",
        )
    })?;
    let mut bytes = Vec::new();
    // A length the allocator refuses is an error, not an abort.
    bytes.try_reserve_exact(capacity).map_err(|_| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot hold a blob of {len} bytes in memory"),
        )
    })?;
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Blob reads relative to the blobs dir held open, with `openat2`'s
/// `RESOLVE_NO_SYMLINKS` (Linux 5.6+).
#[cfg(target_os = "linux")]
mod beneath {
    use std::fs::{self, File};
    use std::io;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};

    use rustix::fd::OwnedFd;
    use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
    use rustix::io::Errno;

    /// The blobs dir, opened on first use and reopened when a blob is not
    /// found in it and the path now names another directory (the dir was
    /// removed and made again). A blob still present in the held dir after
    /// the dir was *renamed* away is served from it: the same file the
    /// metadata names, never one reached through a link.
    #[derive(Debug, Default)]
    pub(super) struct BlobsDir {
        fd: Mutex<Option<Arc<OwnedFd>>>,
        /// Set once `openat2` was refused by the kernel (too old, or filtered).
        unsupported: AtomicBool,
    }

    /// What opening a blob found.
    pub(super) enum Opened {
        File(File),
        /// No such blob (or no blobs dir).
        Missing,
        /// A symlink or a non-directory in the way: never followed.
        Refused,
        /// `openat2` cannot be used here; check paths the portable way.
        Unsupported,
    }

    impl BlobsDir {
        pub(super) fn open(&self, blobs_dir: &Path, name: &str) -> io::Result<Opened> {
            if self.unsupported.load(Ordering::Relaxed) {
                return Ok(Opened::Unsupported);
            }
            for _attempt in 0..2 {
                let dir = match self.dir(blobs_dir)? {
                    Ok(dir) => dir,
                    Err(opened) => return Ok(opened),
                };
                // Non-blocking, so a FIFO planted at a blob's name cannot hang
                // the open; it is refused below like any file that is not regular.
                let opened = rustix::fs::openat2(
                    &*dir,
                    name,
                    OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
                    Mode::empty(),
                    ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH,
                );
                match opened {
                    Ok(fd) => return regular(fd),
                    Err(Errno::LOOP | Errno::NOTDIR | Errno::XDEV) => return Ok(Opened::Refused),
                    Err(Errno::NOSYS | Errno::PERM | Errno::INVAL) => {
                        self.unsupported.store(true, Ordering::Relaxed);
                        return Ok(Opened::Unsupported);
                    }
                    Err(Errno::NOENT) => {
                        // Missing, unless the held dir is no longer the one at
                        // the path: then forget it and look again.
                        if self.is_current(&dir, blobs_dir) {
                            return Ok(Opened::Missing);
                        }
                        self.forget(&dir);
                    }
                    Err(errno) => return Err(errno.into()),
                }
            }
            Ok(Opened::Missing)
        }
    }

    /// The opened blob as a blocking file if it is a regular file; an error
    /// naming what it is otherwise (a FIFO, a device, a directory).
    fn regular(fd: OwnedFd) -> io::Result<Opened> {
        let stat = rustix::fs::fstat(&fd)?;
        let what = match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => None,
            FileType::Fifo => Some("FIFO"),
            FileType::Directory => Some("directory"),
            FileType::Socket => Some("socket"),
            FileType::CharacterDevice | FileType::BlockDevice => Some("device"),
            _ => Some("special file"),
        };
        if let Some(what) = what {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("is a {what}, not a regular file; cacheness reads only regular blob files"),
            ));
        }
        let flags = rustix::fs::fcntl_getfl(&fd)?;
        rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)?;
        Ok(Opened::File(File::from(fd)))
    }

    impl BlobsDir {
        /// The held blobs dir, opened if needed; `Err` with the verdict when it
        /// cannot be opened.
        fn dir(&self, blobs_dir: &Path) -> io::Result<Result<Arc<OwnedFd>, Opened>> {
            let mut held = self.fd.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(dir) = held.as_ref() {
                return Ok(Ok(Arc::clone(dir)));
            }
            let opened = rustix::fs::open(
                blobs_dir,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
            match opened {
                Ok(fd) => {
                    let dir = Arc::new(fd);
                    *held = Some(Arc::clone(&dir));
                    Ok(Ok(dir))
                }
                Err(Errno::NOENT) => Ok(Err(Opened::Missing)),
                Err(Errno::LOOP | Errno::NOTDIR) => Ok(Err(Opened::Refused)),
                Err(errno) => Err(errno.into()),
            }
        }

        /// Whether `dir` is still the directory at `blobs_dir` (links not followed).
        fn is_current(&self, dir: &OwnedFd, blobs_dir: &Path) -> bool {
            let (Ok(held), Ok(at_path)) = (rustix::fs::fstat(dir), fs::symlink_metadata(blobs_dir))
            else {
                return false;
            };
            at_path.is_dir() && held.st_dev == at_path.dev() && held.st_ino == at_path.ino()
        }

        /// Makes every read take the portable path, as on a kernel without `openat2`.
        #[cfg(test)]
        pub(super) fn force_portable(&self) {
            self.unsupported.store(true, Ordering::Relaxed);
        }

        fn forget(&self, dir: &Arc<OwnedFd>) {
            let mut held = self.fd.lock().unwrap_or_else(PoisonError::into_inner);
            if held
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, dir))
            {
                *held = None;
            }
        }
    }
}

/// A temp file is stale when it was last written more than `grace` ago.
///
/// Not by the pid in its name: a writer in another PID namespace (another
/// container sharing the cache volume) is missing from this process's `/proc`
/// while it writes, and a pid seen there may be another process. The age holds
/// across namespaces: a writer at work keeps its file's modification time
/// fresh, and a put renames its temp file away within moments of its last
/// write. Only the entry itself is looked at (a symlink is not followed).
fn temp_file_is_stale(path: &Path, grace: Duration) -> bool {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return false;
    };
    if metadata.is_dir() {
        return false;
    }
    older_than(metadata.modified().ok(), grace)
}

/// Fails if `path` is a symlink (or anything but a directory): the store never
/// follows links inside the cache dir, which could lead outside it.
fn refuse_symlink(path: &Path) -> io::Result<()> {
    let metadata = fs::symlink_metadata(path)?;
    if metadata.is_dir() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a symbolic link or not a directory; the cache does not follow links inside its dir",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::Durability;

    fn key() -> CacheKey {
        CacheKey::from_bytes([0xab; 16])
    }

    #[test]
    fn limited_and_streamed_reads_never_hold_more_than_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path(), Durability::Flush).unwrap();
        let name = store.write(&key(), &[b"hello ", b"world"]).unwrap();
        assert_eq!(store.read_limited(&name, 5).unwrap().unwrap(), b"hello");
        assert_eq!(
            store.read_limited(&name, 100).unwrap().unwrap(),
            b"hello world"
        );
        let mut stored = store.open_stored(&name).unwrap().unwrap();
        assert_eq!(stored.len, 11);
        let mut bytes = Vec::new();
        stored.reader.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, b"hello world");
        // A sparse terabyte at a blob's name: only the limit is read.
        let huge = format!("ab/{}-00000000000000ff", "ab".repeat(16));
        File::create(store.blobs_dir.join(&huge))
            .unwrap()
            .set_len(1 << 40)
            .unwrap();
        assert_eq!(store.read_limited(&huge, 3).unwrap().unwrap(), vec![0; 3]);
        assert_eq!(store.open_stored(&huge).unwrap().unwrap().len, 1 << 40);
        let missing = format!("ab/{}-00000000000000fe", "ab".repeat(16));
        assert!(store.read_limited(&missing, 3).unwrap().is_none());
        assert!(store.open_stored(&missing).unwrap().is_none());
    }

    #[test]
    fn written_blobs_read_back_and_leave_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path(), Durability::Flush).unwrap();
        let name = store.write(&key(), &[b"hello ", b"world"]).unwrap();
        assert!(name.starts_with("ab/abab"));
        assert_eq!(store.read(&name).unwrap().unwrap(), b"hello world");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let mut names = Vec::new();
        store.list(&mut |name| names.push(name.to_owned())).unwrap();
        assert_eq!(names, vec![name.clone()]);
        store.remove(&name).unwrap();
        store.remove(&name).unwrap();
        assert_eq!(store.read(&name).unwrap(), None);
    }

    /// A header that names the hash, as the engine's does.
    fn header_of(hash: &ContentHash) -> Vec<u8> {
        format!("header of {hash}|").into_bytes()
    }

    #[test]
    fn bodies_hashed_while_written_make_the_same_blob_as_hashing_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path(), Durability::Sync).unwrap();
        for len in [
            0,
            1000,
            HASH_WHILE_WRITING_MIN - 1,
            HASH_WHILE_WRITING_MIN,
            HASH_WHILE_WRITING_MIN + (3 << 20),
        ] {
            let body: Vec<u8> = (0..len).map(|index| (index * 7 % 251) as u8).collect();
            let mut calls = Vec::new();
            let (name, hash) = store
                .write_hashed(&key(), &body, &mut |hash| {
                    calls.push(*hash);
                    header_of(hash)
                })
                .unwrap();
            assert_eq!(hash, ContentHash::of(&body), "{len} bytes");
            assert_eq!(
                calls.last(),
                Some(&hash),
                "the last header is of the real hash"
            );
            let mut expected = header_of(&hash);
            expected.extend_from_slice(&body);
            assert!(
                store.read(&name).unwrap().unwrap() == expected,
                "{len} bytes"
            );
        }
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_header_whose_length_follows_the_hash_is_written_whole_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path(), Durability::Flush).unwrap();
        let body = vec![0x5a; HASH_WHILE_WRITING_MIN + 17];
        let placeholder = ContentHash([0; 32]);
        let header = |hash: &ContentHash| -> Vec<u8> {
            if *hash == placeholder {
                b"short|".to_vec()
            } else {
                header_of(hash)
            }
        };
        let (name, hash) = store
            .write_hashed(&key(), &body, &mut |hash| header(hash))
            .unwrap();
        let mut expected = header_of(&hash);
        expected.extend_from_slice(&body);
        assert!(store.read(&name).unwrap().unwrap() == expected);
    }

    #[test]
    fn a_cache_dir_made_again_gets_its_temp_dir_back_and_a_removed_one_stays_removed() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("cache");
        let store = LocalBlobStore::open(&dir, Durability::Flush).unwrap();
        let old = store.write(&key(), &[b"old"]).unwrap();

        fs::remove_dir_all(&dir).unwrap();
        fs::create_dir(&dir).unwrap();
        let name = store.write(&key(), &[b"new"]).unwrap();
        assert_eq!(store.read(&name).unwrap().unwrap(), b"new");
        assert_eq!(store.read(&old).unwrap(), None);
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        let mut names = Vec::new();
        store.list(&mut |name| names.push(name.to_owned())).unwrap();
        assert_eq!(names, vec![name]);

        fs::remove_dir_all(&dir).unwrap();
        let error = store.write(&key(), &[b"lost"]).unwrap_err().to_string();
        assert!(error.contains("tmp"), "{error}");
        assert!(
            !dir.exists(),
            "the store does not bring back a removed cache dir"
        );
    }

    /// A store with one blob, and a dir outside the cache holding a file of
    /// the same name (what a planted link would lead to).
    #[cfg(unix)]
    fn store_and_outside() -> (tempfile::TempDir, LocalBlobStore, String, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(&root.path().join("cache"), Durability::Flush).unwrap();
        let name = store.write(&key(), &[b"inside"]).unwrap();
        let outside = root.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join(&name[3..]), b"outside").unwrap();
        (root, store, name, outside)
    }

    /// Each read-path variant: `openat2` where the platform has it, and the
    /// portable check.
    #[cfg(unix)]
    fn both_read_paths(
        test: impl Fn(&dyn Fn() -> (tempfile::TempDir, LocalBlobStore, String, PathBuf)),
    ) {
        test(&store_and_outside);
        #[cfg(target_os = "linux")]
        test(&|| {
            let (root, store, name, outside) = store_and_outside();
            store.beneath.force_portable();
            (root, store, name, outside)
        });
    }

    #[cfg(unix)]
    #[test]
    fn a_shard_swapped_for_a_symlink_after_a_read_is_refused() {
        both_read_paths(|setup| {
            let (_root, store, name, outside) = setup();
            assert_eq!(store.read(&name).unwrap().unwrap(), b"inside");
            let shard = store.blobs_dir.join(&name[..2]);
            fs::rename(&shard, store.blobs_dir.join("moved")).unwrap();
            std::os::unix::fs::symlink(&outside, &shard).unwrap();
            assert_eq!(store.read(&name).unwrap(), None);
            store.remove(&name).unwrap();
            assert!(outside.join(&name[3..]).exists());
        });
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_symlinked_blob_file_is_not_followed() {
        both_read_paths(|setup| {
            let (_root, store, name, outside) = setup();
            let path = store.blobs_dir.join(&name);
            fs::remove_file(&path).unwrap();
            std::os::unix::fs::symlink(outside.join(&name[3..]), &path).unwrap();
            assert!(!matches!(store.read(&name), Ok(Some(_))));
        });
    }

    #[cfg(unix)]
    #[test]
    fn a_blobs_dir_replaced_after_a_read_is_followed_only_if_real() {
        both_read_paths(|setup| {
            let (_root, store, name, outside) = setup();
            assert_eq!(store.read(&name).unwrap().unwrap(), b"inside");
            // Deleted and made again (say, by hand): the new dir's blobs are read.
            fs::remove_dir_all(&store.blobs_dir).unwrap();
            assert_eq!(store.read(&name).unwrap(), None);
            let again = store.write(&key(), &[b"again"]).unwrap();
            assert_eq!(store.read(&again).unwrap().unwrap(), b"again");
            fs::remove_dir_all(&store.blobs_dir).unwrap();
            fs::create_dir_all(store.blobs_dir.join(&name[..2])).unwrap();
            fs::write(store.blobs_dir.join(&name), b"remade").unwrap();
            assert_eq!(store.read(&name).unwrap().unwrap(), b"remade");
            // Swapped for a link: refused.
            fs::remove_dir_all(&store.blobs_dir).unwrap();
            fs::create_dir(outside.join(&name[..2])).unwrap();
            fs::write(outside.join(&name), b"outside").unwrap();
            std::os::unix::fs::symlink(&outside, &store.blobs_dir).unwrap();
            assert_eq!(store.read(&name).unwrap(), None);
        });
    }

    #[test]
    fn a_missing_blob_or_shard_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path(), Durability::Flush).unwrap();
        let name = store.write(&key(), &[b"x"]).unwrap();
        let other = "cd/cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd-0123456789abcdef";
        assert_eq!(store.read(other).unwrap(), None);
        // The same name with another last digit (the suffix is random, so
        // the digit is picked to differ).
        let last = if name.ends_with('0') { '1' } else { '0' };
        let sibling = format!("{}{last}", &name[..name.len() - 1]);
        assert_ne!(sibling, name);
        assert_eq!(store.read(&sibling).unwrap(), None);
        assert!(store.read("../etc/passwd").is_err());
        let empty = store.write(&key(), &[]).unwrap();
        assert_eq!(store.read(&empty).unwrap().unwrap(), b"");
    }

    #[test]
    fn two_writes_of_one_key_get_two_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path(), Durability::Sync).unwrap();
        let first = store.write(&key(), &[b"1"]).unwrap();
        let second = store.write(&key(), &[b"2"]).unwrap();
        assert_ne!(first, second);
    }

    /// Sets a file's modification time `age` into the past (or the future).
    fn set_age(path: &Path, age: Duration, future: bool) {
        let now = SystemTime::now();
        let time = if future { now + age } else { now - age };
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }

    #[test]
    fn temp_files_are_collected_by_age_not_by_the_pid_in_their_name() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        // pid 4294967295 runs in no PID namespace this process can see: a writer
        // in another container. Its fresh file is in flight and stays.
        let other_namespace = dir.path().join("tmp/4294967295-00.tmp");
        let ours = dir
            .path()
            .join(format!("tmp/{}-00.tmp", std::process::id()));
        let old_dead = dir.path().join("tmp/4294967295-01.tmp");
        let old_same_pid = dir
            .path()
            .join(format!("tmp/{}-01.tmp", std::process::id()));
        let future = dir.path().join("tmp/4294967295-02.tmp");
        for path in [&other_namespace, &ours, &old_dead, &old_same_pid, &future] {
            fs::write(path, b"x").unwrap();
        }
        let just_over = GRACE_PERIOD + Duration::from_secs(5);
        set_age(&old_dead, just_over, false);
        // A pid in a name may be another process's in another namespace (a
        // restarted container's pid 1): an old file goes whatever pid it names.
        set_age(&old_same_pid, just_over, false);
        set_age(&future, just_over, true);
        let store = LocalBlobStore::open(dir.path(), Durability::Flush).unwrap();
        assert!(other_namespace.exists());
        assert!(ours.exists());
        assert!(future.exists(), "a time in the future cannot tell: kept");
        assert!(!old_dead.exists());
        assert!(!old_same_pid.exists());
        assert_eq!(store.collect_temp_files(GRACE_PERIOD).unwrap(), 0);
        assert_eq!(store.collect_temp_files(Duration::ZERO).unwrap(), 3);
    }

    #[test]
    fn a_blobs_age_is_its_files_modification_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path(), Durability::Flush).unwrap();
        let name = store.write(&key(), &[b"x"]).unwrap();
        assert!(!older_than(store.modified(&name), GRACE_PERIOD));
        assert!(older_than(store.modified(&name), Duration::ZERO));
        set_age(&store.blob_path(&name).unwrap(), GRACE_PERIOD, false);
        assert!(older_than(store.modified(&name), GRACE_PERIOD));
        set_age(&store.blob_path(&name).unwrap(), GRACE_PERIOD, true);
        assert!(!older_than(store.modified(&name), Duration::from_secs(1)));
        store.remove(&name).unwrap();
        assert_eq!(store.modified(&name), None);
        assert!(!older_than(None, Duration::from_secs(1)));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_fifo_or_symlink_at_a_blob_name_is_refused_at_once_and_not_listed() {
        both_read_paths(|setup| {
            let (_root, store, name, outside) = setup();
            let path = store.blobs_dir.join(&name);
            fs::remove_file(&path).unwrap();
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                &path,
                rustix::fs::Mode::from_raw_mode(0o600),
            )
            .unwrap();
            // Would block forever on open without O_NONBLOCK.
            let error = store.read(&name).unwrap_err().to_string();
            assert!(error.contains("is a FIFO, not a regular file"), "{error}");
            assert!(store.read_stored(&name).is_err());
            assert_eq!(store.modified(&name), None);
            let mut names = Vec::new();
            store.list(&mut |name| names.push(name.to_owned())).unwrap();
            assert!(names.is_empty(), "{names:?}");

            fs::remove_file(&path).unwrap();
            std::os::unix::fs::symlink(outside.join(&name[3..]), &path).unwrap();
            store.list(&mut |name| names.push(name.to_owned())).unwrap();
            assert!(names.is_empty(), "a symlink is no blob: {names:?}");
            assert_eq!(store.modified(&name), None);
        });
    }
}
