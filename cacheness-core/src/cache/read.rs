//! The get path: the entry, its stored bytes checked and decompressed, the value.

use std::any::type_name;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::Cache;
use super::options::GetOptions;
use crate::blob::MAX_HEADER_BYTES;
use crate::blob::check::{Damage, check_blob_name, check_params, check_stored};
use crate::blob::format::stored_offset;
use crate::clock::duration_ms;
use crate::codec::raw::decode_raw;
use crate::codec::{Codec, RAW_CODEC};
use crate::entry::{Entry, Location, SharedEntry};
use crate::error::{Error, Result};
use crate::key::{CacheKey, ToKey};

impl<C: Codec> Cache<C> {
    /// The value under `key`, or `None` if it is missing, expired or corrupted.
    ///
    /// An intact value that does not decode as `T` is an error, and the entry
    /// stays; so is an entry written with a codec this cache's codec does not
    /// read ([`Error::CodecMismatch`]; a [`NamedCodec`](crate::NamedCodec)
    /// reads every built-in codec). Entries of raw bytes read as any type that
    /// deserializes from bytes, such as `Vec<u8>`.
    pub fn get<T: DeserializeOwned>(&self, key: &impl ToKey) -> Result<Option<T>> {
        self.get_with(key, &GetOptions::default())
    }

    /// [`get`](Cache::get) with options, such as a maximum age.
    pub fn get_with<T: DeserializeOwned>(
        &self,
        key: &impl ToKey,
        options: &GetOptions,
    ) -> Result<Option<T>> {
        Ok(self
            .load_decoded(key.to_key(), options, false)?
            .map(|(value, _)| value))
    }

    /// The value under `key` together with its entry (metadata as of the read).
    pub fn get_with_entry<T: DeserializeOwned>(
        &self,
        key: &impl ToKey,
    ) -> Result<Option<(T, Entry)>> {
        Ok(self
            .load_decoded(key.to_key(), &GetOptions::default(), true)?
            .map(|(value, entry)| (value, SharedEntry::into_entry(entry))))
    }

    /// The stored value's bytes as they were encoded (decompressed, not decoded),
    /// whatever the codec.
    pub fn get_bytes(&self, key: &impl ToKey) -> Result<Option<Vec<u8>>> {
        Ok(self
            .load(key.to_key(), &GetOptions::default(), false)?
            .map(|(loaded, entry)| loaded.into_vec(&entry)))
    }

    /// Whether an unexpired entry exists under `key` (its bytes are not checked).
    pub fn contains(&self, key: &impl ToKey) -> Result<bool> {
        let now = self.clock.now_ms();
        Ok(self
            .backend
            .get_shared(&key.to_key())?
            .is_some_and(|entry| !entry.is_expired(now)))
    }

    /// The entry under `key` (metadata only), expired or not.
    pub fn entry(&self, key: &impl ToKey) -> Result<Option<Entry>> {
        self.backend.get(&key.to_key())
    }

    fn load_decoded<T: DeserializeOwned>(
        &self,
        key: CacheKey,
        options: &GetOptions,
        keep_entry: bool,
    ) -> Result<Option<(T, Arc<SharedEntry>)>> {
        let Some((loaded, entry)) = self.load(key, options, keep_entry)? else {
            return Ok(None);
        };
        let decoded = if entry.codec == RAW_CODEC {
            decode_raw(loaded.bytes(&entry))
        } else if entry.codec == self.codec.name() {
            match loaded {
                Loaded::Owned(mut bytes) => self.codec.decode(&mut bytes),
                Loaded::Inline => self.codec.decode_slice(loaded.bytes(&entry)),
            }
        } else {
            match self.codec.decode_named(&entry.codec, loaded.bytes(&entry)) {
                Some(decoded) => decoded,
                None => {
                    return Err(Error::CodecMismatch {
                        key,
                        stored: entry.codec.clone(),
                        requested: self.codec.name().to_owned(),
                    });
                }
            }
        };
        let value = decoded.map_err(|source| Error::Decode {
            key,
            type_name: type_name::<T>(),
            codec: entry.codec.clone(),
            source,
        })?;
        Ok(Some((value, entry)))
    }

    /// The decompressed stored bytes and the entry, recording the hit or miss.
    ///
    /// Without `keep_inline`, inline bytes are moved out of the returned entry
    /// instead of copied when the backend kept no share of it: a plain get has no
    /// use for them.
    fn load(
        &self,
        key: CacheKey,
        options: &GetOptions,
        keep_inline: bool,
    ) -> Result<Option<(Loaded, Arc<SharedEntry>)>> {
        let now = self.clock.now_ms();
        // A blob can vanish because another writer replaced the entry between our
        // metadata read and our file read: look again once before calling it damage.
        for attempt in 0..2 {
            let Some(mut entry) = self.backend.get_shared(&key)? else {
                self.record_miss(now);
                return Ok(None);
            };
            // Checked first, and never a reason to delete: an entry signed with
            // another key (or not yet signed) is a miss that stays, so a handle
            // with the wrong key cannot empty the cache. `verify` reports it.
            if let Some(signer) = &self.signer
                && !signer.verify(&entry)
            {
                self.mismatches.warn(&entry);
                self.record_miss(now);
                return Ok(None);
            }
            if entry.is_expired(now) {
                if !self.settings.read_only
                    && let Some(gone) = self.backend.remove_if_unchanged(&entry)?
                {
                    self.delete_blob(&gone);
                }
                self.record_miss(now);
                return Ok(None);
            }
            if options
                .max_age
                .is_some_and(|max_age| now.saturating_sub(entry.created_at) > duration_ms(max_age))
            {
                self.record_miss(now);
                return Ok(None);
            }
            let checked = entry.is_checked();
            match self.read_stored(&mut entry, keep_inline, checked)? {
                Ok(bytes) => {
                    if !checked && self.settings.verify_integrity {
                        // Its parameters and any inline bytes were hashed above.
                        entry.mark_checked();
                    }
                    self.record_hit(key, now, entry.accessed_at);
                    return Ok(Some((bytes, entry)));
                }
                Err(Damage::Missing) if attempt == 0 => continue,
                Err(damage) => {
                    let reason = match damage {
                        Damage::Missing => "blob file is missing".to_owned(),
                        Damage::Invalid(reason) => reason,
                    };
                    let path = self.blob_path(&entry);
                    if self.settings.read_only {
                        tracing::warn!(
                            key = %key,
                            path = ?path,
                            reason = %reason,
                            "corrupted cache entry read as a miss (read-only: kept)"
                        );
                        self.record_miss(now);
                        return Ok(None);
                    }
                    tracing::warn!(
                        key = %key,
                        path = ?path,
                        reason = %reason,
                        "removing corrupted cache entry"
                    );
                    if let Some(gone) = self.backend.remove_if_unchanged(&entry)? {
                        self.delete_blob(&gone);
                    }
                    self.record_miss(now);
                    return Ok(None);
                }
            }
        }
        self.record_miss(now);
        Ok(None)
    }

    /// Reads and checks an entry's stored bytes and decompresses them. An entry
    /// already `checked` (a shared entry that passed before) is not hashed
    /// again, except for bytes read from a blob file.
    fn read_stored(
        &self,
        entry: &mut Arc<SharedEntry>,
        keep_inline: bool,
        checked: bool,
    ) -> Result<Result<Loaded, Damage>> {
        // The parameters an entry was made from hash to its key: an entry whose key
        // was damaged on disk must not serve the bytes stored for another key (an
        // inline value has no blob name to betray it).
        if !checked
            && self.settings.verify_integrity
            && let Err(reason) = check_params(entry.params.as_ref(), entry.key)
        {
            return Ok(Err(Damage::Invalid(format!("the entry's {reason}"))));
        }
        let loaded = match &entry.location {
            Location::Inline(_) => match take_inline_bytes(entry, keep_inline) {
                Some(bytes) => Loaded::Owned(bytes),
                None => Loaded::Inline,
            },
            Location::Blob(name) => {
                let Some(blobs) = &self.blobs else {
                    return Ok(Err(Damage::Invalid(
                        "entry has a blob but the cache has no blob store".into(),
                    )));
                };
                // A name that is not one the store could have made is damage in the
                // metadata, not an I/O error; and the name carries the key: an
                // entry whose key was damaged on disk must not serve the bytes of
                // the key the blob belongs to.
                if let Err(reason) = check_blob_name(entry, name) {
                    return Ok(Err(Damage::Invalid(reason)));
                }
                // Never more than the entry's bytes and a header: a huge or
                // sparse file planted at the name is a size mismatch, not an
                // allocation of its length.
                let limit = MAX_HEADER_BYTES
                    .saturating_add(entry.stored_size)
                    .saturating_add(1);
                let Some(mut file) = blobs.read_limited(name, limit)? else {
                    return Ok(Err(Damage::Missing));
                };
                match stored_offset(&file) {
                    Ok(offset) => {
                        file.drain(..offset);
                        Loaded::Owned(file)
                    }
                    Err(error) => return Ok(Err(Damage::Invalid(error.to_string()))),
                }
            }
        };
        let hash = (self.settings.verify_integrity || self.signer.is_some())
            && !(checked && matches!(entry.location, Location::Inline(_)));
        match check_stored(entry, loaded.bytes(entry), hash) {
            Ok(Some(raw)) => Ok(Ok(Loaded::Owned(raw))),
            Ok(None) => Ok(Ok(loaded)),
            Err(reason) => Ok(Err(Damage::Invalid(reason))),
        }
    }
}

/// A read's stored bytes, checked and decompressed: the read's own, or the
/// shared entry's inline bytes as they are (read in place, not copied).
enum Loaded {
    Owned(Vec<u8>),
    Inline,
}

impl Loaded {
    fn bytes<'a>(&'a self, entry: &'a Entry) -> &'a [u8] {
        match (self, &entry.location) {
            (Loaded::Owned(bytes), _) => bytes,
            (Loaded::Inline, Location::Inline(bytes)) => bytes,
            (Loaded::Inline, Location::Blob(_)) => &[],
        }
    }

    fn into_vec(self, entry: &Entry) -> Vec<u8> {
        match self {
            Loaded::Owned(bytes) => bytes,
            Loaded::Inline => self.bytes(entry).to_vec(),
        }
    }
}

/// The inline bytes of `entry`, moved out when the caller does not keep them and
/// nobody else shares the entry; `None` otherwise (they are read in place).
fn take_inline_bytes(entry: &mut Arc<SharedEntry>, keep: bool) -> Option<Vec<u8>> {
    if keep {
        return None;
    }
    match SharedEntry::get_mut(entry)? {
        Entry {
            location: Location::Inline(bytes),
            ..
        } => Some(std::mem::take(bytes)),
        _ => None,
    }
}
