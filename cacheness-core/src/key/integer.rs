use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Any integer of any Rust integer type, exactly (the full `i128` and `u128`
/// range).
///
/// The source type is forgotten on purpose: `1u8`, `1i64` and `1u128` are the
/// same `Integer`, so they give the same cache key. Ordering is numeric.
///
/// In JSON an `Integer` is a number when it fits `i64` or `u64` and a decimal
/// string otherwise, because JSON parsers commonly lose precision beyond 64
/// bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Integer {
    // Sign and magnitude rather than i128 so that u128::MAX and i128::MIN both
    // fit. Invariant: zero is never negative, so equality can stay derived.
    negative: bool,
    magnitude: u128,
}

impl Integer {
    /// The value as an `i128`, or `None` if it is above `i128::MAX`.
    pub fn to_i128(self) -> Option<i128> {
        if self.negative {
            0i128.checked_sub_unsigned(self.magnitude)
        } else {
            i128::try_from(self.magnitude).ok()
        }
    }

    /// The value as a `u128`, or `None` if it is negative.
    pub fn to_u128(self) -> Option<u128> {
        if self.negative {
            None
        } else {
            Some(self.magnitude)
        }
    }

    /// Builds an integer from its encoded parts; `None` for a negative zero,
    /// which has no canonical encoding.
    pub(crate) fn from_sign_magnitude(negative: bool, magnitude: u128) -> Option<Self> {
        if negative && magnitude == 0 {
            None
        } else {
            Some(Self {
                negative,
                magnitude,
            })
        }
    }

    pub(crate) fn is_negative(self) -> bool {
        self.negative
    }

    pub(crate) fn magnitude(self) -> u128 {
        self.magnitude
    }

    /// Parses an optional `-` followed by decimal digits; no `+`, no spaces.
    pub(crate) fn parse_decimal(text: &str) -> Option<Self> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        // u128's parser also accepts a leading '+', which would make "-+5" valid.
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let magnitude: u128 = digits.parse().ok()?;
        Some(Self {
            negative: negative && magnitude != 0,
            magnitude,
        })
    }
}

impl Ord for Integer {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, false) => self.magnitude.cmp(&other.magnitude),
            (true, true) => other.magnitude.cmp(&self.magnitude),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        }
    }
}

impl PartialOrd for Integer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Integer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        write!(f, "{}", self.magnitude)
    }
}

macro_rules! integer_from_unsigned {
    ($($source:ty),*) => {$(
        impl From<$source> for Integer {
            fn from(value: $source) -> Self {
                Self { negative: false, magnitude: value as u128 }
            }
        }
    )*};
}

macro_rules! integer_from_signed {
    ($($source:ty),*) => {$(
        impl From<$source> for Integer {
            fn from(value: $source) -> Self {
                Self { negative: value < 0, magnitude: value.unsigned_abs() as u128 }
            }
        }
    )*};
}

integer_from_unsigned!(u8, u16, u32, u64, u128, usize);
integer_from_signed!(i8, i16, i32, i64, i128, isize);

impl Serialize for Integer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(value) = self.to_u128().and_then(|value| u64::try_from(value).ok()) {
            serializer.serialize_u64(value)
        } else if let Some(value) = self.to_i128().and_then(|value| i64::try_from(value).ok()) {
            serializer.serialize_i64(value)
        } else {
            serializer.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntegerVisitor)
    }
}

struct IntegerVisitor;

impl Visitor<'_> for IntegerVisitor {
    type Value = Integer;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a decimal integer string")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Integer, E> {
        Ok(Integer::from(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Integer, E> {
        Ok(Integer::from(value))
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Integer, E> {
        Ok(Integer::from(value))
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Integer, E> {
        Ok(Integer::from(value))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Integer, E> {
        Integer::parse_decimal(text)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Str(text), &self))
    }
}
