use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::cache_key::CacheKey;
use super::value::{Value, write_human};
use super::{KeyError, codec, ser};

/// Named parameters, sorted by name; order of insertion never matters.
///
/// Build them with the [`key!`](crate::key!) macro, with [`Params::insert`] /
/// [`Params::with`], or from any `Serialize` struct with
/// [`Params::from_serialize`]; all three give the same key for the same
/// names and values. In serde formats `Params` is an object mapping each name
/// to its [`Value`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params(pub(super) BTreeMap<String, Value>);

impl Params {
    /// Empty parameters (the same as `key!()`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter.
    ///
    /// # Errors
    ///
    /// [`KeyError::DuplicateName`] if `name` is already present; the params
    /// are then left unchanged.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<(), KeyError> {
        match self.0.entry(name.into()) {
            Entry::Occupied(occupied) => Err(KeyError::DuplicateName {
                name: occupied.key().clone(),
            }),
            Entry::Vacant(vacant) => {
                vacant.insert(value.into());
                Ok(())
            }
        }
    }

    /// Adds a parameter, builder style.
    ///
    /// # Errors
    ///
    /// [`KeyError::DuplicateName`] if `name` is already present.
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
        self.0.get(name)
    }

    /// The parameters in name order (bytewise).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value))
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
        codec::encode(&self.0)
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
        codec::decode(bytes).map(Params)
    }

    /// The cache key: the first 16 bytes of the blake3 digest of
    /// [`Params::encode`].
    pub fn key(&self) -> CacheKey {
        let digest = blake3::hash(&self.encode());
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
    /// [`KeyError::Serialize`] if the value's `Serialize` impl fails.
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Params, KeyError> {
        value.serialize(ser::TopLevelSerializer).map(Params)
    }

    /// Used by [`key!`](crate::key!), which proves at compile time that
    /// names are unique. A leading `r#` (from a raw identifier such as
    /// `r#type`) is not part of the name.
    #[doc(hidden)]
    pub fn __insert_unique(&mut self, name: &'static str, value: Value) {
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.0.insert(name.to_owned(), value);
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
