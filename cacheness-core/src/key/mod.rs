//! Cache keys: named, typed parameters and the 128-bit key derived from them.
//!
//! An entry is named by [`Params`]: parameter names mapped to typed
//! [`Value`]s. The key of an entry ([`CacheKey`]) is the first 16 bytes of the
//! blake3 digest of the canonical encoding of its params, so the same names
//! and values always give the same key, whatever the insertion order, the
//! process or the machine.
//!
//! ```
//! use cacheness_core::key;
//!
//! let params = key!(model = "xgboost", version = 2, depth = Some(6u8));
//! assert_eq!(params.key(), key!(depth = 6i64, version = 2u32, model = "xgboost").key());
//! assert_eq!(params.to_string(), r#"depth=6, model="xgboost", version=2"#);
//! ```
//!
//! # Canonical encoding
//!
//! This encoding is frozen: changing it changes every key, which invalidates
//! every existing cache. All integers are little endian; names and map keys
//! are sorted bytewise (the order of Rust's `str`).
//!
//! ```text
//! encoding := b"cnk" version:u8 (= 1) count:u64 (name:str value){count}  ; names ascending
//! str      := len:u64 utf8-bytes{len}
//! value    := tag:u8 payload
//!   0x00 None   (no payload)
//!   0x01 Bool   u8: 0 or 1
//!   0x02 Int    sign:u8 (0 non-negative, 1 negative; zero is non-negative) magnitude:u128
//!   0x03 Float  f64 bits:u64; every NaN is 0x7ff8000000000000, -0.0 is written as 0.0
//!   0x04 Str    str
//!   0x05 Bytes  len:u64 bytes{len}
//!   0x06 List   count:u64 value{count}
//!   0x07 Map    count:u64 (key:str value){count}  ; keys ascending
//!   0x08 File   the 32-byte blake3 digest of the content (the path is not encoded)
//! CacheKey := first 16 bytes of blake3(encoding)
//! ```
//!
//! Consequences worth knowing:
//!
//! - Integers keep no trace of their Rust type: `1u8`, `1i64` and `1u128` are
//!   one value. Integers, floats, strings and booleans never collide: `1`,
//!   `1.0`, `"1"` and `true` are four keys.
//! - All NaNs give one key, and `-0.0` gives the same key as `0.0` (they
//!   compare equal, and a cache that told them apart would surprise).
//! - A [`FileDigest`] is keyed by content only; the same bytes under another
//!   path give the same key.
//!
//! [`Params::decode`] accepts only canonical encodings (nothing else decodes),
//! and rejects lists and maps nested deeper than 256 levels.

mod cache_key;
mod codec;
pub(crate) mod hex;
mod integer;
mod params;
mod ser;
mod value;

#[cfg(any(test, feature = "conformance"))]
pub mod arb;

#[cfg(test)]
mod tests;

pub use cache_key::CacheKey;
pub use integer::Integer;
pub use params::Params;
pub use value::{FileDigest, Value};

/// The deepest nesting of lists and maps a parameter value may have (a bare
/// integer is 0 levels, `[1]` is 1, `{"a": [1]}` is 2); the same limit holds for
/// user metadata. The JSON forms the backends store parse with a recursion
/// limit of 128 (serde_json's and simd-json's), and each level of a [`Value`]
/// takes two of those (`{"list":[...]}`), so 32 levels leave room for the
/// entry around them. Checked by [`Params::from_serialize`],
/// [`Params::insert`] and every put.
pub const MAX_NESTING: usize = 32;

/// The most bytes the canonical encoding of one entry's parameters
/// ([`Params::encode`]) may take, checked at every put. The parameters are
/// written into every blob file's header, whose reader refuses headers over
/// 64 MiB; their JSON form takes at most about eight times the encoding (a
/// string of control characters, a list of `none`s), so 1 MiB keeps a header
/// well within that.
pub const MAX_PARAMS_LEN: usize = 1 << 20;

/// Why a key or its parameters could not be built, parsed or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A parameter name (or a map key, from [`Params::from_serialize`]) was
    /// given twice.
    #[error("duplicate parameter name `{name}`")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A string that is not a cache key was parsed as one.
    #[error("invalid cache key `{input}`: expected 32 hex characters")]
    InvalidKey {
        /// The rejected text.
        input: String,
    },
    /// [`Params::from_serialize`] was given something that cannot become
    /// parameters, such as a bare integer or a map with non-string keys.
    #[error("cannot build cache parameters from {what}")]
    Unsupported {
        /// What was given, and what was expected instead.
        what: String,
    },
    /// [`Params::decode`] was given bytes that are not a canonical encoding.
    #[error("malformed key encoding at byte {offset}: {reason}")]
    Malformed {
        /// Where in the input the problem starts.
        offset: usize,
        /// What is wrong there.
        reason: String,
    },
    /// A `Serialize` impl reported an error of its own.
    #[error("{0}")]
    Serialize(String),
    /// A parameter value nests lists and maps deeper than [`MAX_NESTING`].
    #[error("parameter `{name}` is nested {depth} levels deep, over the limit of {limit} levels")]
    TooDeep {
        /// The parameter's name.
        name: String,
        /// How deep its value nests.
        depth: usize,
        /// The limit, [`MAX_NESTING`].
        limit: usize,
    },
    /// The parameters' encoding is larger than [`MAX_PARAMS_LEN`].
    #[error("the parameters take {size} bytes encoded, over the limit of {limit} bytes")]
    TooLarge {
        /// The length of [`Params::encode`].
        size: usize,
        /// The limit, [`MAX_PARAMS_LEN`].
        limit: usize,
    },
}

/// Anything that names an entry: [`Params`], a bare [`CacheKey`], or a
/// reference to either.
pub trait ToKey {
    /// The key of the entry.
    fn to_key(&self) -> CacheKey;

    /// The parameters behind the key, when known; a bare [`CacheKey`] has
    /// none.
    fn params(&self) -> Option<&Params> {
        None
    }
}

impl ToKey for Params {
    fn to_key(&self) -> CacheKey {
        self.key()
    }

    fn params(&self) -> Option<&Params> {
        Some(self)
    }
}

impl ToKey for CacheKey {
    fn to_key(&self) -> CacheKey {
        *self
    }
}

impl<T: ToKey + ?Sized> ToKey for &T {
    fn to_key(&self) -> CacheKey {
        (**self).to_key()
    }

    fn params(&self) -> Option<&Params> {
        (**self).params()
    }
}

/// Builds [`Params`] from `name = value` pairs.
///
/// Names are identifiers (raw identifiers such as `r#type` name `type`);
/// values are any expression that converts `Into<`[`Value`]`>`. `key!()` is
/// the empty set of parameters, and a trailing comma is allowed.
///
/// ```
/// use cacheness_core::key;
///
/// let params = key!(model = "xgboost", r#type = "tree", depth = 6,);
/// assert_eq!(params.get("type"), Some(&"tree".into()));
/// assert!(key!().is_empty());
/// ```
///
/// A name given twice is a compile error, not a runtime one:
///
/// ```compile_fail,E0124
/// let params = cacheness_core::key!(version = 1, version = 2);
/// ```
#[macro_export]
macro_rules! key {
    () => {
        $crate::key::Params::new()
    };
    ($($name:ident = $value:expr),+ $(,)?) => {{
        // rustc rejects a struct with two fields of one name (E0124), which
        // turns a duplicate parameter name into a compile error.
        #[allow(dead_code, non_camel_case_types, non_snake_case)]
        struct __CachenessKeyNames {
            $($name: ()),+
        }
        let mut params =
            $crate::key::Params::__with_capacity([$(::core::stringify!($name)),+].len());
        $(
            params.__insert_unique(
                ::core::stringify!($name),
                ::core::convert::Into::<$crate::key::Value>::into($value),
            );
        )+
        params
    }};
}
