//! MessagePack, the default codec when compiled in.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Codec;
use crate::error::BoxError;

/// Values as MessagePack (rmp-serde), structs as maps with their field names.
///
/// Chosen as the binary default (docs/CODECS.md has the measurements): it is
/// self-describing, so everything serde can write reads back — tagged and
/// untagged enums, `#[serde(flatten)]`, `serde_json::Value`, NaN, 128-bit
/// integers — where bitcode and postcard store such values and then fail on
/// every read; its format is a published specification, not a crate version;
/// and on a ~200-byte record it decodes ~3× faster than JSON in ~2/3 of the
/// size. Field names (rather than positions) make a reordered struct a
/// decode error (a miss for `get_or_insert_with`), never swapped fields.
///
/// ```
/// use cacheness_core::{Codec, MsgpackCodec};
///
/// let bytes = MsgpackCodec.encode(&vec![0.5_f64, f64::NAN])?;
/// let read: Vec<f64> = MsgpackCodec.decode_slice(&bytes)?;
/// assert!(read[1].is_nan());
/// # Ok::<(), cacheness_core::BoxError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgpackCodec;

impl Codec for MsgpackCodec {
    fn name(&self) -> &str {
        "msgpack"
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        Ok(rmp_serde::to_vec_named(value)?)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &mut [u8]) -> Result<T, BoxError> {
        self.decode_slice(bytes)
    }

    fn decode_slice<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BoxError> {
        Ok(rmp_serde::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Sample {
        id: u64,
        name: String,
        scores: Vec<f64>,
    }

    /// The bytes entries named "msgpack" hold. If an rmp-serde release lays
    /// values out otherwise, stored entries would be misread: give the codec
    /// a new name (`msgpack2`) instead of changing these bytes.
    #[test]
    fn the_wire_format_of_msgpack_entries_is_frozen() {
        let sample = Sample {
            id: 7,
            name: "xgb".into(),
            scores: vec![0.5],
        };
        let bytes = MsgpackCodec.encode(&sample).unwrap();
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(
            hex,
            "83a2696407a46e616d65a3786762a673636f72657391cb3fe0000000000000"
        );
        assert_eq!(MsgpackCodec.decode_slice::<Sample>(&bytes).unwrap(), sample);
    }
}
