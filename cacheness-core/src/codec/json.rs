//! JSON, with what JSON cannot hold refused at put.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde::ser::{self, Impossible};

use super::{Codec, Refusal};
use crate::error::BoxError;

/// Values as JSON text (serde_json), readable by eye in blob files and the
/// metadata.
///
/// What JSON cannot hold is refused when the value is put, with the place in
/// the value named, rather than stored as something that cannot be read back:
/// NaN and infinite floats (serde_json writes them as `null`) and map keys
/// that are not strings, numbers, booleans or unit enum variants. One parser
/// (serde_json, with exact float round trips) reads values of every size.
///
/// ```
/// use cacheness_core::{Codec, JsonCodec};
///
/// let error = JsonCodec.encode(&vec![1.0, f64::NAN]).unwrap_err();
/// assert!(error.to_string().contains("[1]"), "{error}");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    fn name(&self) -> &str {
        "json"
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, BoxError> {
        value.serialize(&mut Check::default())?;
        Ok(serde_json::to_vec(value)?)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &mut [u8]) -> Result<T, BoxError> {
        self.decode_slice(bytes)
    }

    fn decode_slice<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, BoxError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// One step into a value.
enum Step {
    Field(&'static str),
    Index(usize),
    Key(String),
}

/// Walks a value without writing it, refusing what JSON cannot hold.
#[derive(Default)]
struct Check {
    path: Vec<Step>,
}

impl Check {
    fn refuse(&self, what: &str) -> Refusal {
        let mut path = String::from("the value");
        for step in &self.path {
            match step {
                Step::Field(name) => {
                    path.push('.');
                    path.push_str(name);
                }
                Step::Index(index) => path.push_str(&format!("[{index}]")),
                Step::Key(key) => path.push_str(&format!("[{key:?}]")),
            }
        }
        Refusal(format!(
            "{path} is {what}, which JSON cannot hold; use the msgpack codec to store it"
        ))
    }

    fn float(&self, value: f64) -> Result<(), Refusal> {
        match value {
            value if value.is_nan() => Err(self.refuse("NaN")),
            value if value.is_infinite() => Err(self.refuse("an infinite float")),
            _ => Ok(()),
        }
    }

    fn within<T: Serialize + ?Sized>(&mut self, step: Step, value: &T) -> Result<(), Refusal> {
        self.path.push(step);
        value.serialize(&mut *self)?;
        self.path.pop();
        Ok(())
    }
}

/// A compound value being walked: its elements are numbered as they come.
struct Elements<'a> {
    check: &'a mut Check,
    next: usize,
    /// The label of the map value to come, from its key.
    key: Option<String>,
}

impl<'a> ser::Serializer for &'a mut Check {
    type Ok = ();
    type Error = Refusal;
    type SerializeSeq = Elements<'a>;
    type SerializeTuple = Elements<'a>;
    type SerializeTupleStruct = Elements<'a>;
    type SerializeTupleVariant = Elements<'a>;
    type SerializeMap = Elements<'a>;
    type SerializeStruct = Elements<'a>;
    type SerializeStructVariant = Elements<'a>;

    fn serialize_bool(self, _: bool) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_i128(self, _: i128) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_u128(self, _: u128) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_f32(self, value: f32) -> Result<(), Refusal> {
        self.float(value.into())
    }
    fn serialize_f64(self, value: f64) -> Result<(), Refusal> {
        self.float(value)
    }
    fn serialize_char(self, _: char) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_str(self, _: &str) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Refusal> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), Refusal> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Refusal> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Refusal> {
        self.within(Step::Field(variant), value)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Elements<'a>, Refusal> {
        Ok(self.elements())
    }
    fn serialize_tuple(self, _: usize) -> Result<Elements<'a>, Refusal> {
        Ok(self.elements())
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Elements<'a>, Refusal> {
        Ok(self.elements())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Elements<'a>, Refusal> {
        Ok(self.elements())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Elements<'a>, Refusal> {
        Ok(self.elements())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Elements<'a>, Refusal> {
        Ok(self.elements())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Elements<'a>, Refusal> {
        Ok(self.elements())
    }
}

impl Check {
    fn elements(&mut self) -> Elements<'_> {
        Elements {
            check: self,
            next: 0,
            key: None,
        }
    }
}

impl Elements<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refusal> {
        let index = self.next;
        self.next += 1;
        self.check.within(Step::Index(index), value)
    }
}

macro_rules! sequence {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Elements<'_> {
            type Ok = ();
            type Error = Refusal;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refusal> {
                self.element(value)
            }
            fn end(self) -> Result<(), Refusal> {
                Ok(())
            }
        }
    )*};
}

sequence!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Elements<'_> {
            type Ok = ();
            type Error = Refusal;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                name: &'static str,
                value: &T,
            ) -> Result<(), Refusal> {
                self.check.within(Step::Field(name), value)
            }
            fn end(self) -> Result<(), Refusal> {
                Ok(())
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Elements<'_> {
    type Ok = ();
    type Error = Refusal;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Refusal> {
        match key.serialize(KeyText) {
            Ok(text) => {
                self.key = Some(text);
                Ok(())
            }
            Err(kind) => {
                self.check.path.push(Step::Index(self.next));
                let refused = self.check.refuse(&format!("a map key that is {}", kind.0));
                self.check.path.pop();
                Err(refused)
            }
        }
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refusal> {
        self.next += 1;
        match self.key.take() {
            Some(key) => self.check.within(Step::Key(key), value),
            None => self.element(value),
        }
    }

    fn end(self) -> Result<(), Refusal> {
        Ok(())
    }
}

/// A map key as the text JSON writes for it, or what kind of value it is
/// when JSON has no text for it.
struct KeyText;

impl ser::Serializer for KeyText {
    type Ok = String;
    type Error = Refusal;
    type SerializeSeq = Impossible<String, Refusal>;
    type SerializeTuple = Impossible<String, Refusal>;
    type SerializeTupleStruct = Impossible<String, Refusal>;
    type SerializeTupleVariant = Impossible<String, Refusal>;
    type SerializeMap = Impossible<String, Refusal>;
    type SerializeStruct = Impossible<String, Refusal>;
    type SerializeStructVariant = Impossible<String, Refusal>;

    fn serialize_bool(self, value: bool) -> Result<String, Refusal> {
        Ok(value.to_string())
    }
    fn serialize_i8(self, value: i8) -> Result<String, Refusal> {
        Ok(value.to_string())
    }
    fn serialize_i16(self, value: i16) -> Result<String, Refusal> {
        Ok(value.to_string())
    }
    fn serialize_i32(self, value: i32) -> Result<String, Refusal> {
        Ok(value.to_string())
    }
    fn serialize_i64(self, value: i64) -> Result<String, Refusal> {
        Ok(value.to_string())
    }
    fn serialize_i128(self, value: i128) -> Result<String, Refusal> {
        Ok(value.to_string())
    }
    fn serialize_u8(self, value: u8) -> Result<String, Refusal> {
        Ok(value.to_string())
    }
    fn serialize_u16(self, value: u16) -> Result<String, Refusal> {
        Ok(value.to_string())
    }
    fn serialize_u32(self, value: u32) -> Result<String, Refusal> {
        Ok(value.to_string())
    }
    fn serialize_u64(self, value: u64) -> Result<String, Refusal> {
        Ok(value.to_string())
    }
    fn serialize_u128(self, value: u128) -> Result<String, Refusal> {
        Ok(value.to_string())
    }
    fn serialize_f32(self, _: f32) -> Result<String, Refusal> {
        Err(Refusal("a float".into()))
    }
    fn serialize_f64(self, _: f64) -> Result<String, Refusal> {
        Err(Refusal("a float".into()))
    }
    fn serialize_char(self, value: char) -> Result<String, Refusal> {
        Ok(value.to_string())
    }
    fn serialize_str(self, value: &str) -> Result<String, Refusal> {
        Ok(value.to_owned())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, Refusal> {
        Err(Refusal("bytes".into()))
    }
    fn serialize_none(self) -> Result<String, Refusal> {
        Err(Refusal("`None`".into()))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Refusal> {
        Err(Refusal("an `Option`".into()))
    }
    fn serialize_unit(self) -> Result<String, Refusal> {
        Err(Refusal("`()`".into()))
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<String, Refusal> {
        Err(Refusal(format!("the unit struct `{name}`")))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Refusal> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, Refusal> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: &T,
    ) -> Result<String, Refusal> {
        Err(Refusal(format!("the enum variant `{variant}` with data")))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Refusal> {
        Err(Refusal("a sequence".into()))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Refusal> {
        Err(Refusal("a tuple".into()))
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Refusal> {
        Err(Refusal(format!("the tuple struct `{name}`")))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Refusal> {
        Err(Refusal(format!("the enum variant `{variant}` with data")))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Refusal> {
        Err(Refusal("a map".into()))
    }
    fn serialize_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Refusal> {
        Err(Refusal(format!("the struct `{name}`")))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Refusal> {
        Err(Refusal(format!("the enum variant `{variant}` with data")))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    fn refusal<T: Serialize + ?Sized>(value: &T) -> String {
        JsonCodec.encode(value).unwrap_err().to_string()
    }

    #[test]
    fn json_round_trips_small_and_large_values_with_one_parser() {
        let small = vec![1u32, 2, 3];
        let mut bytes = JsonCodec.encode(&small).unwrap();
        assert_eq!(JsonCodec.decode_slice::<Vec<u32>>(&bytes).unwrap(), small);
        assert_eq!(JsonCodec.decode::<Vec<u32>>(&mut bytes).unwrap(), small);
        // Above u64::MAX, at 1 KiB and at 64 KiB alike (simd-json, which read
        // values from 16 KiB on, refused them).
        for len in [40, 2_600] {
            let big: Vec<u128> = (0..len).map(|i| u128::from(u64::MAX) + i).collect();
            let bytes = JsonCodec.encode(&big).unwrap();
            assert_eq!(JsonCodec.decode_slice::<Vec<u128>>(&bytes).unwrap(), big);
        }
    }

    #[test]
    fn floats_read_back_exactly() {
        let floats: Vec<f64> = (0..10_000).map(|i| f64::from(i) * 0.37).collect();
        let bytes = JsonCodec.encode(&floats).unwrap();
        let read: Vec<f64> = JsonCodec.decode_slice(&bytes).unwrap();
        assert!(
            floats
                .iter()
                .zip(&read)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }

    #[derive(Serialize)]
    struct Model {
        name: &'static str,
        scores: Vec<f64>,
    }

    #[test]
    fn nan_and_infinity_are_refused_with_their_place() {
        let model = Model {
            name: "m",
            scores: vec![0.5, 1.0, 2.0, f64::NAN],
        };
        let error = refusal(&model);
        assert!(error.contains("the value.scores[3] is NaN"), "{error}");
        assert!(error.contains("msgpack"), "{error}");
        let error = refusal(&BTreeMap::from([("loss", f32::INFINITY)]));
        assert!(
            error.contains(r#"the value["loss"] is an infinite float"#),
            "{error}"
        );
        assert!(JsonCodec.encode(&f64::MAX).is_ok());
    }

    #[test]
    fn map_keys_json_cannot_write_are_refused_with_their_place() {
        let error = refusal(&HashMap::from([((1, 2), "pair")]));
        assert!(
            error.contains("the value[0] is a map key that is a tuple"),
            "{error}"
        );
        let nested = BTreeMap::from([("outer", HashMap::from([(vec![1u8], 1)]))]);
        let error = refusal(&nested);
        assert!(
            error.contains(r#"the value["outer"][0] is a map key"#),
            "{error}"
        );
        // Numbers, booleans and unit variants are keys serde_json writes (as
        // strings) and reads back.
        let numbered = HashMap::from([(7u64, "seven".to_owned())]);
        let bytes = JsonCodec.encode(&numbered).unwrap();
        assert_eq!(
            JsonCodec
                .decode_slice::<HashMap<u64, String>>(&bytes)
                .unwrap(),
            numbered
        );
    }

    #[test]
    fn json_reports_a_type_mismatch() {
        let mut bytes = JsonCodec.encode("text").unwrap();
        assert!(JsonCodec.decode::<u32>(&mut bytes).is_err());
    }
}
