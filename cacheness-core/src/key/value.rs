use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::hex;
use super::integer::Integer;

/// One typed parameter value.
///
/// Types matter: `"1"`, `1`, `1.0` and `true` are four different values and
/// give four different keys. Integers of every Rust type are one kind
/// ([`Integer`]), so `1u8` and `1i64` give the same key.
///
/// `PartialEq` is structural, so `Float(NaN) != Float(NaN)` even though both
/// encode (and key) identically; compare [`Params::encode`](super::Params::encode)
/// output when key equality is what matters.
///
/// There is deliberately no `From<Vec<u8>>` special case: `vec![1u8]` becomes
/// a `List` of `Int`s, exactly as serde sees a `Vec<u8>`. Use
/// [`Value::bytes`] for a byte string.
///
/// In JSON a value is externally tagged with lower-case names:
/// `"none"`, `{"bool":true}`, `{"int":5}`, `{"float":1.5}`, `{"str":"x"}`,
/// `{"bytes":"<standard base64>"}`, `{"list":[..]}`, `{"map":{..}}` and
/// `{"file":{"path":"..","blake3":"<64 hex>"}}`. Floats that JSON cannot hold
/// as numbers (NaN, infinities) are the strings `"NaN"`, `"inf"` and `"-inf"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Value {
    /// No value: Rust's `None` and `()`.
    None,
    /// A boolean.
    Bool(bool),
    /// An integer of any Rust integer type.
    Int(Integer),
    /// A float; `f32` is widened to `f64`. All NaNs are one value and `-0.0`
    /// is the same value as `0.0` as far as keys are concerned.
    Float(#[serde(with = "float_repr")] f64),
    /// A UTF-8 string.
    Str(String),
    /// A byte string.
    Bytes(#[serde(with = "base64_repr")] Vec<u8>),
    /// An ordered list.
    List(Vec<Value>),
    /// A map with string keys; its order is the keys' byte order.
    Map(BTreeMap<String, Value>),
    /// The content digest of a file.
    File(FileDigest),
}

/// Content digest of a file, for keys that depend on a file's bytes rather
/// than its name.
///
/// Only `blake3` is part of the key: the same content under two paths gives
/// the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Where the content was read from. Informational only: it is not part of
    /// the encoding, and a decoded `FileDigest` has an empty path.
    pub path: PathBuf,
    /// The blake3 digest of the file's content; 64 hex characters in serde
    /// formats.
    #[serde(with = "hex::digest")]
    pub blake3: [u8; 32],
}

impl FileDigest {
    fn of_file(path: &Path) -> io::Result<Self> {
        let mut hasher = blake3::Hasher::new();
        // Streams through a fixed buffer: cache inputs can be far larger than memory.
        hasher.update_reader(File::open(path)?)?;
        Ok(Self {
            path: path.to_path_buf(),
            blake3: *hasher.finalize().as_bytes(),
        })
    }
}

impl Value {
    /// A byte string value ([`Value::Bytes`]).
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Value {
        Value::Bytes(bytes.into())
    }

    /// The value of anything `Serialize`, by the rules of
    /// [`Params::from_serialize`](super::Params::from_serialize) for a field:
    /// integers of any type are [`Value::Int`], sequences and tuples
    /// [`Value::List`], structs and string-keyed maps [`Value::Map`], and so
    /// on. The nesting limit is checked where the value becomes a parameter
    /// ([`Params::insert`](super::Params::insert)).
    ///
    /// ```
    /// use cacheness_core::key::Value;
    /// use cacheness_core::key;
    ///
    /// #[derive(serde::Serialize)]
    /// struct Split { train: f64, seed: u32 }
    ///
    /// let split = Value::from_serialize(&Split { train: 0.8, seed: 7 })?;
    /// assert_eq!(
    ///     key!(split = split),
    ///     key!(split = Value::Map([
    ///         ("seed".to_owned(), Value::from(7)),
    ///         ("train".to_owned(), Value::from(0.8)),
    ///     ].into())),
    /// );
    /// # Ok::<(), cacheness_core::key::KeyError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KeyError::Unsupported`](super::KeyError::Unsupported) for a map whose
    /// keys are not strings, and
    /// [`KeyError::Serialize`](super::KeyError::Serialize) if the value's
    /// `Serialize` impl fails.
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Value, super::KeyError> {
        value.serialize(super::ser::ValueSerializer)
    }

    /// How deeply lists and maps nest in this value: 0 for a scalar, 1 for a
    /// list or map of scalars, and so on. Walks the value without recursing, so
    /// any depth is measured without exhausting the stack.
    pub fn depth(&self) -> usize {
        // Each value with the number of lists and maps around it.
        let mut deepest = 0;
        let mut pending = vec![(self, 0usize)];
        while let Some((value, around)) = pending.pop() {
            match value {
                Value::List(items) => {
                    deepest = deepest.max(around + 1);
                    pending.extend(items.iter().map(|item| (item, around + 1)));
                }
                Value::Map(entries) => {
                    deepest = deepest.max(around + 1);
                    pending.extend(entries.values().map(|item| (item, around + 1)));
                }
                _ => {}
            }
        }
        deepest
    }

    /// A [`Value::File`] holding the blake3 digest of the file's content, so
    /// the key changes when the content changes and not when the file moves.
    ///
    /// The file is read in a streaming way, never loaded whole.
    pub fn file(path: impl AsRef<Path>) -> io::Result<Value> {
        FileDigest::of_file(path.as_ref()).map(Value::File)
    }
}

/// Writes the value in the `Display` form of [`Params`](super::Params).
pub(crate) fn write_human(value: &Value, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match value {
        Value::None => f.write_str("none"),
        Value::Bool(flag) => write!(f, "{flag}"),
        Value::Int(integer) => write!(f, "{integer}"),
        // Debug rather than Display so that 1.0 reads as a float, not as 1.
        Value::Float(float) => write!(f, "{float:?}"),
        Value::Str(text) => write!(f, "{text:?}"),
        Value::Bytes(bytes) => write!(f, "b\"{}\"", bytes.escape_ascii()),
        Value::List(items) => {
            f.write_str("[")?;
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    f.write_str(", ")?;
                }
                write_human(item, f)?;
            }
            f.write_str("]")
        }
        Value::Map(entries) => {
            f.write_str("{")?;
            for (index, (key, item)) in entries.iter().enumerate() {
                if index > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{key:?}: ")?;
                write_human(item, f)?;
            }
            f.write_str("}")
        }
        Value::File(digest) => write!(
            f,
            "file({:?}, blake3={})",
            digest.path,
            hex::Hex(&digest.blake3)
        ),
    }
}

impl From<bool> for Value {
    fn from(flag: bool) -> Self {
        Value::Bool(flag)
    }
}

macro_rules! value_from_integer {
    ($($source:ty),*) => {$(
        impl From<$source> for Value {
            fn from(value: $source) -> Self {
                Value::Int(Integer::from(value))
            }
        }
    )*};
}

value_from_integer!(
    i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize
);

impl From<Integer> for Value {
    fn from(integer: Integer) -> Self {
        Value::Int(integer)
    }
}

impl From<f32> for Value {
    fn from(float: f32) -> Self {
        Value::Float(f64::from(float))
    }
}

impl From<f64> for Value {
    fn from(float: f64) -> Self {
        Value::Float(float)
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Str(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Str(text)
    }
}

impl From<&String> for Value {
    fn from(text: &String) -> Self {
        Value::Str(text.clone())
    }
}

impl From<char> for Value {
    fn from(character: char) -> Self {
        Value::Str(character.to_string())
    }
}

impl From<()> for Value {
    fn from((): ()) -> Self {
        Value::None
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(option: Option<T>) -> Self {
        match option {
            Some(inner) => inner.into(),
            None => Value::None,
        }
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Self {
        Value::List(items.into_iter().map(Into::into).collect())
    }
}

impl<V: Into<Value>> From<BTreeMap<String, V>> for Value {
    fn from(entries: BTreeMap<String, V>) -> Self {
        Value::Map(
            entries
                .into_iter()
                .map(|(key, value)| (key, value.into()))
                .collect(),
        )
    }
}

impl<V: Into<Value>, S> From<HashMap<String, V, S>> for Value {
    fn from(entries: HashMap<String, V, S>) -> Self {
        Value::Map(
            entries
                .into_iter()
                .map(|(key, value)| (key, value.into()))
                .collect(),
        )
    }
}

impl From<FileDigest> for Value {
    fn from(digest: FileDigest) -> Self {
        Value::File(digest)
    }
}

/// Serde adapter for `Value::Float`.
///
/// serde_json's default float parser is not exact (about a third of random
/// finite doubles come back one ulp off unless its `float_roundtrip` feature
/// is on), and a parameter that changes on the way through a JSON backend
/// would change its key. So a finite float is written as a JSON number only
/// when serde_json reads that number back bit for bit; otherwise it is written
/// as a string holding Rust's shortest round-trip form, which Rust parses
/// exactly. Non-finite floats are the strings "NaN", "inf" and "-inf".
mod float_repr {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(float: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        let float = *float;
        if float.is_nan() {
            serializer.serialize_str("NaN")
        } else if float.is_infinite() {
            serializer.serialize_str(if float > 0.0 { "inf" } else { "-inf" })
        } else if !serializer.is_human_readable() || json_round_trips(float) {
            serializer.serialize_f64(float)
        } else {
            serializer.collect_str(&format_args!("{float:?}"))
        }
    }

    fn json_round_trips(float: f64) -> bool {
        // serde_json writes at most 24 bytes for an f64; a stack buffer
        // avoids allocating per float.
        let mut buffer = [0u8; 32];
        let mut cursor = &mut buffer[..];
        if serde_json::to_writer(&mut cursor, &float).is_err() {
            return false;
        }
        let unused = cursor.len();
        let written = buffer.len() - unused;
        serde_json::from_slice::<f64>(&buffer[..written])
            .is_ok_and(|parsed| parsed.to_bits() == float.to_bits())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        deserializer.deserialize_any(FloatVisitor)
    }

    struct FloatVisitor;

    impl Visitor<'_> for FloatVisitor {
        type Value = f64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a number, "NaN", "inf", "-inf" or a decimal float string"#)
        }

        fn visit_f64<E: de::Error>(self, float: f64) -> Result<f64, E> {
            Ok(float)
        }

        // A hand-written or foreign JSON document may say `2` for a float.
        fn visit_i64<E: de::Error>(self, integer: i64) -> Result<f64, E> {
            Ok(integer as f64)
        }

        fn visit_u64<E: de::Error>(self, integer: u64) -> Result<f64, E> {
            Ok(integer as f64)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<f64, E> {
            match text {
                "NaN" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                _ => text
                    .parse::<f64>()
                    .ok()
                    // Non-finite values have exactly one spelling each (above).
                    .filter(|float| float.is_finite())
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(text), &self)),
            }
        }
    }
}

/// Serde adapter for `Value::Bytes`: standard base64 with padding.
mod base64_repr {
    use std::fmt;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_str(Base64Visitor)
    }

    struct Base64Visitor;

    impl Visitor<'_> for Base64Visitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a standard base64 string")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
            STANDARD
                .decode(text)
                .map_err(|error| E::custom(format_args!("invalid base64 bytes: {error}")))
        }
    }
}
