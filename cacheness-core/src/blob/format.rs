//! The blob file format: the preamble, the header, and blob names.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::BlobStore;

use super::check::check_params;
use crate::entry::{Compression, ContentHash, Entry, Location, UserMetadata};
use crate::error::{Error, Result};
use crate::key::{CacheKey, Params};

/// The first bytes of every blob file.
pub const BLOB_MAGIC: &[u8; 6] = b"CNBLOB";
/// The blob file format this code writes and reads.
pub const BLOB_FORMAT_VERSION: u8 = 1;
/// Bytes before the header: magic, version, flags, header length.
const PREAMBLE_LEN: usize = 6 + 1 + 1 + 4;
/// Where the flags byte is in the preamble (0 in blobs written before it had
/// a use, when it was reserved).
const FLAGS_AT: usize = 7;
/// Flag: the header ends with its own checksum, a last JSON field
/// `"header_hash"` holding the blake3 (hex) of the header's JSON before it,
/// so a flipped byte anywhere in the header is found. Readers that predate it
/// ignore the flag and the field, so a cache written now stays readable by
/// them; blobs without it are read as before.
const FLAG_HEADER_HASH: u8 = 1;
/// How the checksum field starts, after the rest of the header's JSON.
const SEAL_START: &[u8] = b",\"header_hash\":\"";
/// The checksum field and the closing brace: start, 64 hex digits, `"}`.
const SEAL_LEN: usize = SEAL_START.len() + 64 + 2;
/// A header larger than this is damage, not metadata.
const MAX_HEADER_LEN: usize = 64 << 20;
/// The most bytes a blob file holds before its stored bytes: the preamble and
/// the largest header (64 MiB). A blob file of an entry with `stored_size`
/// stored bytes is never longer than `MAX_HEADER_BYTES + stored_size`, so a
/// reader that knows the entry can pass one byte more than that to
/// [`BlobStore::read_limited`] and never hold more, whatever is at the name.
pub const MAX_HEADER_BYTES: u64 = (PREAMBLE_LEN + MAX_HEADER_LEN) as u64;

/// Why bytes are not a blob file's preamble and header, or a string not a
/// blob name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Fewer bytes than a preamble.
    #[error("{len} bytes is too short for a blob")]
    TooShort {
        /// The bytes there were.
        len: u64,
    },
    /// The file does not start with [`BLOB_MAGIC`].
    #[error("not a cacheness blob (bad magic)")]
    BadMagic,
    /// A format version this build does not read.
    #[error(
        "blob format version {version} is not supported (this build reads {BLOB_FORMAT_VERSION})"
    )]
    UnsupportedVersion {
        /// The version the preamble gives.
        version: u8,
    },
    /// The header length runs past the file or the largest header.
    #[error("header length {len} runs past the end of the file")]
    HeaderTooLong {
        /// The length the preamble gives.
        len: u64,
    },
    /// Reading the preamble or the header failed.
    #[error("cannot read the {part}: {reason}")]
    Unreadable {
        /// `"preamble"` or `"header"`.
        part: &'static str,
        /// The I/O error, as text.
        reason: String,
    },
    /// The header is not the JSON of a [`BlobHeader`].
    #[error("bad header: {0}")]
    BadHeader(String),
    /// The header's parameters do not hash to its key.
    #[error("blob header's parameters do not hash to its key")]
    BadParams,
    /// The header does not match its own checksum.
    #[error("blob header does not match its checksum")]
    BadHeaderHash,
    /// Not of the form `ab/<32 hex>-<16 hex>` with the key's first byte as
    /// its shard.
    #[error("invalid blob name `{0}`: not of the form ab/<32 hex>-<16 hex>")]
    BadName(String),
    /// The key in a blob's name is not the key its header gives.
    #[error("blob name does not match its header's key {header_key}")]
    NameNotHeaderKey {
        /// The key the header gives.
        header_key: CacheKey,
    },
    /// The file holds another number of stored bytes than its header gives.
    #[error("{len} stored bytes, expected {expected}")]
    WrongLength {
        /// The stored bytes the file holds after its header.
        len: u64,
        /// The stored bytes the header gives.
        expected: u64,
    },
}

/// The name of a blob: `ab/<key>-<nonce>`, the key in lower-case hex, its
/// first byte again as the shard, and a nonce that makes every write's name
/// its own. The one place that knows the shape: everything else asks it for
/// the key, and builds names with [`BlobName::new`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobName {
    name: String,
    key: CacheKey,
}

/// Bytes of a blob name: shard (2), `/`, key (32 hex), `-`, nonce (16 hex).
const NAME_LEN: usize = 2 + 1 + 32 + 1 + 16;

impl BlobName {
    /// A fresh name for a blob of `key`, unique across threads and processes.
    pub fn new(key: &CacheKey) -> BlobName {
        BlobName::with_nonce(key, unique_nonce())
    }

    /// The name of `key`'s blob with this nonce (names made with the same
    /// nonce collide: for tests and tools that need names known in advance).
    pub fn with_nonce(key: &CacheKey, nonce: u64) -> BlobName {
        let hex = key.to_hex();
        BlobName {
            name: format!("{}/{hex}-{nonce:016x}", &hex[..2]),
            key: *key,
        }
    }

    /// Checks that `name` has the exact shape of a blob name: `ab/<32
    /// hex>-<16 hex>` whose shard is the key's first byte. Anything else
    /// (`..`, absolute paths, separators, upper case) is rejected.
    pub fn parse(name: &str) -> std::result::Result<BlobName, FormatError> {
        let bytes = name.as_bytes();
        let lower_hex = |byte: &u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte);
        let well_formed = bytes.len() == NAME_LEN
            && bytes[2] == b'/'
            && bytes[35] == b'-'
            && bytes[..2].iter().all(lower_hex)
            && bytes[3..35].iter().all(lower_hex)
            && bytes[36..].iter().all(lower_hex)
            && bytes[..2] == bytes[3..5];
        let bad = || FormatError::BadName(name.escape_debug().to_string());
        if !well_formed {
            return Err(bad());
        }
        let key = name[3..35].parse().map_err(|_| bad())?;
        Ok(BlobName {
            name: name.to_owned(),
            key,
        })
    }

    /// The key whose blob this is.
    pub fn key(&self) -> CacheKey {
        self.key
    }

    /// The shard directory the blob lives in (`ab`).
    pub fn shard(&self) -> &str {
        &self.name[..2]
    }

    /// The nonce part, as the hex in the name.
    pub(crate) fn nonce_hex(&self) -> &str {
        &self.name[36..]
    }

    /// The name as a string (`ab/<key>-<nonce>`).
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The name as an owned string.
    pub fn into_string(self) -> String {
        self.name
    }
}

impl std::fmt::Display for BlobName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for BlobName {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

/// Checks that `name` has the exact shape of a blob name (see
/// [`BlobName::parse`]), as the core [`Error`].
pub(crate) fn validate_blob_name(name: &str) -> Result<()> {
    BlobName::parse(name)
        .map(drop)
        .map_err(|_| Error::InvalidInput {
            what: "blob name",
            value: name.escape_debug().to_string(),
            reason: "not of the form ab/<32 hex>-<16 hex>".into(),
        })
}

/// A nonce unique across threads and processes: the pid, the time and a counter,
/// mixed by blake3.
fn unique_nonce() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = blake3::Hasher::new();
    hasher.update(&std::process::id().to_le_bytes());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let digest = hasher.finalize();
    let mut nonce = [0u8; 8];
    nonce.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_le_bytes(nonce)
}

/// The metadata a blob file carries about its entry, enough to rebuild the entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BlobHeader {
    /// The entry's key.
    pub key: CacheKey,
    /// See [`Entry::prefix`].
    #[serde(default)]
    pub prefix: String,
    /// See [`Entry::description`].
    #[serde(default)]
    pub description: String,
    /// See [`Entry::type_tag`].
    #[serde(default)]
    pub type_tag: String,
    /// See [`Entry::codec`].
    pub codec: String,
    /// See [`Entry::params`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Params>,
    /// See [`Entry::created_at`].
    pub created_at: u64,
    /// See [`Entry::expires_at`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// See [`Entry::stored_size`].
    pub stored_size: u64,
    /// See [`Entry::raw_size`].
    pub raw_size: u64,
    /// See [`Entry::compression`].
    pub compression: Compression,
    /// See [`Entry::content_hash`].
    pub content_hash: ContentHash,
    /// See [`Entry::signature`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// See [`Entry::user_metadata`].
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub user_metadata: UserMetadata,
}

impl BlobHeader {
    /// The header describing `entry`.
    pub fn from_entry(entry: &Entry) -> Self {
        BlobHeader {
            key: entry.key,
            prefix: entry.prefix.clone(),
            description: entry.description.clone(),
            type_tag: entry.type_tag.clone(),
            codec: entry.codec.clone(),
            params: entry.params.clone(),
            created_at: entry.created_at,
            expires_at: entry.expires_at,
            stored_size: entry.stored_size,
            raw_size: entry.raw_size,
            compression: entry.compression,
            content_hash: entry.content_hash,
            signature: entry.signature.clone(),
            user_metadata: entry.user_metadata.clone(),
        }
    }

    /// The entry this header describes, stored in blob `name`; it counts as
    /// accessed when it was created.
    pub fn into_entry(self, name: String) -> Entry {
        Entry {
            key: self.key,
            prefix: self.prefix,
            description: self.description,
            type_tag: self.type_tag,
            codec: self.codec,
            params: self.params,
            created_at: self.created_at,
            accessed_at: self.created_at,
            expires_at: self.expires_at,
            access_count: 0,
            stored_size: self.stored_size,
            raw_size: self.raw_size,
            compression: self.compression,
            content_hash: self.content_hash,
            location: Location::Blob(name),
            signature: self.signature,
            user_metadata: self.user_metadata,
        }
    }

    /// The bytes that start a blob file for this header: preamble and header.
    ///
    /// The header ends with its checksum (see `FLAG_HEADER_HASH`).
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("a blob header always serializes to JSON");
        // A JSON object with fields: the checksum goes before its brace.
        let body = json.strip_suffix(b"}").unwrap_or(&json);
        let header_len = body.len() + SEAL_LEN;
        let mut out = Vec::with_capacity(PREAMBLE_LEN + header_len);
        out.extend_from_slice(BLOB_MAGIC);
        out.push(BLOB_FORMAT_VERSION);
        out.push(FLAG_HEADER_HASH);
        // The header is metadata of one entry; it never nears 4 GiB.
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(SEAL_START);
        out.extend_from_slice(blake3::hash(body).to_hex().as_bytes());
        out.extend_from_slice(b"\"}");
        out
    }

    /// Parses the header of a whole blob file, returning it and the offset where
    /// the stored bytes start.
    pub fn decode(file: &[u8]) -> std::result::Result<(BlobHeader, usize), FormatError> {
        let (header_json, payload_offset) = split_header(file)?;
        Ok((parse_header(header_json, file[FLAGS_AT])?, payload_offset))
    }

    /// Reads the header from the start of a blob file; see [`read_header`].
    pub fn read_from(
        reader: &mut dyn Read,
        file_len: u64,
    ) -> std::result::Result<(BlobHeader, u64), FormatError> {
        read_header(reader, file_len)
    }
}

/// Reads the preamble and the header from the start of a blob file of
/// `file_len` bytes, and returns the header and the offset where the stored
/// bytes start (`reader` is left there). Reads no more than the length the
/// preamble gives, and refuses that length when it exceeds the largest header
/// (64 MiB) or the file: a damaged or planted file never makes it allocate
/// more than that.
pub fn read_header(
    reader: &mut dyn Read,
    file_len: u64,
) -> std::result::Result<(BlobHeader, u64), FormatError> {
    if file_len < PREAMBLE_LEN as u64 {
        return Err(FormatError::TooShort { len: file_len });
    }
    let unreadable = |part| {
        move |error: std::io::Error| FormatError::Unreadable {
            part,
            reason: error.to_string(),
        }
    };
    let mut preamble = [0u8; PREAMBLE_LEN];
    reader
        .read_exact(&mut preamble)
        .map_err(unreadable("preamble"))?;
    let header_len = check_preamble(&preamble)?;
    let end = PREAMBLE_LEN as u64 + header_len as u64;
    if header_len > MAX_HEADER_LEN || end > file_len {
        return Err(FormatError::HeaderTooLong {
            len: header_len as u64,
        });
    }
    let mut header_json = vec![0u8; header_len];
    reader
        .read_exact(&mut header_json)
        .map_err(unreadable("header"))?;
    Ok((parse_header(&header_json, preamble[FLAGS_AT])?, end))
}

/// Parses a header's JSON and checks it: its parameters hash to its key (told
/// first, as the likelier damage to name), and it matches its checksum when
/// its `flags` say it carries one.
fn parse_header(json: &[u8], flags: u8) -> std::result::Result<BlobHeader, FormatError> {
    let header: BlobHeader =
        serde_json::from_slice(json).map_err(|error| FormatError::BadHeader(error.to_string()))?;
    if check_params(header.params.as_ref(), header.key).is_err() {
        return Err(FormatError::BadParams);
    }
    if flags & FLAG_HEADER_HASH != 0 && !is_sealed(json) {
        return Err(FormatError::BadHeaderHash);
    }
    Ok(header)
}

/// Whether a header's JSON ends with the checksum of what comes before it.
fn is_sealed(json: &[u8]) -> bool {
    let Some(body_len) = json.len().checked_sub(SEAL_LEN) else {
        return false;
    };
    let (body, seal) = json.split_at(body_len);
    seal.starts_with(SEAL_START)
        && seal.ends_with(b"\"}")
        && seal[SEAL_START.len()..SEAL_LEN - 2] == *blake3::hash(body).to_hex().as_bytes()
}

/// The offset of the stored bytes in a blob file, checking the preamble only.
pub(crate) fn stored_offset(file: &[u8]) -> std::result::Result<usize, FormatError> {
    split_header(file).map(|(_, offset)| offset)
}

fn split_header(file: &[u8]) -> std::result::Result<(&[u8], usize), FormatError> {
    let Some(preamble) = file.first_chunk::<PREAMBLE_LEN>() else {
        return Err(FormatError::TooShort {
            len: file.len() as u64,
        });
    };
    let header_len = check_preamble(preamble)?;
    let end = PREAMBLE_LEN.saturating_add(header_len);
    if header_len > MAX_HEADER_LEN || end > file.len() {
        return Err(FormatError::HeaderTooLong {
            len: header_len as u64,
        });
    }
    Ok((&file[PREAMBLE_LEN..end], end))
}

/// Checks a blob file's magic and format version; returns the header length
/// the preamble gives (not yet checked against any bound).
fn check_preamble(preamble: &[u8; PREAMBLE_LEN]) -> std::result::Result<usize, FormatError> {
    if &preamble[..6] != BLOB_MAGIC {
        return Err(FormatError::BadMagic);
    }
    if preamble[6] != BLOB_FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            version: preamble[6],
        });
    }
    let length = [preamble[8], preamble[9], preamble[10], preamble[11]];
    Ok(u32::from_le_bytes(length) as usize)
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn key() -> CacheKey {
        CacheKey::from_bytes([0xab; 16])
    }

    /// The header of an uncompressed value whose stored bytes are `stored`.
    fn plain_header(stored: &[u8]) -> BlobHeader {
        BlobHeader {
            key: key(),
            prefix: "p".into(),
            description: String::new(),
            type_tag: "t".into(),
            codec: "json".into(),
            params: None,
            created_at: 5,
            expires_at: None,
            stored_size: stored.len() as u64,
            raw_size: stored.len() as u64,
            compression: Compression::None,
            content_hash: ContentHash::of(stored),
            signature: None,
            user_metadata: UserMetadata::new(),
        }
    }

    #[test]
    fn headers_are_read_with_a_bound() {
        let header = plain_header(b"stored");
        let mut file = header.encode();
        let offset = file.len() as u64;
        file.extend_from_slice(b"stored");
        let (read, at) =
            BlobHeader::read_from(&mut io::Cursor::new(&file), file.len() as u64).unwrap();
        assert_eq!((read, at), (header, offset));
        // A preamble claiming more than the file or the largest header holds
        // is refused before anything is allocated for it.
        let mut claims = file.clone();
        claims[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = BlobHeader::read_from(&mut io::Cursor::new(&claims), 1 << 40).unwrap_err();
        assert!(error.to_string().contains("runs past"), "{error}");
        let error = BlobHeader::read_from(&mut io::Cursor::new(&file), offset - 1).unwrap_err();
        assert!(error.to_string().contains("runs past"), "{error}");
        let error = BlobHeader::read_from(&mut io::Cursor::new(b"CNBLOB"), 6).unwrap_err();
        assert!(error.to_string().contains("too short"), "{error}");
        let error = BlobHeader::read_from(&mut io::Cursor::new(vec![0; 64]), 64).unwrap_err();
        assert!(error.to_string().contains("bad magic"), "{error}");
    }

    #[test]
    fn names_that_escape_the_store_are_rejected() {
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "ab/../../x",
            "ab/abababababababababababababababab-0123456789abcdeg",
            "cd/abababababababababababababababab-0123456789abcdef",
            "",
        ] {
            assert!(validate_blob_name(bad).is_err(), "{bad}");
        }
        assert!(validate_blob_name("ab/abababababababababababababababab-0123456789abcdef").is_ok());
    }

    /// A header as blobs were written before the header carried its
    /// checksum: flags 0, the JSON alone.
    fn old_header(header: &BlobHeader) -> Vec<u8> {
        let json = serde_json::to_vec(header).unwrap();
        let mut out = BLOB_MAGIC.to_vec();
        out.extend_from_slice(&[BLOB_FORMAT_VERSION, 0]);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out
    }

    /// `file` with the first byte of the first `from` in it made `to`.
    fn flipped(file: &[u8], from: &[u8], to: u8) -> Vec<u8> {
        let at = file
            .windows(from.len())
            .position(|window| window == from)
            .unwrap();
        let mut flipped = file.to_vec();
        flipped[at] = to;
        flipped
    }

    #[test]
    fn a_flipped_byte_anywhere_in_a_header_is_found_and_old_headers_still_read() {
        let mut header = plain_header(b"abc");
        header.description = "described".into();
        let new = header.encode();
        assert_eq!(BlobHeader::decode(&new).unwrap().0, header);
        let error = BlobHeader::decode(&flipped(&new, b"described", b'D')).unwrap_err();
        assert_eq!(error, FormatError::BadHeaderHash);
        let damaged = flipped(&new, b"described", b'D');
        let error = read_header(&mut io::Cursor::new(&damaged), damaged.len() as u64).unwrap_err();
        assert_eq!(error, FormatError::BadHeaderHash);

        // A blob written before: read as it was, damage in its description
        // included (it has no checksum to tell).
        let old = old_header(&header);
        assert_eq!(BlobHeader::decode(&old).unwrap().0, header);
        let (read, at) = read_header(&mut io::Cursor::new(&old), old.len() as u64).unwrap();
        assert_eq!((read, at), (header.clone(), old.len() as u64));
        let old_damaged = BlobHeader::decode(&flipped(&old, b"described", b'D')).unwrap();
        assert_eq!(old_damaged.0.description, "Described");
    }

    /// Hostile seals: the flag set on a header with no seal, a seal cut
    /// short, a seal of other text, a tiny header with the flag set. Each is
    /// refused with `BadHeaderHash` (or a parse error), never a panic.
    #[test]
    fn a_missing_short_or_foreign_seal_is_refused() {
        let header = plain_header(b"abc");
        let with_flag = |mut file: Vec<u8>| {
            file[FLAGS_AT] |= FLAG_HEADER_HASH;
            file
        };
        let unsealed = with_flag(old_header(&header));
        assert_eq!(
            BlobHeader::decode(&unsealed).unwrap_err(),
            FormatError::BadHeaderHash
        );
        // The seal of another header's JSON, spliced onto this one's.
        let mut other = header.clone();
        other.created_at = 6;
        let (new, foreign) = (header.encode(), other.encode());
        let seal_at = new.len() - SEAL_LEN;
        let mut spliced = new[..seal_at].to_vec();
        spliced.extend_from_slice(&foreign[foreign.len() - SEAL_LEN..]);
        assert_eq!(
            BlobHeader::decode(&spliced).unwrap_err(),
            FormatError::BadHeaderHash
        );
        // JSON shorter than a seal, flagged as sealed.
        let mut tiny = BLOB_MAGIC.to_vec();
        tiny.extend_from_slice(&[BLOB_FORMAT_VERSION, FLAG_HEADER_HASH]);
        tiny.extend_from_slice(&2u32.to_le_bytes());
        tiny.extend_from_slice(b"{}");
        assert!(BlobHeader::decode(&tiny).is_err());
        // Every cut of a sealed header fails cleanly.
        for len in 0..new.len() {
            assert!(BlobHeader::decode(&new[..len]).is_err(), "cut at {len}");
        }
    }

    #[test]
    fn parameters_that_are_not_the_key_are_named_before_the_checksum() {
        let params = crate::key!(model = "a");
        let mut header = plain_header(b"abc");
        header.key = params.key();
        header.params = Some(params);
        for file in [header.encode(), old_header(&header)] {
            assert_eq!(BlobHeader::decode(&file).unwrap().0, header);
            let error = BlobHeader::decode(&flipped(&file, b"\"a\"", b'\'')).unwrap_err();
            assert!(matches!(error, FormatError::BadHeader(_)), "{error}");
            let at = file.windows(3).position(|w| w == b"\"a\"").unwrap() + 1;
            let mut other = file.clone();
            other[at] = b'b';
            assert_eq!(
                BlobHeader::decode(&other).unwrap_err(),
                FormatError::BadParams
            );
        }
    }

    #[test]
    fn header_round_trips_and_damage_is_reported() {
        let header = plain_header(b"abc");
        let mut file = header.encode();
        file.extend_from_slice(b"abc");
        let (decoded, offset) = BlobHeader::decode(&file).unwrap();
        assert_eq!(decoded, header);
        assert_eq!(&file[offset..], b"abc");
        assert!(BlobHeader::decode(&file[..5]).is_err());
        assert!(BlobHeader::decode(&file[..20]).is_err());
        let mut bad_magic = file.clone();
        bad_magic[0] = b'X';
        assert!(BlobHeader::decode(&bad_magic).is_err());
        let mut future = file.clone();
        future[6] = 9;
        assert!(
            BlobHeader::decode(&future)
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
    }
}
