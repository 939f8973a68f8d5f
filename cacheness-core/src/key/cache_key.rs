use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{KeyError, hex};

/// The 128-bit key of an entry: the first 16 bytes of the blake3 digest of
/// the canonical encoding of its [`Params`](super::Params).
///
/// Displayed, parsed and serialized as 32 hex characters (lower case when
/// written, either case when read).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 16]);

impl CacheKey {
    /// A key from its raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes of the key.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The key as 32 lower-case hex characters.
    pub fn to_hex(&self) -> String {
        hex::to_lower(&self.0)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex::write_lower(&self.0, f)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({self})")
    }
}

impl FromStr for CacheKey {
    type Err = KeyError;

    /// Parses exactly 32 hex characters of either case.
    fn from_str(text: &str) -> Result<Self, KeyError> {
        hex::decode(text)
            .map(CacheKey)
            .ok_or_else(|| KeyError::InvalidKey {
                input: text.to_owned(),
            })
    }
}

impl Serialize for CacheKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(hex::Lower::new(&self.0).as_str())
    }
}

impl<'de> Deserialize<'de> for CacheKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CacheKeyVisitor)
    }
}

struct CacheKeyVisitor;

impl Visitor<'_> for CacheKeyVisitor {
    type Value = CacheKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a cache key of 32 hex characters")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<CacheKey, E> {
        text.parse().map_err(E::custom)
    }
}
