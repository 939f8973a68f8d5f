use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cache_key::CacheKey;
use super::codec::{self, Field};
use super::value::{Value, write_human};
use super::{KeyError, MAX_NESTING, MAX_PARAMS_LEN, ser};

/// Named parameters, sorted by name; order of insertion never matters.
///
/// Build them with the [`key!`](crate::key!) macro, with [`Params::insert`] /
/// [`Params::with`], or from any `Serialize` struct with
/// [`Params::from_serialize`]; all three give the same key for the same
/// names and values. In serde formats `Params` is an object mapping each name
/// to its [`Value`].
#[derive(Clone, Default, PartialEq)]
pub struct Params(Vec<Field>);

// `Params` is a vector sorted by name, not a `BTreeMap`: keys have a handful
// of parameters, and one small allocation (none for the names `key!` gives,
// which are `'static`) makes building, hashing, copying and dropping them
// several times cheaper than a tree node of eleven slots.

impl Params {
    /// Empty parameters (the same as `key!()`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter.
    ///
    /// # Errors
    ///
    /// [`KeyError::DuplicateName`] if `name` is already present, and
    /// [`KeyError::TooDeep`] if the value nests lists and maps deeper than
    /// [`MAX_NESTING`]; the params are then left unchanged.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<(), KeyError> {
        let name = name.into();
        let value = value.into();
        check_depth(&name, &value)?;
        match self.position(&name) {
            Ok(_) => Err(KeyError::DuplicateName { name }),
            Err(at) => {
                self.0.insert(at, (Cow::Owned(name), value));
                Ok(())
            }
        }
    }

    /// Adds a parameter, builder style.
    ///
    /// # Errors
    ///
    /// As [`Params::insert`].
    pub fn with(
        mut self,
        name: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<Self, KeyError> {
        self.insert(name, value)?;
        Ok(self)
    }

    /// The value of the parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.position(name).ok().map(|at| &self.0[at].1)
    }

    /// The parameters in name order (bytewise).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(name, value)| (&**name, value))
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical encoding described in the [module docs](super); its
    /// blake3 digest is the key.
    pub fn encode(&self) -> Vec<u8> {
        // Sized first: a walk over the values, but no reallocation of the output.
        let len = codec::encoded_len(&self.0);
        let mut out = Vec::with_capacity(len);
        codec::encode_into(&self.0, &mut out);
        debug_assert_eq!(out.len(), len);
        out
    }

    /// The inverse of [`Params::encode`]. Only canonical encodings are
    /// accepted, so `decode(b)` succeeding implies `decode(b)?.encode() == b`.
    /// [`FileDigest`](super::FileDigest) paths are not encoded and come back
    /// empty.
    ///
    /// # Errors
    ///
    /// [`KeyError::Malformed`] for anything that is not exactly a canonical
    /// encoding: wrong header, truncated input, trailing bytes, unknown tags,
    /// invalid UTF-8, unsorted or duplicate names or map keys, a negative
    /// zero integer, a non-canonical NaN or `-0.0`, or nesting deeper than
    /// 256 lists and maps.
    pub fn decode(bytes: &[u8]) -> Result<Params, KeyError> {
        codec::decode(bytes).map(Params::from_sorted)
    }

    /// The cache key: the first 16 bytes of the blake3 digest of
    /// [`Params::encode`].
    pub fn key(&self) -> CacheKey {
        // Every lookup hashes its key: encode on the stack when it fits.
        const ON_STACK: usize = 192;
        let len = codec::encoded_len(&self.0);
        let digest = if len <= ON_STACK {
            let mut buffer = [0u8; ON_STACK];
            let mut out = codec::Filling {
                buffer: &mut buffer,
                filled: 0,
            };
            codec::encode_into(&self.0, &mut out);
            debug_assert_eq!(out.filled, len);
            blake3::hash(&buffer[..len])
        } else {
            blake3::hash(&self.encode())
        };
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest.as_bytes()[..16]);
        CacheKey::from_bytes(key)
    }

    /// Parameters from a struct (one parameter per serialized field) or a map
    /// with string keys. The result is the same as spelling the fields out
    /// with [`key!`](crate::key!): integers of any type become
    /// [`Value::Int`], `Option`s their content or [`Value::None`], sequences
    /// and tuples [`Value::List`], nested structs and maps [`Value::Map`],
    /// unit enum variants their name as [`Value::Str`], and other variants a
    /// one-entry map `{variant: content}`. Skipped fields are absent.
    ///
    /// A field of type [`Value`] goes through `Value`'s own serde form (a
    /// tagged map such as `{"int": 5}`), not as the value itself; put
    /// `Value`s in with [`key!`](crate::key!) or [`Params::insert`] instead.
    ///
    /// # Errors
    ///
    /// [`KeyError::Unsupported`] if the top level is not a struct or a map,
    /// or a map key is not a string; [`KeyError::DuplicateName`] if a name
    /// (or a nested map key) appears twice, as `#[serde(flatten)]` can cause;
    /// [`KeyError::Serialize`] if the value's `Serialize` impl fails;
    /// [`KeyError::TooDeep`] if a field nests lists and maps deeper than
    /// [`MAX_NESTING`] (enum variants with content count as a map).
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Params, KeyError> {
        let params = value
            .serialize(ser::TopLevelSerializer)
            .map(Params::from_sorted)?;
        for (name, value) in params.iter() {
            check_depth(name, value)?;
        }
        Ok(params)
    }

    /// Checks the limits every put enforces, so that what is stored can be read
    /// back by every backend: no value nests deeper than [`MAX_NESTING`] and
    /// the encoding takes at most [`MAX_PARAMS_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// [`KeyError::TooDeep`] or [`KeyError::TooLarge`], naming the limit and
    /// the actual figure.
    ///
    /// ```
    /// use cacheness_core::key::{KeyError, MAX_NESTING, Value};
    /// use cacheness_core::key;
    ///
    /// let mut deep = Value::from(1);
    /// for _ in 0..MAX_NESTING {
    ///     deep = Value::List(vec![deep]);
    /// }
    /// assert!(key!(x = deep.clone()).check_limits().is_ok());
    /// let too_deep = key!(x = Value::List(vec![deep]));
    /// assert!(matches!(too_deep.check_limits(), Err(KeyError::TooDeep { depth: 33, .. })));
    /// ```
    pub fn check_limits(&self) -> Result<(), KeyError> {
        for (name, value) in self.iter() {
            check_depth(name, value)?;
        }
        let size = codec::encoded_len(&self.0);
        if size > MAX_PARAMS_LEN {
            return Err(KeyError::TooLarge {
                size,
                limit: MAX_PARAMS_LEN,
            });
        }
        Ok(())
    }

    /// Used by [`key!`](crate::key!), which proves at compile time that
    /// names are unique. A leading `r#` (from a raw identifier such as
    /// `r#type`) is not part of the name.
    #[doc(hidden)]
    pub fn __insert_unique(&mut self, name: &'static str, value: Value) {
        let name = name.strip_prefix("r#").unwrap_or(name);
        match self.position(name) {
            // Unreachable through `key!`; kept a replacement, as a map's insert
            // is, so the names stay unique whatever a caller does.
            Ok(at) => self.0[at].1 = value,
            Err(at) => self.0.insert(at, (Cow::Borrowed(name), value)),
        }
    }

    /// Used by [`key!`](crate::key!): room for `len` parameters.
    #[doc(hidden)]
    pub fn __with_capacity(len: usize) -> Self {
        Params(Vec::with_capacity(len))
    }

    /// Where `name` is (`Ok`) or would go (`Err`).
    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(held, _)| (**held).cmp(name))
    }

    /// From names already in strictly increasing order.
    pub(super) fn from_sorted(entries: impl IntoIterator<Item = (String, Value)>) -> Self {
        let params = Params(
            entries
                .into_iter()
                .map(|(name, value)| (Cow::Owned(name), value))
                .collect(),
        );
        debug_assert!(params.0.windows(2).all(|pair| pair[0].0 < pair[1].0));
        params
    }
}

/// Refuses a value nested deeper than [`MAX_NESTING`].
fn check_depth(name: &str, value: &Value) -> Result<(), KeyError> {
    if !deeper_than(value, MAX_NESTING) {
        return Ok(());
    }
    // Only now the exact figure, for the message.
    Err(KeyError::TooDeep {
        name: name.to_owned(),
        depth: value.depth(),
        limit: MAX_NESTING,
    })
}

/// Whether `value` nests deeper than `limit`, recursing at most `limit + 1`
/// levels and allocating nothing (every put checks its parameters).
fn deeper_than(value: &Value, limit: usize) -> bool {
    match value {
        Value::List(items) => limit == 0 || items.iter().any(|item| deeper_than(item, limit - 1)),
        Value::Map(entries) => {
            limit == 0 || entries.values().any(|item| deeper_than(item, limit - 1))
        }
        _ => false,
    }
}

/// `Params({"name": value, ...})`, as a map would print.
impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Params").field(&DebugMap(self)).finish()
    }
}

struct DebugMap<'a>(&'a Params);

impl fmt::Debug for DebugMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

/// An object mapping each name to its value, in name order.
impl Serialize for Params {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(&**name, value)?;
        }
        map.end()
    }
}

/// From an object in any order. As with a map, when a name appears twice the
/// last value wins.
impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamsVisitor;

        impl<'de> Visitor<'de> for ParamsVisitor {
            type Value = Params;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a map of parameter names to values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                // Hostile input can claim any size; trust it only so far.
                let mut fields: Vec<Field> =
                    Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some((name, value)) = map.next_entry::<String, Value>()? {
                    fields.push((Cow::Owned(name), value));
                }
                // Stable, so of equal names the last one read stays last.
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                let mut params: Vec<Field> = Vec::with_capacity(fields.len());
                for field in fields {
                    match params.last_mut() {
                        Some(last) if last.0 == field.0 => *last = field,
                        _ => params.push(field),
                    }
                }
                Ok(Params(params))
            }
        }

        deserializer.deserialize_map(ParamsVisitor)
    }
}

/// Human-readable, e.g. `model="xgboost", version=2`; strings are quoted and
/// escaped like Rust's `Debug` for `str`, and so are names that are not plain
/// identifiers.
impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (name, value)) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            if is_plain_name(name) {
                f.write_str(name)?;
            } else {
                write!(f, "{name:?}")?;
            }
            f.write_str("=")?;
            write_human(value, f)?;
        }
        Ok(())
    }
}

// Anything else is quoted so that `a=1, b=2` can never be one name.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}
