//! Values that are bytes (`Vec<u8>`, `[u8; N]`, `serde_bytes::ByteBuf`) are
//! stored as their bytes, whatever the codec, under [`RAW_CODEC`]: a MiB of
//! bytes stays a MiB instead of becoming 3.7 MB of JSON numbers. A raw entry
//! reads back as any type that deserializes from bytes or from a sequence of
//! `u8`, so `put_bytes` and `get::<Vec<u8>>` (and `put(&vec_u8)` and
//! `get_bytes`) meet.
//!
//! [`RAW_CODEC`]: super::RAW_CODEC

use serde::de::value::SeqDeserializer;
use serde::de::{self, DeserializeOwned, Visitor};
use serde::ser::{self, Impossible, Serialize};

use super::Refusal;
use crate::error::BoxError;

/// The bytes `value` serializes as, if it serializes as bytes (or as a
/// non-empty sequence of `u8`: an empty sequence could be a value of any
/// type); `None` at the first sign of anything else, so a value that is not
/// bytes costs one call.
pub(crate) fn bytes_of<T: Serialize + ?Sized>(value: &T) -> Option<Vec<u8>> {
    value.serialize(Probe).ok()
}

/// Reads a raw entry's bytes as `T`.
pub(crate) fn decode_raw<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BoxError> {
    Ok(T::deserialize(RawBytes(bytes))?)
}

fn not_bytes<T>() -> Result<T, Refusal> {
    Err(Refusal(String::new()))
}

/// Serializes bytes and sequences of `u8` into a buffer; refuses the rest.
struct Probe;

/// A sequence being probed.
struct Collect(Vec<u8>);

/// Accepts one `u8`.
struct Byte;

macro_rules! refuse {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {$(
        fn $method(self, $(_: $arg),*) -> Result<Self::Ok, Refusal> {
            not_bytes()
        }
    )*};
}

macro_rules! refuse_compound {
    ($ok:ty) => {
        type SerializeTupleStruct = Impossible<$ok, Refusal>;
        type SerializeTupleVariant = Impossible<$ok, Refusal>;
        type SerializeMap = Impossible<$ok, Refusal>;
        type SerializeStruct = Impossible<$ok, Refusal>;
        type SerializeStructVariant = Impossible<$ok, Refusal>;

        refuse!(
            serialize_bool(bool),
            serialize_i8(i8),
            serialize_i16(i16),
            serialize_i32(i32),
            serialize_i64(i64),
            serialize_i128(i128),
            serialize_u16(u16),
            serialize_u32(u32),
            serialize_u64(u64),
            serialize_u128(u128),
            serialize_f32(f32),
            serialize_f64(f64),
            serialize_char(char),
            serialize_str(&str),
            serialize_none(),
            serialize_unit(),
            serialize_unit_struct(&'static str),
            serialize_unit_variant(&'static str, u32, &'static str),
        );

        fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<$ok, Refusal> {
            not_bytes()
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<$ok, Refusal> {
            not_bytes()
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, Refusal> {
            not_bytes()
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Refusal> {
            not_bytes()
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Refusal> {
            not_bytes()
        }
        fn serialize_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStruct, Refusal> {
            not_bytes()
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Refusal> {
            not_bytes()
        }
    };
}

impl ser::Serializer for Probe {
    type Ok = Vec<u8>;
    type Error = Refusal;
    type SerializeSeq = Collect;
    type SerializeTuple = Collect;
    refuse_compound!(Vec<u8>);

    fn serialize_u8(self, _: u8) -> Result<Vec<u8>, Refusal> {
        not_bytes()
    }
    fn serialize_bytes(self, bytes: &[u8]) -> Result<Vec<u8>, Refusal> {
        Ok(bytes.to_vec())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Vec<u8>, Refusal> {
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Collect, Refusal> {
        Ok(Collect(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<Collect, Refusal> {
        Ok(Collect(Vec::with_capacity(len)))
    }
}

impl ser::Serializer for Byte {
    type Ok = u8;
    type Error = Refusal;
    type SerializeSeq = Impossible<u8, Refusal>;
    type SerializeTuple = Impossible<u8, Refusal>;
    refuse_compound!(u8);

    fn serialize_u8(self, byte: u8) -> Result<u8, Refusal> {
        Ok(byte)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<u8, Refusal> {
        not_bytes()
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<u8, Refusal> {
        not_bytes()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Refusal> {
        not_bytes()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Refusal> {
        not_bytes()
    }
}

impl Collect {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refusal> {
        self.0.push(value.serialize(Byte)?);
        Ok(())
    }
}

impl Collect {
    fn end(self) -> Result<Vec<u8>, Refusal> {
        match self.0.is_empty() {
            true => not_bytes(),
            false => Ok(self.0),
        }
    }
}

impl ser::SerializeSeq for Collect {
    type Ok = Vec<u8>;
    type Error = Refusal;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refusal> {
        self.push(value)
    }
    fn end(self) -> Result<Vec<u8>, Refusal> {
        Collect::end(self)
    }
}

impl ser::SerializeTuple for Collect {
    type Ok = Vec<u8>;
    type Error = Refusal;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refusal> {
        self.push(value)
    }
    fn end(self) -> Result<Vec<u8>, Refusal> {
        Collect::end(self)
    }
}

/// A raw entry's bytes, offered as bytes or as a sequence of `u8`.
struct RawBytes<'a>(&'a [u8]);

impl<'de> de::Deserializer<'de> for RawBytes<'_> {
    type Error = Refusal;

    /// A sequence of `u8`: what a self-describing reader (`serde_json::Value`,
    /// an untagged enum) makes of the value, as from any codec.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refusal> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refusal> {
        visitor.visit_bytes(self.0)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refusal> {
        visitor.visit_bytes(self.0)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refusal> {
        visitor.visit_bytes(self.0)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refusal> {
        visitor.visit_bytes(self.0)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refusal> {
        visitor.visit_seq(SeqDeserializer::new(self.0.iter().copied()))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Refusal> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Refusal> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        option unit unit_struct tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn byte_values_are_found_and_everything_else_passes_at_once() {
        assert_eq!(bytes_of(&vec![1u8, 2, 3]), Some(vec![1, 2, 3]));
        assert_eq!(bytes_of(&[7u8; 4]), Some(vec![7; 4]));
        assert_eq!(bytes_of(b"abc".as_slice()), Some(b"abc".to_vec()));
        // Empty: it could be a value of any type, so the codec stores it.
        assert_eq!(bytes_of(&Vec::<u8>::new()), None);
        assert_eq!(bytes_of(&vec![1u16, 2]), None);
        assert_eq!(bytes_of(&vec![vec![1u8]]), None);
        assert_eq!(bytes_of("text"), None);
        assert_eq!(bytes_of(&(1u8, 2u32)), None);
    }

    #[test]
    fn raw_bytes_read_as_byte_types_and_refuse_others() {
        let bytes = [3u8, 1, 2];
        assert_eq!(decode_raw::<Vec<u8>>(&bytes).unwrap(), vec![3, 1, 2]);
        assert_eq!(decode_raw::<[u8; 3]>(&bytes).unwrap(), [3, 1, 2]);
        assert_eq!(
            decode_raw::<BTreeSet<u8>>(&bytes).unwrap(),
            BTreeSet::from([1, 2, 3])
        );
        // Text reads as a String when it is UTF-8, and is refused otherwise.
        assert_eq!(decode_raw::<String>(b"text").unwrap(), "text");
        assert!(decode_raw::<String>(&[0xff, 0xfe]).is_err());
        assert!(decode_raw::<u32>(&bytes).is_err());
        assert!(decode_raw::<Vec<String>>(&bytes).is_err());
    }
}
