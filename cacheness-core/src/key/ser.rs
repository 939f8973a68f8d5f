//! The serde `Serializer` behind [`Params::from_serialize`](super::Params::from_serialize).
//!
//! Two serializers: [`TopLevelSerializer`] accepts only what can name
//! parameters (a struct or a string-keyed map) and yields the name -> value
//! map; [`ValueSerializer`] turns any field into a [`Value`] exactly as the
//! `From` impls used by `key!` would.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use serde::Serialize;
use serde::ser::{self, Impossible};

use super::KeyError;
use super::integer::Integer;
use super::value::Value;

type Entries = BTreeMap<String, Value>;

/// A hostile `Serialize` impl can claim any length; trust it only this far
/// when pre-allocating.
const MAX_PREALLOCATED_ITEMS: usize = 1024;

impl ser::Error for KeyError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        KeyError::Serialize(message.to_string())
    }
}

fn top_level(what: &str) -> KeyError {
    KeyError::Unsupported {
        what: format!("a top-level {what} (expected a struct or a map with string keys)"),
    }
}

fn map_key(what: &str) -> KeyError {
    KeyError::Unsupported {
        what: format!("a map key of type {what} (map keys must be strings)"),
    }
}

fn insert_unique(entries: &mut Entries, name: String, value: Value) -> Result<(), KeyError> {
    match entries.entry(name) {
        Entry::Occupied(occupied) => Err(KeyError::DuplicateName {
            name: occupied.key().clone(),
        }),
        Entry::Vacant(vacant) => {
            vacant.insert(value);
            Ok(())
        }
    }
}

fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, KeyError> {
    value.serialize(ValueSerializer)
}

/// Collects named entries from a struct's fields or a map's entries.
#[derive(Default)]
pub(crate) struct EntryCollector {
    entries: Entries,
    /// The key of a map entry whose value has not arrived yet.
    pending_key: Option<String>,
}

impl EntryCollector {
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), KeyError> {
        let value = to_value(value)?;
        insert_unique(&mut self.entries, name.to_owned(), value)
    }

    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), KeyError> {
        self.pending_key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| KeyError::Serialize("map value serialized before its key".to_owned()))?;
        let value = to_value(value)?;
        insert_unique(&mut self.entries, key, value)
    }

    fn finish(self) -> Result<Entries, KeyError> {
        match self.pending_key {
            Some(key) => Err(KeyError::Serialize(format!("map key {key:?} has no value"))),
            None => Ok(self.entries),
        }
    }
}

/// Accepts a struct or a string-keyed map and yields its entries.
pub(crate) struct TopLevelSerializer;

impl ser::Serializer for TopLevelSerializer {
    type Ok = Entries;
    type Error = KeyError;
    type SerializeSeq = Impossible<Entries, KeyError>;
    type SerializeTuple = Impossible<Entries, KeyError>;
    type SerializeTupleStruct = Impossible<Entries, KeyError>;
    type SerializeTupleVariant = Impossible<Entries, KeyError>;
    type SerializeMap = TopLevelEntries;
    type SerializeStruct = TopLevelEntries;
    type SerializeStructVariant = Impossible<Entries, KeyError>;

    fn serialize_bool(self, _: bool) -> Result<Entries, KeyError> {
        Err(top_level("bool"))
    }
    fn serialize_i8(self, _: i8) -> Result<Entries, KeyError> {
        Err(top_level("integer"))
    }
    fn serialize_i16(self, _: i16) -> Result<Entries, KeyError> {
        Err(top_level("integer"))
    }
    fn serialize_i32(self, _: i32) -> Result<Entries, KeyError> {
        Err(top_level("integer"))
    }
    fn serialize_i64(self, _: i64) -> Result<Entries, KeyError> {
        Err(top_level("integer"))
    }
    fn serialize_i128(self, _: i128) -> Result<Entries, KeyError> {
        Err(top_level("integer"))
    }
    fn serialize_u8(self, _: u8) -> Result<Entries, KeyError> {
        Err(top_level("integer"))
    }
    fn serialize_u16(self, _: u16) -> Result<Entries, KeyError> {
        Err(top_level("integer"))
    }
    fn serialize_u32(self, _: u32) -> Result<Entries, KeyError> {
        Err(top_level("integer"))
    }
    fn serialize_u64(self, _: u64) -> Result<Entries, KeyError> {
        Err(top_level("integer"))
    }
    fn serialize_u128(self, _: u128) -> Result<Entries, KeyError> {
        Err(top_level("integer"))
    }
    fn serialize_f32(self, _: f32) -> Result<Entries, KeyError> {
        Err(top_level("float"))
    }
    fn serialize_f64(self, _: f64) -> Result<Entries, KeyError> {
        Err(top_level("float"))
    }
    fn serialize_char(self, _: char) -> Result<Entries, KeyError> {
        Err(top_level("char"))
    }
    fn serialize_str(self, _: &str) -> Result<Entries, KeyError> {
        Err(top_level("string"))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Entries, KeyError> {
        Err(top_level("byte string"))
    }
    fn serialize_none(self) -> Result<Entries, KeyError> {
        Err(top_level("None"))
    }
    // `Some(params_struct)` names the same parameters as the struct itself.
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Entries, KeyError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Entries, KeyError> {
        Err(top_level("unit"))
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<Entries, KeyError> {
        Err(top_level(&format!("unit struct `{name}`")))
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Entries, KeyError> {
        Err(top_level(&format!("enum variant `{name}::{variant}`")))
    }
    // A newtype wrapper around a parameters struct is that struct.
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Entries, KeyError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: &T,
    ) -> Result<Entries, KeyError> {
        Err(top_level(&format!("enum variant `{name}::{variant}`")))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, KeyError> {
        Err(top_level("sequence"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, KeyError> {
        Err(top_level("tuple"))
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, KeyError> {
        Err(top_level(&format!("tuple struct `{name}`")))
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, KeyError> {
        Err(top_level(&format!("enum variant `{name}::{variant}`")))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<TopLevelEntries, KeyError> {
        Ok(TopLevelEntries::default())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<TopLevelEntries, KeyError> {
        Ok(TopLevelEntries::default())
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, KeyError> {
        Err(top_level(&format!("enum variant `{name}::{variant}`")))
    }
}

/// The fields of the top-level struct or map.
#[derive(Default)]
pub(crate) struct TopLevelEntries(EntryCollector);

impl ser::SerializeStruct for TopLevelEntries {
    type Ok = Entries;
    type Error = KeyError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        self.0.field(name, value)
    }

    fn end(self) -> Result<Entries, KeyError> {
        self.0.finish()
    }
}

impl ser::SerializeMap for TopLevelEntries {
    type Ok = Entries;
    type Error = KeyError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), KeyError> {
        self.0.key(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.0.value(value)
    }

    fn end(self) -> Result<Entries, KeyError> {
        self.0.finish()
    }
}

/// Turns any serializable value into a [`Value`].
pub(crate) struct ValueSerializer;

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = KeyError;
    type SerializeSeq = ListBuilder;
    type SerializeTuple = ListBuilder;
    type SerializeTupleStruct = ListBuilder;
    type SerializeTupleVariant = ListBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = MapBuilder;

    fn serialize_bool(self, flag: bool) -> Result<Value, KeyError> {
        Ok(Value::Bool(flag))
    }
    fn serialize_i8(self, integer: i8) -> Result<Value, KeyError> {
        Ok(Value::Int(Integer::from(integer)))
    }
    fn serialize_i16(self, integer: i16) -> Result<Value, KeyError> {
        Ok(Value::Int(Integer::from(integer)))
    }
    fn serialize_i32(self, integer: i32) -> Result<Value, KeyError> {
        Ok(Value::Int(Integer::from(integer)))
    }
    fn serialize_i64(self, integer: i64) -> Result<Value, KeyError> {
        Ok(Value::Int(Integer::from(integer)))
    }
    fn serialize_i128(self, integer: i128) -> Result<Value, KeyError> {
        Ok(Value::Int(Integer::from(integer)))
    }
    fn serialize_u8(self, integer: u8) -> Result<Value, KeyError> {
        Ok(Value::Int(Integer::from(integer)))
    }
    fn serialize_u16(self, integer: u16) -> Result<Value, KeyError> {
        Ok(Value::Int(Integer::from(integer)))
    }
    fn serialize_u32(self, integer: u32) -> Result<Value, KeyError> {
        Ok(Value::Int(Integer::from(integer)))
    }
    fn serialize_u64(self, integer: u64) -> Result<Value, KeyError> {
        Ok(Value::Int(Integer::from(integer)))
    }
    fn serialize_u128(self, integer: u128) -> Result<Value, KeyError> {
        Ok(Value::Int(Integer::from(integer)))
    }
    fn serialize_f32(self, float: f32) -> Result<Value, KeyError> {
        Ok(Value::Float(f64::from(float)))
    }
    fn serialize_f64(self, float: f64) -> Result<Value, KeyError> {
        Ok(Value::Float(float))
    }
    fn serialize_char(self, character: char) -> Result<Value, KeyError> {
        Ok(Value::from(character))
    }
    fn serialize_str(self, text: &str) -> Result<Value, KeyError> {
        Ok(Value::from(text))
    }
    fn serialize_bytes(self, bytes: &[u8]) -> Result<Value, KeyError> {
        Ok(Value::bytes(bytes))
    }
    fn serialize_none(self) -> Result<Value, KeyError> {
        Ok(Value::None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, KeyError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, KeyError> {
        Ok(Value::None)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, KeyError> {
        Ok(Value::None)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, KeyError> {
        Ok(Value::from(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Value, KeyError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, KeyError> {
        Ok(tagged(Some(variant), to_value(value)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<ListBuilder, KeyError> {
        Ok(ListBuilder::new(None, len.unwrap_or(0)))
    }
    fn serialize_tuple(self, len: usize) -> Result<ListBuilder, KeyError> {
        Ok(ListBuilder::new(None, len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<ListBuilder, KeyError> {
        Ok(ListBuilder::new(None, len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<ListBuilder, KeyError> {
        Ok(ListBuilder::new(Some(variant), len))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapBuilder, KeyError> {
        Ok(MapBuilder::new(None))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<MapBuilder, KeyError> {
        Ok(MapBuilder::new(None))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<MapBuilder, KeyError> {
        Ok(MapBuilder::new(Some(variant)))
    }
}

/// Wraps a variant's content as `{variant: content}`; plain content as is.
fn tagged(variant: Option<&'static str>, content: Value) -> Value {
    match variant {
        Some(variant) => Value::Map(BTreeMap::from([(variant.to_owned(), content)])),
        None => content,
    }
}

/// Builds a [`Value::List`] from a sequence, tuple or tuple variant.
pub(crate) struct ListBuilder {
    variant: Option<&'static str>,
    items: Vec<Value>,
}

impl ListBuilder {
    fn new(variant: Option<&'static str>, len: usize) -> Self {
        Self {
            variant,
            items: Vec::with_capacity(len.min(MAX_PREALLOCATED_ITEMS)),
        }
    }

    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.items.push(to_value(value)?);
        Ok(())
    }

    fn finish(self) -> Result<Value, KeyError> {
        Ok(tagged(self.variant, Value::List(self.items)))
    }
}

impl ser::SerializeSeq for ListBuilder {
    type Ok = Value;
    type Error = KeyError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, KeyError> {
        self.finish()
    }
}

impl ser::SerializeTuple for ListBuilder {
    type Ok = Value;
    type Error = KeyError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, KeyError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for ListBuilder {
    type Ok = Value;
    type Error = KeyError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, KeyError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for ListBuilder {
    type Ok = Value;
    type Error = KeyError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, KeyError> {
        self.finish()
    }
}

/// Builds a [`Value::Map`] from a nested map, struct or struct variant.
pub(crate) struct MapBuilder {
    variant: Option<&'static str>,
    collector: EntryCollector,
}

impl MapBuilder {
    fn new(variant: Option<&'static str>) -> Self {
        Self {
            variant,
            collector: EntryCollector::default(),
        }
    }

    fn finish(self) -> Result<Value, KeyError> {
        Ok(tagged(self.variant, Value::Map(self.collector.finish()?)))
    }
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Value;
    type Error = KeyError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), KeyError> {
        self.collector.key(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.collector.value(value)
    }

    fn end(self) -> Result<Value, KeyError> {
        self.finish()
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Value;
    type Error = KeyError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        self.collector.field(name, value)
    }

    fn end(self) -> Result<Value, KeyError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for MapBuilder {
    type Ok = Value;
    type Error = KeyError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        self.collector.field(name, value)
    }

    fn end(self) -> Result<Value, KeyError> {
        self.finish()
    }
}

/// Map keys must be strings (or things serde writes as strings: chars,
/// unit enum variants and newtypes around those).
struct KeySerializer;

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = KeyError;
    type SerializeSeq = Impossible<String, KeyError>;
    type SerializeTuple = Impossible<String, KeyError>;
    type SerializeTupleStruct = Impossible<String, KeyError>;
    type SerializeTupleVariant = Impossible<String, KeyError>;
    type SerializeMap = Impossible<String, KeyError>;
    type SerializeStruct = Impossible<String, KeyError>;
    type SerializeStructVariant = Impossible<String, KeyError>;

    fn serialize_str(self, text: &str) -> Result<String, KeyError> {
        Ok(text.to_owned())
    }
    fn serialize_char(self, character: char) -> Result<String, KeyError> {
        Ok(character.to_string())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, KeyError> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, KeyError> {
        value.serialize(self)
    }

    fn serialize_bool(self, _: bool) -> Result<String, KeyError> {
        Err(map_key("bool"))
    }
    fn serialize_i8(self, _: i8) -> Result<String, KeyError> {
        Err(map_key("integer"))
    }
    fn serialize_i16(self, _: i16) -> Result<String, KeyError> {
        Err(map_key("integer"))
    }
    fn serialize_i32(self, _: i32) -> Result<String, KeyError> {
        Err(map_key("integer"))
    }
    fn serialize_i64(self, _: i64) -> Result<String, KeyError> {
        Err(map_key("integer"))
    }
    fn serialize_i128(self, _: i128) -> Result<String, KeyError> {
        Err(map_key("integer"))
    }
    fn serialize_u8(self, _: u8) -> Result<String, KeyError> {
        Err(map_key("integer"))
    }
    fn serialize_u16(self, _: u16) -> Result<String, KeyError> {
        Err(map_key("integer"))
    }
    fn serialize_u32(self, _: u32) -> Result<String, KeyError> {
        Err(map_key("integer"))
    }
    fn serialize_u64(self, _: u64) -> Result<String, KeyError> {
        Err(map_key("integer"))
    }
    fn serialize_u128(self, _: u128) -> Result<String, KeyError> {
        Err(map_key("integer"))
    }
    fn serialize_f32(self, _: f32) -> Result<String, KeyError> {
        Err(map_key("float"))
    }
    fn serialize_f64(self, _: f64) -> Result<String, KeyError> {
        Err(map_key("float"))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, KeyError> {
        Err(map_key("byte string"))
    }
    fn serialize_none(self) -> Result<String, KeyError> {
        Err(map_key("None"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, KeyError> {
        Err(map_key("Some"))
    }
    fn serialize_unit(self) -> Result<String, KeyError> {
        Err(map_key("unit"))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, KeyError> {
        Err(map_key("unit struct"))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, KeyError> {
        Err(map_key("newtype variant"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, KeyError> {
        Err(map_key("sequence"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, KeyError> {
        Err(map_key("tuple"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, KeyError> {
        Err(map_key("tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, KeyError> {
        Err(map_key("tuple variant"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, KeyError> {
        Err(map_key("map"))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, KeyError> {
        Err(map_key("struct"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, KeyError> {
        Err(map_key("struct variant"))
    }
}
