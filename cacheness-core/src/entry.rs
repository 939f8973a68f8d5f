//! The unified entry schema: one struct, identical for every backend.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::key::{CacheKey, Params};

/// User metadata attached to an entry: a JSON object.
pub type UserMetadata = serde_json::Map<String, serde_json::Value>;

/// Everything a backend stores about one cached value.
///
/// Field names are stable: the JSON backend writes them as they are, and the SQLite
/// backend uses them as column names. Times are integer milliseconds since the Unix
/// epoch (UTC), as read from the cache's [`Clock`](crate::Clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Entry {
    /// The entry's key.
    pub key: CacheKey,
    /// A namespace label chosen by the user ("" for none); lists and removals can filter on it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Free text describing the value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The Rust type the value was stored as (`std::any::type_name`), for humans.
    #[serde(default)]
    pub type_tag: String,
    /// The codec that encoded the value (`"json"`, `"raw"`, or a user codec's name).
    pub codec: String,
    /// The parameters the key was made from, when the key was made from parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Params>,
    /// When the entry was stored.
    pub created_at: u64,
    /// When the entry was last read (or stored).
    pub accessed_at: u64,
    /// When the entry stops being served; `None` for never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// How many times the entry has been read.
    #[serde(default)]
    pub access_count: u64,
    /// Size of the stored bytes (after compression).
    pub stored_size: u64,
    /// Size of the encoded value before compression.
    pub raw_size: u64,
    /// How the stored bytes are compressed.
    pub compression: Compression,
    /// blake3 of the stored bytes.
    pub content_hash: ContentHash,
    /// Where the stored bytes are.
    pub location: Location,
    /// A MAC over the entry, when signing is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Free user metadata.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub user_metadata: UserMetadata,
}

impl Entry {
    /// An entry for `key` whose stored bytes have hash `content_hash` and live
    /// at `location`; every other field is empty, zero or `None` (sizes: the
    /// inline bytes' length, or 0 for a blob). Backends decoding a stored entry
    /// set the remaining fields by name:
    ///
    /// ```
    /// use cacheness_core::{ContentHash, Entry, Location, key};
    ///
    /// let bytes = b"0.91".to_vec();
    /// let hash = ContentHash::of(&bytes);
    /// let mut entry = Entry::new(key!(model = "xgboost").key(), hash, Location::Inline(bytes));
    /// entry.created_at = 1_700_000_000_000;
    /// entry.accessed_at = entry.created_at;
    /// assert_eq!(entry.stored_size, 4);
    /// ```
    pub fn new(key: CacheKey, content_hash: ContentHash, location: Location) -> Entry {
        let size = match &location {
            Location::Inline(bytes) => bytes.len() as u64,
            Location::Blob(_) => 0,
        };
        Entry {
            key,
            prefix: String::new(),
            description: String::new(),
            type_tag: String::new(),
            codec: String::new(),
            params: None,
            created_at: 0,
            accessed_at: 0,
            expires_at: None,
            access_count: 0,
            stored_size: size,
            raw_size: size,
            compression: Compression::None,
            content_hash,
            location,
            signature: None,
            user_metadata: UserMetadata::new(),
        }
    }

    /// Whether the entry has expired at `now_ms`. An entry expires at its
    /// `expires_at` instant exactly.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at
            .is_some_and(|expires_at| expires_at <= now_ms)
    }

    /// The blob file name, when the bytes live in the blob store.
    pub fn blob_name(&self) -> Option<&str> {
        match &self.location {
            Location::Blob(name) => Some(name),
            Location::Inline(_) => None,
        }
    }

    /// Whether `other` is the same stored version of the same key: written by the
    /// same put. Used to remove an entry only if nobody replaced it meanwhile.
    pub fn same_version(&self, other: &Entry) -> bool {
        self.key == other.key
            && self.created_at == other.created_at
            && self.content_hash == other.content_hash
            && self.blob_name() == other.blob_name()
    }
}

/// An entry a backend keeps in memory and shares with its readers
/// ([`MetadataBackend::get_shared`](crate::MetadataBackend::get_shared)): a read
/// takes a reference instead of copying strings, parameters and inline bytes.
///
/// It also remembers that the engine has checked it: that its parameters hash to
/// its key and its inline bytes to its content hash. Those are facts about the
/// entry's data, so a shared entry is hashed once, not on every read. Any change
/// goes through [`SharedEntry::make_mut`] or [`SharedEntry::get_mut`], which
/// forget the check. (A signature is a matter of each cache's key, and is
/// checked on every read.)
///
/// ```
/// use std::sync::Arc;
/// use cacheness_core::SharedEntry;
/// # fn change(mut shared: Arc<SharedEntry>) {
/// // A backend moving an entry's access time, without disturbing readers that
/// // still hold the old version:
/// SharedEntry::make_mut(&mut shared).access_count += 1;
/// # }
/// ```
#[derive(Debug)]
// The mark first, in the cache line an `Arc`'s reference counts share, which a
// read touches anyway: a hit in a memory layer then reads one line less.
#[repr(C)]
pub struct SharedEntry {
    checked: AtomicBool,
    entry: Entry,
}

impl SharedEntry {
    /// Wraps `entry`, not yet checked.
    pub fn new(entry: Entry) -> Self {
        SharedEntry {
            entry,
            checked: AtomicBool::new(false),
        }
    }

    /// The entry.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// The entry, copied if others share it.
    pub fn into_entry(this: Arc<SharedEntry>) -> Entry {
        match Arc::try_unwrap(this) {
            Ok(shared) => shared.entry,
            Err(this) => this.entry.clone(),
        }
    }

    /// The entry to change, copied first if others share it (they keep the
    /// version they read). The engine's check is forgotten.
    pub fn make_mut(this: &mut Arc<SharedEntry>) -> &mut Entry {
        let shared = Arc::make_mut(this);
        *shared.checked.get_mut() = false;
        &mut shared.entry
    }

    /// The entry to change, if nobody else shares it. The engine's check is
    /// forgotten.
    pub fn get_mut(this: &mut Arc<SharedEntry>) -> Option<&mut Entry> {
        let shared = Arc::get_mut(this)?;
        *shared.checked.get_mut() = false;
        Some(&mut shared.entry)
    }

    /// Whether the engine has checked the parameters and inline bytes.
    pub(crate) fn is_checked(&self) -> bool {
        self.checked.load(Ordering::Relaxed)
    }

    /// Records that the engine has checked the parameters and inline bytes.
    pub(crate) fn mark_checked(&self) {
        self.checked.store(true, Ordering::Relaxed);
    }
}

impl Clone for SharedEntry {
    fn clone(&self) -> Self {
        SharedEntry {
            entry: self.entry.clone(),
            checked: AtomicBool::new(self.is_checked()),
        }
    }
}

impl std::ops::Deref for SharedEntry {
    type Target = Entry;

    fn deref(&self) -> &Entry {
        &self.entry
    }
}

impl From<Entry> for SharedEntry {
    fn from(entry: Entry) -> Self {
        SharedEntry::new(entry)
    }
}

/// One entry of a listing ([`Cache::list`](crate::Cache::list),
/// [`MetadataBackend::scan_listed`](crate::MetadataBackend::scan_listed)): the
/// backend's own shared copy where it keeps entries in memory, else an entry of
/// its own. It dereferences to the [`Entry`] either way.
///
/// Sharing is what makes a listing of a memory-resident backend cheap: handing
/// out a reference count instead of copying every entry's strings, parameters
/// and inline bytes.
///
/// ```
/// use cacheness_core::{Cache, Codec, Entry, ListOptions, key};
/// use cacheness_memory::MemoryBackend;
///
/// let dir = tempfile::tempdir()?;
/// let cache = Cache::builder().dir(dir.path()).open(MemoryBackend::new())?;
/// cache.put(&key!(model = "xgboost"), &1u32)?;
/// let listed = cache.list(&ListOptions::default())?;
/// assert_eq!(listed[0].codec, cache.codec().name()); // the entry's fields, through `Deref`
/// let owned: Entry = listed[0].clone().into_entry();
/// assert_eq!(owned, listed[0]);
/// assert_eq!(serde_json::to_value(&listed[0])?, serde_json::to_value(&owned)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ListedEntry(Listed);

#[derive(Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "boxing the owned entry would cost a backend that decodes rows the allocation sharing saves the others"
)]
enum Listed {
    Owned(Entry),
    Shared(Arc<SharedEntry>),
}

impl ListedEntry {
    /// The entry, copied only if it is shared with others.
    pub fn into_entry(self) -> Entry {
        match self.0 {
            Listed::Owned(entry) => entry,
            Listed::Shared(shared) => SharedEntry::into_entry(shared),
        }
    }

    /// The entry.
    pub fn entry(&self) -> &Entry {
        self
    }
}

impl std::ops::Deref for ListedEntry {
    type Target = Entry;

    fn deref(&self) -> &Entry {
        match &self.0 {
            Listed::Owned(entry) => entry,
            Listed::Shared(shared) => shared.entry(),
        }
    }
}

impl From<Entry> for ListedEntry {
    fn from(entry: Entry) -> Self {
        ListedEntry(Listed::Owned(entry))
    }
}

impl From<Arc<SharedEntry>> for ListedEntry {
    fn from(shared: Arc<SharedEntry>) -> Self {
        ListedEntry(Listed::Shared(shared))
    }
}

impl From<ListedEntry> for Entry {
    fn from(listed: ListedEntry) -> Self {
        listed.into_entry()
    }
}

/// Serializes as the [`Entry`] it holds.
impl Serialize for ListedEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Entry::serialize(self, serializer)
    }
}

impl fmt::Debug for ListedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Entry::fmt(self, f)
    }
}

impl PartialEq for ListedEntry {
    fn eq(&self, other: &ListedEntry) -> bool {
        **self == **other
    }
}

impl PartialEq<Entry> for ListedEntry {
    fn eq(&self, other: &Entry) -> bool {
        **self == *other
    }
}

impl PartialEq<ListedEntry> for Entry {
    fn eq(&self, other: &ListedEntry) -> bool {
        *self == **other
    }
}

/// How stored bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Compression {
    /// Stored as encoded.
    None,
    /// lz4 block format with the uncompressed size prepended (`lz4_flex`).
    Lz4,
}

impl Compression {
    /// The name used in storage: `"none"` or `"lz4"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            other => Err(format!("unknown compression `{other}`")),
        }
    }
}

/// Where an entry's stored bytes live.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// In the entry itself (small values, when the backend allows it).
    Inline(#[serde(with = "base64_bytes")] Vec<u8>),
    /// In the blob store, under this name (`ab/<key>-<nonce>`).
    Blob(String),
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Inline(bytes) => write!(f, "Inline({} bytes)", bytes.len()),
            Location::Blob(name) => f.debug_tuple("Blob").field(name).finish(),
        }
    }
}

/// The blake3 hash of an entry's stored bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::key::hex::write_lower(&self.0, f)
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

impl FromStr for ContentHash {
    type Err = String;

    fn from_str(hex: &str) -> Result<Self, Self::Err> {
        if hex.len() != 64 {
            return Err(format!("content hash `{hex}` is not 64 hex characters"));
        }
        crate::key::hex::decode(hex)
            .map(ContentHash)
            .ok_or_else(|| format!("content hash `{hex}` is not hexadecimal"))
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(crate::key::hex::Lower::new(&self.0).as_str())
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hex = std::borrow::Cow::<str>::deserialize(deserializer)?;
        hex.parse().map_err(serde::de::Error::custom)
    }
}

/// Inline bytes as standard base64 in human-readable formats, raw bytes otherwise.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&STANDARD.encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
            STANDARD
                .decode(text.as_bytes())
                .map_err(serde::de::Error::custom)
        } else {
            Vec::<u8>::deserialize(deserializer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            key: CacheKey::from_bytes([7; 16]),
            prefix: "models".into(),
            description: "a model".into(),
            type_tag: "u32".into(),
            codec: "json".into(),
            params: None,
            created_at: 10,
            accessed_at: 20,
            expires_at: Some(30),
            access_count: 2,
            stored_size: 3,
            raw_size: 3,
            compression: Compression::None,
            content_hash: ContentHash::of(b"abc"),
            location: Location::Inline(b"abc".to_vec()),
            signature: None,
            user_metadata: UserMetadata::new(),
        }
    }

    #[test]
    fn a_shared_entry_forgets_its_check_when_changed() {
        let mut shared = Arc::new(SharedEntry::new(sample()));
        assert!(!shared.is_checked());
        shared.mark_checked();
        let reader = Arc::clone(&shared);
        assert!(reader.is_checked(), "readers share the check");
        SharedEntry::make_mut(&mut shared).access_count += 1;
        assert!(!shared.is_checked(), "a changed copy is checked again");
        assert!(reader.is_checked(), "the reader's version is untouched");
        assert_eq!(reader.access_count, 2);

        let mut alone = Arc::new(SharedEntry::new(sample()));
        alone.mark_checked();
        SharedEntry::get_mut(&mut alone).unwrap().type_tag = "u64".into();
        assert!(!alone.is_checked());
        assert_eq!(SharedEntry::into_entry(alone).type_tag, "u64");
    }

    #[test]
    fn entry_round_trips_through_json_with_stable_names() {
        let entry = sample();
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["key"], "07070707070707070707070707070707");
        assert_eq!(json["location"]["inline"], "YWJj");
        assert_eq!(json["compression"], "none");
        assert_eq!(json["expires_at"], 30);
        let back: Entry = serde_json::from_value(json).unwrap();
        assert_eq!(back, entry);
    }

    #[test]
    fn expiry_is_inclusive_of_the_instant() {
        let entry = sample();
        assert!(!entry.is_expired(29));
        assert!(entry.is_expired(30));
        let forever = Entry {
            expires_at: None,
            ..sample()
        };
        assert!(!forever.is_expired(u64::MAX));
    }

    #[test]
    fn content_hash_parses_its_display() {
        let hash = ContentHash::of(b"x");
        assert_eq!(hash.to_string().parse::<ContentHash>().unwrap(), hash);
        assert!("zz".parse::<ContentHash>().is_err());
        assert!("g".repeat(64).parse::<ContentHash>().is_err());
    }
}
