//! Lower-case hex for digests and keys, without pulling in a crate for it.

use std::fmt;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn write_lower(bytes: &[u8], out: &mut impl fmt::Write) -> fmt::Result {
    for &byte in bytes {
        out.write_char(char::from(DIGITS[usize::from(byte >> 4)]))?;
        out.write_char(char::from(DIGITS[usize::from(byte & 0x0f)]))?;
    }
    Ok(())
}

pub(crate) fn to_lower(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    // Writing into a String cannot fail.
    let _ = write_lower(bytes, &mut text);
    text
}

/// Decodes exactly `N` bytes from `2 * N` hex digits of either case.
pub(crate) fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(bytes)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Serde adapter: a 32-byte digest as 64 hex characters.
pub(crate) mod digest {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub(crate) fn serialize<S: Serializer>(
        digest: &[u8; 32],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&super::Hex(digest))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<[u8; 32], D::Error> {
        deserializer.deserialize_str(DigestVisitor)
    }

    struct DigestVisitor;

    impl Visitor<'_> for DigestVisitor {
        type Value = [u8; 32];

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("64 hex characters")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<[u8; 32], E> {
            super::decode(text).ok_or_else(|| E::invalid_value(de::Unexpected::Str(text), &self))
        }
    }
}

/// Displays bytes as lower-case hex.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_lower(self.0, f)
    }
}
