//! How values become bytes and back: the [`Codec`] trait, the built-in codecs
//! ([`JsonCodec`], and MessagePack with feature `msgpack`) and [`NamedCodec`],
//! which picks one by name. Values that serialize as bytes skip the codec
//! ([`raw`]).

mod json;
#[cfg(feature = "msgpack")]
mod msgpack;
pub(crate) mod raw;

pub use json::JsonCodec;

/// Why a serializer or deserializer of this module gave up: the message of a
/// codec error.
#[derive(Debug)]
pub(crate) struct Refusal(String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

impl serde::ser::Error for Refusal {
    fn custom<M: std::fmt::Display>(message: M) -> Self {
        Refusal(message.to_string())
    }
}

impl serde::de::Error for Refusal {
    fn custom<M: std::fmt::Display>(message: M) -> Self {
        Refusal(message.to_string())
    }
}
#[cfg(feature = "msgpack")]
pub use msgpack::MsgpackCodec;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::BoxError;

/// Turns serde values into stored bytes and back.
///
/// The codec's [`name`](Codec::name) is recorded in every entry it writes; a read
/// with a codec of another name is refused rather than misread. A cache uses one
/// codec, chosen by its type parameter: `Cache<MyCodec>`.
///
/// ```
/// use cacheness_core::{BoxError, Codec};
/// use serde::{Serialize, de::DeserializeOwned};
///
/// /// Stores values as pretty-printed JSON (to read blob files by eye).
/// #[derive(Debug, Default)]
/// struct PrettyJson;
///
/// impl Codec for PrettyJson {
///     fn name(&self) -> &str { "pretty-json" }
///     fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError> {
///         Ok(serde_json::to_vec_pretty(value)?)
///     }
///     fn decode<T: DeserializeOwned>(&self, bytes: &mut [u8]) -> Result<T, BoxError> {
///         Ok(serde_json::from_slice(bytes)?)
///     }
/// }
/// # let bytes = PrettyJson.encode(&[1, 2]).unwrap();
/// # assert!(bytes.contains(&b'\n'));
/// ```
pub trait Codec: Send + Sync + std::fmt::Debug + 'static {
    /// The name stored in entries, e.g. `"json"`. Names are compared exactly.
    fn name(&self) -> &str;

    /// Encodes `value`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError>;

    /// Decodes a value from `bytes`, which the codec may modify in place (a
    /// parser that works in place, such as simd-json, can).
    fn decode<T: DeserializeOwned>(&self, bytes: &mut [u8]) -> Result<T, BoxError>;

    /// Decodes a value from `bytes` it may not modify: the inline bytes of an
    /// entry a memory backend shares, read in place. The default copies them and
    /// calls [`decode`](Codec::decode); a codec that reads without writing
    /// overrides it to save the copy.
    fn decode_slice<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BoxError> {
        self.decode(&mut bytes.to_vec())
    }

    /// Decodes bytes that the codec named `codec` wrote, if this codec reads
    /// that codec's values; `None` if it does not (the read is then an
    /// [`Error::CodecMismatch`](crate::Error::CodecMismatch), never a misread).
    /// The default reads its own name only; [`NamedCodec`] reads every
    /// built-in codec.
    fn decode_named<T: DeserializeOwned>(
        &self,
        codec: &str,
        bytes: &[u8],
    ) -> Option<Result<T, BoxError>> {
        (codec == self.name()).then(|| self.decode_slice(bytes))
    }
}

/// The codec entries stored with [`Cache::put_bytes`](crate::Cache::put_bytes) carry,
/// and those of values that serialize as bytes (`Vec<u8>`, `serde_bytes`): the
/// bytes are the value, whatever the cache's codec.
pub const RAW_CODEC: &str = "raw";

/// One of the codecs built into cacheness, chosen by name at run time: what a
/// cache opened from a configuration (`codec = "json"`) stores values with.
///
/// A cache of a `NamedCodec` writes with it and reads the entries of every
/// built-in codec, each with the codec its entry records.
///
/// [`NamedCodec::default`] is the codec new caches use: MessagePack when the
/// `msgpack` feature is on (the facade's default), JSON otherwise. Names parse
/// case-insensitively (`"JSON"`, `" json "`); an unknown or not compiled-in name
/// is an [`UnknownCodec`] error listing the available ones.
///
/// ```
/// use cacheness_core::{Codec, NamedCodec};
///
/// let json: NamedCodec = "json".parse()?;
/// assert_eq!(json.name(), "json");
/// assert!(NamedCodec::ALL.contains(&json));
/// # Ok::<(), cacheness_core::UnknownCodec>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NamedCodec {
    /// [`MsgpackCodec`]: compact and fast, reads back every serde type.
    #[cfg(feature = "msgpack")]
    Msgpack,
    /// [`JsonCodec`]: values readable by eye.
    Json,
}

impl Default for NamedCodec {
    fn default() -> Self {
        NamedCodec::ALL[0]
    }
}

impl NamedCodec {
    /// Every codec compiled in, the default first.
    pub const ALL: &'static [NamedCodec] = &[
        #[cfg(feature = "msgpack")]
        NamedCodec::Msgpack,
        NamedCodec::Json,
    ];

    /// The name stored in entries and written in configurations.
    pub const fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "msgpack")]
            NamedCodec::Msgpack => "msgpack",
            NamedCodec::Json => "json",
        }
    }
}

/// A codec name that is not one of [`NamedCodec::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown codec `{name}`; available: {}",
    NamedCodec::ALL.iter().map(|codec| codec.name()).collect::<Vec<_>>().join(", ")
)]
pub struct UnknownCodec {
    /// The name asked for.
    pub name: String,
}

impl std::str::FromStr for NamedCodec {
    type Err = UnknownCodec;

    fn from_str(name: &str) -> Result<Self, UnknownCodec> {
        let wanted = name.trim();
        NamedCodec::ALL
            .iter()
            .copied()
            .find(|codec| codec.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownCodec {
                name: wanted.to_owned(),
            })
    }
}

impl std::fmt::Display for NamedCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(NamedCodec::name(*self))
    }
}

impl serde::Serialize for NamedCodec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(NamedCodec::name(*self))
    }
}

impl<'de> serde::Deserialize<'de> for NamedCodec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl Codec for NamedCodec {
    fn name(&self) -> &str {
        NamedCodec::name(*self)
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        match self {
            #[cfg(feature = "msgpack")]
            NamedCodec::Msgpack => MsgpackCodec.encode(value),
            NamedCodec::Json => JsonCodec.encode(value),
        }
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &mut [u8]) -> Result<T, BoxError> {
        match self {
            #[cfg(feature = "msgpack")]
            NamedCodec::Msgpack => MsgpackCodec.decode(bytes),
            NamedCodec::Json => JsonCodec.decode(bytes),
        }
    }

    fn decode_slice<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BoxError> {
        match self {
            #[cfg(feature = "msgpack")]
            NamedCodec::Msgpack => MsgpackCodec.decode_slice(bytes),
            NamedCodec::Json => JsonCodec.decode_slice(bytes),
        }
    }

    /// Reads the values of every built-in codec (each entry records its
    /// own), whichever one this cache writes with: a cache whose codec
    /// changed, or a dir from before its settings were stored, reads all its
    /// entries.
    fn decode_named<T: DeserializeOwned>(
        &self,
        codec: &str,
        bytes: &[u8],
    ) -> Option<Result<T, BoxError>> {
        let writer: NamedCodec = NamedCodec::ALL
            .iter()
            .copied()
            .find(|named| named.name() == codec)?;
        Some(writer.decode_slice(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_codecs_parse_by_name_and_list_the_available_ones() {
        assert_eq!(" JSON ".parse::<NamedCodec>(), Ok(NamedCodec::Json));
        let error = "yaml".parse::<NamedCodec>().unwrap_err();
        assert!(
            error.to_string().contains("unknown codec `yaml`"),
            "{error}"
        );
        assert!(error.to_string().contains("json"), "{error}");
        for codec in NamedCodec::ALL {
            assert_eq!(codec.to_string().parse::<NamedCodec>(), Ok(*codec));
            let quoted = serde_json::to_string(codec).unwrap();
            assert_eq!(serde_json::from_str::<NamedCodec>(&quoted).unwrap(), *codec);
        }
        assert_eq!(NamedCodec::default(), NamedCodec::ALL[0]);
        #[cfg(feature = "msgpack")]
        assert_eq!(NamedCodec::default(), NamedCodec::Msgpack);
    }
}
