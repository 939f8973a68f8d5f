//! Rebuilding the metadata from the blob files' headers, when it is lost.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use cacheness_core::{BlobHeader, BlobStore, Durability, Entry, LocalBlobStore, SharedEntry};

use crate::error::JsonError;
use crate::format::Entries;

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
pub(crate) fn rebuild_from_blobs(dir: &Path) -> Result<Rebuilt, JsonError> {
    let mut rebuilt = Rebuilt::default();
    if !dir.join("blobs").is_dir() {
        return Ok(rebuilt);
    }
    let store = LocalBlobStore::open(dir, Durability::Flush).map_err(JsonError::Blobs)?;
    let mut names = Vec::new();
    store
        .list(&mut |name| names.push(name.to_owned()))
        .map_err(JsonError::Blobs)?;
    for name in names {
        rebuilt.blobs += 1;
        let header = store
            .blob_path(&name)
            .map_err(|error| error.to_string())
            .and_then(|path| read_header(&path, &name));
        match header {
            Ok(entry) => keep_newest(&mut rebuilt.entries, entry),
            Err(reason) => {
                rebuilt.unreadable += 1;
                tracing::warn!(blob = %name, %reason, "blob header unusable; not rebuilt");
            }
        }
    }
    Ok(rebuilt)
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
    let mut file = File::open(path).map_err(|error| error.to_string())?;
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
