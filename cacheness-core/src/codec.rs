//! How values become bytes and back.

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

    /// Decodes a value from `bytes`, which the codec may modify in place (simd-json
    /// parses in place).
    fn decode<T: DeserializeOwned>(&self, bytes: &mut [u8]) -> Result<T, BoxError>;

    /// Decodes a value from `bytes` it may not modify: the inline bytes of an
    /// entry a memory backend shares, read in place. The default copies them and
    /// calls [`decode`](Codec::decode); a codec that reads without writing
    /// overrides it to save the copy.
    fn decode_slice<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BoxError> {
        self.decode(&mut bytes.to_vec())
    }
}

/// The codec entries stored with [`Cache::put_bytes`](crate::Cache::put_bytes) carry:
/// the bytes are the value.
pub const RAW_CODEC: &str = "raw";

/// The default codec: JSON, written by serde_json, read by serde_json for small
/// values and by simd-json for large ones (where its SIMD parsing pays).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

/// From this size on, decoding uses simd-json.
const SIMD_JSON_MIN_LEN: usize = 16 * 1024;

impl Codec for JsonCodec {
    fn name(&self) -> &str {
        "json"
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(value)?)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &mut [u8]) -> Result<T, BoxError> {
        if bytes.len() >= SIMD_JSON_MIN_LEN {
            Ok(simd_json::serde::from_slice(bytes)?)
        } else {
            Ok(serde_json::from_slice(bytes)?)
        }
    }

    fn decode_slice<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BoxError> {
        if bytes.len() >= SIMD_JSON_MIN_LEN {
            self.decode(&mut bytes.to_vec())
        } else {
            Ok(serde_json::from_slice(bytes)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_small_and_large_values() {
        let small = vec![1u32, 2, 3];
        let mut bytes = JsonCodec.encode(&small).unwrap();
        assert_eq!(JsonCodec.decode_slice::<Vec<u32>>(&bytes).unwrap(), small);
        assert_eq!(JsonCodec.decode::<Vec<u32>>(&mut bytes).unwrap(), small);

        let large: Vec<String> = (0..5_000).map(|i| format!("value {i}")).collect();
        let mut bytes = JsonCodec.encode(&large).unwrap();
        assert!(bytes.len() >= SIMD_JSON_MIN_LEN);
        assert_eq!(
            JsonCodec.decode_slice::<Vec<String>>(&bytes).unwrap(),
            large
        );
        assert_eq!(JsonCodec.decode::<Vec<String>>(&mut bytes).unwrap(), large);
    }

    #[test]
    fn json_reports_a_type_mismatch() {
        let mut bytes = JsonCodec.encode("text").unwrap();
        assert!(JsonCodec.decode::<u32>(&mut bytes).is_err());
    }
}
