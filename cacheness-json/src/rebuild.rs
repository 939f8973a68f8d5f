//! Rebuilding the metadata from the blob files' headers, when it is lost.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use cacheness_core::blob::format::{BlobName, read_header};
use cacheness_core::blob::{entry_of_blob, supersedes};
use cacheness_core::files::open_regular_read;
use cacheness_core::{Entry, SharedEntry};

use crate::error::JsonError;
use crate::format::Entries;

/// The blob store's directory in the cache dir (`LocalBlobStore`'s layout:
/// `blobs/ab/<name>`). Listed here rather than through `LocalBlobStore::open`,
/// which creates directories and collects dead writers' temp files.
const BLOBS_DIR: &str = "blobs";

/// Entries recovered from blob files.
#[derive(Debug, Default)]
pub(crate) struct Rebuilt {
    /// The newest blob of each key, as an entry.
    pub entries: Entries,
    /// Blob files read.
    pub blobs: usize,
    /// Blob files whose header could not be used.
    pub unreadable: usize,
}

/// Reads the header of every blob under `dir/blobs` and keeps, per key, the
/// newest one (latest `created_at`, then the greatest name).
///
/// Only reads: it creates no directory and deletes nothing (not even a dead
/// writer's temp file), so it is safe beside writers in other processes and
/// for a read-only open. A blob a put has renamed into place but not yet
/// committed is rebuilt like any other; the put's commit then replaces the
/// entry by the same one. Symbolic links (the blobs dir, a shard, a file) and
/// anything but a regular file are skipped and counted as unreadable, never
/// followed or opened in a way that could block.
pub(crate) fn rebuild_from_blobs(dir: &Path) -> Result<Rebuilt, JsonError> {
    let mut rebuilt = Rebuilt::default();
    let blobs = dir.join(BLOBS_DIR);
    match fs::symlink_metadata(&blobs) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => {
            tracing::warn!(blobs = %blobs.display(), "not a directory (a symbolic link?); nothing rebuilt from it");
            return Ok(rebuilt);
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(rebuilt),
        Err(source) => return Err(JsonError::io("inspect", &blobs, source)),
    }
    for name in blob_names(&blobs)? {
        rebuilt.blobs += 1;
        match read_entry(&blobs.join(name.as_str()), &name) {
            Ok(entry) => keep_newest(&mut rebuilt.entries, entry),
            Err(reason) => {
                rebuilt.unreadable += 1;
                tracing::warn!(blob = %name, %reason, "blob header unusable; not rebuilt");
            }
        }
    }
    Ok(rebuilt)
}

/// The names (`ab/<file>`) of the files in the shard directories of `blobs`
/// that have the shape of a blob name. Shards that are not real directories
/// are passed over.
fn blob_names(blobs: &Path) -> Result<Vec<BlobName>, JsonError> {
    let listing_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| JsonError::io("list blobs in", path, source)
    };
    let mut names = Vec::new();
    for shard in fs::read_dir(blobs).map_err(listing_error(blobs))? {
        let shard = shard.map_err(listing_error(blobs))?;
        // `DirEntry::file_type` does not follow links.
        if !shard.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        let Some(shard_name) = shard.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let shard_path = shard.path();
        for file in fs::read_dir(&shard_path).map_err(listing_error(&shard_path))? {
            let file = file.map_err(listing_error(&shard_path))?;
            let Some(file_name) = file.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Ok(name) = BlobName::parse(&format!("{shard_name}/{file_name}")) {
                names.push(name);
            }
        }
    }
    Ok(names)
}

fn keep_newest(entries: &mut Entries, entry: Entry) {
    match entries.get(&entry.key) {
        Some(old) if !supersedes(&entry, old) => {}
        _ => {
            entries.insert(entry.key, Arc::new(SharedEntry::new(entry)));
        }
    }
}

/// The entry a blob file describes, reading only its preamble and header
/// (the core's reader), checked as the core's rebuild checks it: parameters
/// that hash to the key, the key of the name, the length of the file.
fn read_entry(path: &Path, name: &BlobName) -> Result<Entry, String> {
    let mut file = open_regular_read(path).map_err(|error| error.to_string())?;
    let file_len = file.metadata().map_err(|error| error.to_string())?.len();
    let (header, payload_offset) =
        read_header(&mut file, file_len).map_err(|error| error.to_string())?;
    entry_of_blob(name, header, file_len - payload_offset).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use cacheness_core::{Cache, key};
    use cacheness_memory::MemoryBackend;

    use super::*;

    #[test]
    fn a_blob_whose_header_parameters_were_damaged_is_not_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::builder()
            .dir(dir.path())
            .inline_threshold(0)
            .open(MemoryBackend::new())
            .unwrap();
        cache.put_bytes(&key!(model = "a"), b"value a").unwrap();
        cache.put_bytes(&key!(model = "c"), b"value c").unwrap();
        let damaged = cache.entry(&key!(model = "a")).unwrap().unwrap();
        let path = cache.blob_path(&damaged).unwrap();
        drop(cache);
        // A flipped byte in the header's parameters ("a" -> "b"): the key and
        // the name still say "a".
        let mut file = fs::read(&path).unwrap();
        let at = file
            .windows(3)
            .position(|window| window == b"\"a\"")
            .expect("the parameter is in the header");
        file[at + 1] = b'b';
        fs::write(&path, file).unwrap();

        let rebuilt = rebuild_from_blobs(dir.path()).unwrap();
        assert_eq!((rebuilt.blobs, rebuilt.unreadable), (2, 1), "{rebuilt:?}");
        assert_eq!(rebuilt.entries.len(), 1, "{rebuilt:?}");
        assert!(rebuilt.entries.contains_key(&key!(model = "c").key()));
        assert!(!rebuilt.entries.contains_key(&damaged.key));
    }
}
