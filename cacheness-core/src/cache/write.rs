//! The put path: limits, compression, the blob or inline bytes, the backend put.

use std::any::type_name;

use serde::Serialize;

use super::compress::compress;
use super::options::{Expiry, MAX_DESCRIPTION_LEN, MAX_USER_METADATA_LEN, PutOptions};
use super::{Cache, validate_prefix};
use crate::blob::BlobHeader;
use crate::clock::duration_ms;
use crate::codec::raw::bytes_of;
use crate::codec::{Codec, RAW_CODEC};
use crate::entry::{Compression, ContentHash, Entry, Location};
use crate::error::{Error, Result};
use crate::key::{CacheKey, MAX_NESTING, Params, ToKey};

/// A value encoded for storing, by [`Cache::encode_value`].
#[derive(Debug)]
pub(crate) struct Encoded {
    /// The encoding, or the value's own bytes when `raw`.
    pub(crate) bytes: Vec<u8>,
    /// Stored under [`RAW_CODEC`] rather than the cache's codec.
    pub(crate) raw: bool,
    pub(crate) type_tag: &'static str,
}

impl<C: Codec> Cache<C> {
    /// Stores `value` under `key`, replacing what was there, with the default TTL.
    pub fn put<T: Serialize + ?Sized>(&self, key: &impl ToKey, value: &T) -> Result<()> {
        self.put_with(key, value, &PutOptions::default())
    }

    /// Stores `value` under `key` with `options` (TTL, description, prefix, metadata).
    ///
    /// A value that serializes as bytes (`Vec<u8>`, `[u8; N]`,
    /// `serde_bytes::ByteBuf`) is stored as its bytes, as by
    /// [`put_bytes`](Cache::put_bytes), whatever the codec. On error nothing is
    /// stored and no file is left behind.
    pub fn put_with<T: Serialize + ?Sized>(
        &self,
        key: &impl ToKey,
        value: &T,
        options: &PutOptions,
    ) -> Result<()> {
        let encoded = self.encode_value(key.to_key(), value)?;
        self.store_encoded(key, &encoded, options)
    }

    /// `value` as [`put_with`](Cache::put_with) stores it: its bytes if it
    /// serializes as bytes, else its encoding with the cache's codec.
    pub(crate) fn encode_value<T: Serialize + ?Sized>(
        &self,
        key: CacheKey,
        value: &T,
    ) -> Result<Encoded> {
        let type_tag = type_name::<T>();
        if let Some(bytes) = bytes_of(value) {
            return Ok(Encoded {
                bytes,
                raw: true,
                type_tag,
            });
        }
        let bytes = self.codec.encode(value).map_err(|source| Error::Encode {
            key,
            codec: self.codec.name().to_owned(),
            source,
        })?;
        Ok(Encoded {
            bytes,
            raw: false,
            type_tag,
        })
    }

    /// Stores a value [`encode_value`](Cache::encode_value) encoded.
    pub(crate) fn store_encoded(
        &self,
        key: &impl ToKey,
        encoded: &Encoded,
        options: &PutOptions,
    ) -> Result<()> {
        let codec = if encoded.raw {
            RAW_CODEC
        } else {
            self.codec.name()
        };
        self.store(
            key.to_key(),
            key.params(),
            &encoded.bytes,
            codec,
            encoded.type_tag,
            options,
        )
    }

    /// Stores raw bytes under `key`, without a codec.
    pub fn put_bytes(&self, key: &impl ToKey, bytes: &[u8]) -> Result<()> {
        self.put_bytes_with(key, bytes, &PutOptions::default())
    }

    /// Stores raw bytes under `key` with `options`.
    pub fn put_bytes_with(
        &self,
        key: &impl ToKey,
        bytes: &[u8],
        options: &PutOptions,
    ) -> Result<()> {
        self.store(
            key.to_key(),
            key.params(),
            bytes,
            RAW_CODEC,
            "bytes",
            options,
        )
    }

    fn store(
        &self,
        key: CacheKey,
        params: Option<&Params>,
        raw: &[u8],
        codec: &str,
        type_tag: &str,
        options: &PutOptions,
    ) -> Result<()> {
        self.check_writable("put")?;
        validate_prefix(&options.prefix)?;
        check_entry_limits(key, params, options)?;
        let now = self.clock.now_ms();
        let compressed = compress(raw);
        let (compression, stored) = match &compressed {
            Some(compressed) => (Compression::Lz4, compressed.as_slice()),
            None => (Compression::None, raw),
        };
        let stored_size = stored.len() as u64;
        if let Some(limit) = self.settings.max_size
            && stored_size > limit
        {
            return Err(Error::TooLarge {
                key,
                size: stored_size,
                limit,
            });
        }
        let expires_at = match options.expiry {
            Expiry::Default => self
                .settings
                .default_ttl
                .map(|ttl| now.saturating_add(duration_ms(ttl))),
            Expiry::Never => None,
            Expiry::After(ttl) => Some(now.saturating_add(duration_ms(ttl))),
        };
        let mut entry = Entry {
            key,
            prefix: options.prefix.clone(),
            description: options.description.clone(),
            type_tag: type_tag.to_owned(),
            codec: codec.to_owned(),
            params: params.cloned(),
            created_at: now,
            accessed_at: now,
            expires_at,
            access_count: 0,
            stored_size,
            raw_size: raw.len() as u64,
            compression,
            // Set below, with the blob or the inline bytes.
            content_hash: ContentHash([0; 32]),
            location: Location::Inline(Vec::new()),
            signature: None,
            user_metadata: options.user_metadata.clone(),
        };
        let inline = self
            .settings
            .inline_limit
            .is_some_and(|limit| stored.len() <= limit);
        // The signature covers the content hash and the location's kind, not the
        // blob's name, so it goes into the blob's header before the name exists.
        let signer = self.signer.as_ref();
        let seal = |entry: &mut Entry, hash: &ContentHash| {
            entry.content_hash = *hash;
            if let Some(signer) = signer {
                entry.signature = Some(signer.sign(entry));
            }
        };
        let written_blob = match (&self.blobs, inline) {
            (_, true) => {
                seal(&mut entry, &ContentHash::of(stored));
                entry.location = Location::Inline(stored.to_vec());
                None
            }
            (Some(blobs), false) => {
                entry.location = Location::Blob(String::new());
                let (name, hash) = blobs.write_hashed(&key, stored, &mut |hash| {
                    seal(&mut entry, hash);
                    BlobHeader::from_entry(&entry).encode()
                })?;
                if entry.content_hash != hash {
                    // The contract has the last `header` call made with the real
                    // hash; should a store break it, the entry still carries it.
                    seal(&mut entry, &hash);
                }
                entry.location = Location::Blob(name.clone());
                Some(name)
            }
            (None, false) => {
                unreachable!("open() guarantees a blob store or an unbounded inline limit")
            }
        };
        let replaced = match self.backend.put(entry) {
            Ok(replaced) => replaced,
            Err(error) => {
                if let (Some(blobs), Some(name)) = (&self.blobs, &written_blob) {
                    let _ = blobs.remove(name);
                }
                return Err(error);
            }
        };
        let replaced_size = replaced.as_ref().map_or(0, |old| old.stored_size);
        // Reads of the replaced version not yet written count for it, not
        // for this one.
        if replaced.is_some() {
            self.forget_reads(key);
        }
        // A rebuild running beside this put may have found our blob before we
        // committed and made an entry of it: that "replaced" entry is our own
        // value, and its blob is the one we just wrote.
        if let Some(old) = replaced
            .as_ref()
            .filter(|old| old.blob_name() != written_blob.as_deref())
        {
            self.delete_blob(old);
        }
        self.enforce_size_limit(key, stored_size, replaced_size)
    }
}

/// Checks what a put would store against the limits that keep it readable
/// everywhere: the parameters (see [`Params::check_limits`]), the description
/// and the user metadata.
fn check_entry_limits(key: CacheKey, params: Option<&Params>, options: &PutOptions) -> Result<()> {
    if let Some(params) = params {
        params.check_limits()?;
    }
    let over = |what, actual: usize, limit: usize| Error::LimitExceeded {
        key,
        what,
        actual: actual as u64,
        limit: limit as u64,
    };
    if options.description.len() > MAX_DESCRIPTION_LEN {
        return Err(over(
            "length of the description (bytes)",
            options.description.len(),
            MAX_DESCRIPTION_LEN,
        ));
    }
    if options.user_metadata.is_empty() {
        return Ok(());
    }
    if let Some(depth) = options
        .user_metadata
        .values()
        .map(json_depth)
        .max()
        .filter(|depth| *depth > MAX_NESTING)
    {
        return Err(over(
            "nesting depth of the user metadata (levels)",
            depth,
            MAX_NESTING,
        ));
    }
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, &options.user_metadata).map_err(|error| {
        Error::InvalidInput {
            what: "user metadata",
            value: key.to_string(),
            reason: error.to_string(),
        }
    })?;
    if counter.0 > MAX_USER_METADATA_LEN {
        return Err(over(
            "size of the user metadata as JSON (bytes)",
            counter.0,
            MAX_USER_METADATA_LEN,
        ));
    }
    Ok(())
}

/// How deeply arrays and objects nest in `value` (0 for a scalar), measured
/// without recursion so any depth is safe to measure.
fn json_depth(value: &serde_json::Value) -> usize {
    use serde_json::Value as Json;
    // Each value with the number of arrays and objects around it.
    let mut deepest = 0;
    let mut pending = vec![(value, 0usize)];
    while let Some((value, around)) = pending.pop() {
        match value {
            Json::Array(items) => {
                deepest = deepest.max(around + 1);
                pending.extend(items.iter().map(|item| (item, around + 1)));
            }
            Json::Object(fields) => {
                deepest = deepest.max(around + 1);
                pending.extend(fields.values().map(|item| (item, around + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Counts the bytes written to it, to size JSON without building it.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
