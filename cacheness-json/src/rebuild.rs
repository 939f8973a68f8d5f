//! Rebuilding the metadata from the blob files' headers, when it is lost.

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use cacheness_core::blob::validate_blob_name;
use cacheness_core::files::open_regular_read;
use cacheness_core::{BlobHeader, Entry, SharedEntry};

use crate::error::JsonError;
use crate::format::Entries;

/// The blob store's directory in the cache dir (`LocalBlobStore`'s layout:
/// `blobs/ab/<name>`). Listed here rather than through `LocalBlobStore::open`,
/// which creates directories and collects dead writers' temp files.
const BLOBS_DIR: &str = "blobs";
/// Bytes before a blob header: magic (6), version, reserved, header length (u32 LE).
const PREAMBLE_LEN: usize = 12;
/// A header larger than this is damage (the blob store's own limit).
const MAX_HEADER_LEN: u64 = 64 << 20;

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
        match read_header(&blobs.join(&name), &name) {
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
fn blob_names(blobs: &Path) -> Result<Vec<String>, JsonError> {
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
            let name = format!("{shard_name}/{file_name}");
            if validate_blob_name(&name).is_ok() {
                names.push(name);
            }
        }
    }
    Ok(names)
}

fn keep_newest(entries: &mut Entries, entry: Entry) {
    let newer =
        |old: &Entry| (entry.created_at, entry.blob_name()) > (old.created_at, old.blob_name());
    match entries.get(&entry.key) {
        Some(old) if !newer(old) => {}
        _ => {
            entries.insert(entry.key, Arc::new(SharedEntry::new(entry)));
        }
    }
}

/// The entry a blob file describes, reading only its preamble and header.
fn read_header(path: &Path, name: &str) -> Result<Entry, String> {
    let mut file = open_regular_read(path).map_err(|error| error.to_string())?;
    let file_len = file.metadata().map_err(|error| error.to_string())?.len();
    let mut head = vec![0u8; PREAMBLE_LEN];
    file.read_exact(&mut head)
        .map_err(|error| format!("cannot read the preamble: {error}"))?;
    let header_len = u64::from(u32::from_le_bytes([head[8], head[9], head[10], head[11]]));
    if header_len > MAX_HEADER_LEN || PREAMBLE_LEN as u64 + header_len > file_len {
        return Err(format!(
            "header length {header_len} runs past the end of the file"
        ));
    }
    head.resize(PREAMBLE_LEN + header_len as usize, 0);
    file.read_exact(&mut head[PREAMBLE_LEN..])
        .map_err(|error| format!("cannot read the header: {error}"))?;
    let (header, payload_offset) = BlobHeader::decode(&head)?;
    let payload_len = file_len - payload_offset as u64;
    if payload_len != header.stored_size {
        return Err(format!(
            "holds {payload_len} bytes, its header says {}",
            header.stored_size
        ));
    }
    if !name[3..].starts_with(&header.key.to_hex()) {
        return Err(format!("header names key {}, not the file's", header.key));
    }
    Ok(header.into_entry(name.to_owned()))
}
