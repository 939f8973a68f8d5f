//! The one integrity check of what a cache stores: an entry's stored bytes
//! (length, hash, lz4's claimed size, raw size), its parameters against its
//! key, its blob's name against its key, and a blob file's header against the
//! blob and the entry. The read path, `verify`, `rebuild` (the engine's and
//! the json backend's) and `sign_unsigned` all check through here.

use super::format::{BlobHeader, BlobName, FormatError};
use crate::cache::decompress;
use crate::entry::{Compression, ContentHash, Entry};
use crate::key::{CacheKey, Params};

/// Why stored bytes could not be used.
#[derive(Debug)]
pub(crate) enum Damage {
    /// The blob file is not there.
    Missing,
    /// The bytes, the header or the metadata fail a check.
    Invalid(String),
}

/// Checks stored bytes against `entry`: their length, their hash (when
/// `hash`; a caller that hashed them before, or that is not asked to, passes
/// `false`), and that they make the entry's raw size. Returns the
/// decompressed bytes of an lz4 value, `None` for an uncompressed one (its
/// stored bytes are its raw bytes).
pub(crate) fn check_stored(
    entry: &Entry,
    stored: &[u8],
    hash: bool,
) -> Result<Option<Vec<u8>>, String> {
    check_length_and_hash(entry, stored.len() as u64, || {
        hash.then(|| ContentHash::of(stored))
    })?;
    check_raw(entry, stored)
}

/// The length and (when `hash` gives one) the hash of stored bytes against
/// `entry`; the length first, so a file of another length is not hashed.
pub(crate) fn check_length_and_hash(
    entry: &Entry,
    len: u64,
    hash: impl FnOnce() -> Option<ContentHash>,
) -> Result<(), String> {
    if len != entry.stored_size {
        let expected = entry.stored_size;
        return Err(FormatError::WrongLength { len, expected }.to_string());
    }
    match hash() {
        Some(hash) if hash != entry.content_hash => Err("content hash mismatch".into()),
        _ => Ok(()),
    }
}

/// lz4 bytes must decompress to the entry's raw size (the size they claim is
/// checked, and bounded, before any buffer is made for it); uncompressed ones
/// must already be that size, and are not needed for that (`stored` may be
/// empty then).
pub(crate) fn check_raw(entry: &Entry, stored: &[u8]) -> Result<Option<Vec<u8>>, String> {
    match entry.compression {
        Compression::Lz4 => decompress(stored, entry.raw_size).map(Some),
        Compression::None if entry.raw_size != entry.stored_size => {
            Err("raw size differs from stored size without compression".into())
        }
        Compression::None => Ok(None),
    }
}

/// Parameters, when there are any, must hash to the key they come with: an
/// entry or header whose key or parameters were damaged on disk must not
/// serve (or be restored with) the bytes of another key.
pub(crate) fn check_params(params: Option<&Params>, key: CacheKey) -> Result<(), String> {
    match params {
        Some(params) if params.key() != key => Err("parameters do not hash to its key".into()),
        _ => Ok(()),
    }
}

/// The blob name an entry gives, parsed and checked to belong to the entry's
/// key (the name carries the key).
pub(crate) fn check_blob_name(entry: &Entry, name: &str) -> Result<BlobName, String> {
    let name = BlobName::parse(name).map_err(|error| error.to_string())?;
    if name.key() != entry.key {
        return Err(format!("blob `{name}` belongs to another key"));
    }
    Ok(name)
}

/// The entry a blob file's header describes, for a rebuild: its parameters
/// must hash to its key, its key must be the one in the blob's name, and the
/// file must hold exactly the stored bytes the header gives after it
/// (`payload_len`). The stored bytes themselves are not read here.
pub fn entry_of_blob(
    name: &BlobName,
    header: BlobHeader,
    payload_len: u64,
) -> Result<Entry, FormatError> {
    if check_params(header.params.as_ref(), header.key).is_err() {
        return Err(FormatError::BadParams);
    }
    if name.key() != header.key {
        return Err(FormatError::NameNotHeaderKey {
            header_key: header.key,
        });
    }
    let entry = header.into_entry(name.as_str().to_owned());
    if payload_len != entry.stored_size {
        return Err(FormatError::WrongLength {
            len: payload_len,
            expected: entry.stored_size,
        });
    }
    Ok(entry)
}

/// Checks a blob file's header against the entry that names it: the header
/// must describe this very entry (a header damaged on disk would restore the
/// entry under other parameters at the next rebuild), and its parameters must
/// hash to its key. The signature is not compared: it is checked on the entry.
pub(crate) fn check_header(entry: &Entry, header: &BlobHeader) -> Result<(), String> {
    check_params(header.params.as_ref(), header.key)
        .map_err(|reason| format!("blob header's {reason}"))?;
    let disagreeing = [
        ("key", header.key == entry.key),
        ("codec", header.codec == entry.codec),
        ("type tag", header.type_tag == entry.type_tag),
        ("prefix", header.prefix == entry.prefix),
        ("description", header.description == entry.description),
        ("created_at", header.created_at == entry.created_at),
        ("expires_at", header.expires_at == entry.expires_at),
        ("stored size", header.stored_size == entry.stored_size),
        ("raw size", header.raw_size == entry.raw_size),
        ("compression", header.compression == entry.compression),
        ("content hash", header.content_hash == entry.content_hash),
        (
            "parameters",
            header.params.as_ref().map(Params::key) == entry.params.as_ref().map(Params::key),
        ),
    ]
    .into_iter()
    .filter(|(_, agrees)| !agrees)
    .map(|(field, _)| field)
    .collect::<Vec<_>>();
    if disagreeing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "blob header disagrees with the entry: {}",
            disagreeing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Location;

    fn key(byte: u8) -> CacheKey {
        CacheKey::from_bytes([byte; 16])
    }

    /// The header of a 10-byte uncompressed value of `key(0xab)`.
    fn header() -> BlobHeader {
        let name = BlobName::new(&key(0xab));
        let mut entry = Entry::new(
            key(0xab),
            ContentHash::of(&[0; 10]),
            Location::Blob(name.as_str().to_owned()),
        );
        entry.stored_size = 10;
        entry.raw_size = 10;
        BlobHeader::from_entry(&entry)
    }

    #[test]
    fn entry_of_blob_gives_the_entry_its_header_and_name_describe() {
        let name = BlobName::new(&key(0xab));
        let entry = entry_of_blob(&name, header(), 10).unwrap();
        assert_eq!(entry.key, key(0xab));
        assert_eq!(entry.blob_name(), Some(name.as_str()));
    }

    #[test]
    fn entry_of_blob_names_a_name_of_another_key() {
        let name = BlobName::new(&key(0xcd));
        assert_eq!(
            entry_of_blob(&name, header(), 10).unwrap_err(),
            FormatError::NameNotHeaderKey {
                header_key: key(0xab)
            }
        );
    }

    #[test]
    fn entry_of_blob_names_a_file_of_another_length() {
        let name = BlobName::new(&key(0xab));
        let error = entry_of_blob(&name, header(), 9).unwrap_err();
        assert_eq!(
            error,
            FormatError::WrongLength {
                len: 9,
                expected: 10
            }
        );
        assert_eq!(error.to_string(), "9 stored bytes, expected 10");
    }
}
