//! Lower-case hex for digests and keys, without pulling in a crate for it.

use std::fmt;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The most bytes [`Lower`] holds: a 32-byte digest.
const LOWER_MAX: usize = 32;

/// The lower-case hex of up to 32 bytes, in a buffer on the stack.
///
/// A JSON backend writes two digests per entry (key and content hash) into
/// every journal line and snapshot; handing the serializer (or a formatter)
/// one finished `&str` costs a copy, where writing the digits one `char` at a
/// time went through the serializer's escaping once per digit.
pub(crate) struct Lower {
    digits: [u8; LOWER_MAX * 2],
    len: usize,
}

impl Lower {
    /// # Panics
    /// If `bytes` is longer than 32 bytes (every caller passes a fixed-size digest).
    pub(crate) fn new(bytes: &[u8]) -> Lower {
        assert!(bytes.len() <= LOWER_MAX, "hex of {} bytes", bytes.len());
        let mut digits = [0u8; LOWER_MAX * 2];
        for (pair, &byte) in digits.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        Lower {
            digits,
            len: bytes.len() * 2,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.digits[..self.len]).expect("hex digits are ASCII")
    }
}

pub(crate) fn write_lower(bytes: &[u8], out: &mut impl fmt::Write) -> fmt::Result {
    bytes
        .chunks(LOWER_MAX)
        .try_for_each(|chunk| out.write_str(Lower::new(chunk).as_str()))
}

pub(crate) fn to_lower(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    // Writing into a String cannot fail.
    let _ = write_lower(bytes, &mut text);
    text
}

/// Decodes exactly `N` bytes from `2 * N` hex digits of either case.
///
/// Opening a large JSON cache decodes two digests per entry (key and content
/// hash), so this goes through a table and checks validity once per input,
/// rather than branching on each digit's range.
pub(crate) fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return None;
    }
    let mut bytes = [0u8; N];
    let mut invalid = 0u8;
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (NIBBLES[usize::from(pair[0])], NIBBLES[usize::from(pair[1])]);
        invalid |= high | low;
        *byte = (high << 4) | (low & 0x0f);
    }
    (invalid & INVALID == 0).then_some(bytes)
}

/// Marks a byte that is not a hex digit in [`NIBBLES`].
const INVALID: u8 = 0x80;

/// The value of each hex digit, either case; [`INVALID`] for other bytes.
const NIBBLES: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut digit = 0;
    while digit < 10 {
        table[b'0' as usize + digit] = digit as u8;
        digit += 1;
    }
    let mut letter = 0;
    while letter < 6 {
        table[b'a' as usize + letter] = 10 + letter as u8;
        table[b'A' as usize + letter] = 10 + letter as u8;
        letter += 1;
    }
    table
};

/// Serde adapter: a 32-byte digest as 64 hex characters.
pub(crate) mod digest {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub(crate) fn serialize<S: Serializer>(
        digest: &[u8; 32],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(super::Lower::new(digest).as_str())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_hex_matches_the_formatter_at_every_length_up_to_a_digest() {
        let bytes: [u8; 32] = std::array::from_fn(|index| (index as u8).wrapping_mul(37) ^ 0xa5);
        for len in 0..=32 {
            let expected: String = bytes[..len]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            assert_eq!(Lower::new(&bytes[..len]).as_str(), expected);
            assert_eq!(to_lower(&bytes[..len]), expected);
        }
        let long: Vec<u8> = (0..=255).collect();
        let expected: String = long.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(
            to_lower(&long),
            expected,
            "longer inputs go 32 bytes at a time"
        );
    }

    #[test]
    #[should_panic(expected = "hex of 33 bytes")]
    fn lower_hex_refuses_more_than_a_digest() {
        let _ = Lower::new(&[0; 33]);
    }

    #[test]
    fn every_byte_round_trips_in_either_case_and_every_other_digit_is_refused() {
        let all: [u8; 256] = std::array::from_fn(|index| index as u8);
        let lower = to_lower(&all);
        assert_eq!(decode::<256>(&lower), Some(all));
        assert_eq!(decode::<256>(&lower.to_uppercase()), Some(all));
        for byte in 0..=u8::MAX {
            let valid = NIBBLES[usize::from(byte)] & INVALID == 0;
            assert_eq!(valid, byte.is_ascii_hexdigit(), "{byte:#04x}");
            if valid || !byte.is_ascii() {
                continue;
            }
            for at in [0, 1, 6, 7] {
                let mut digits = *b"0123abcd";
                digits[at] = byte;
                let text = std::str::from_utf8(&digits).unwrap();
                assert_eq!(decode::<4>(text), None, "{text:?}");
            }
        }
        assert_eq!(decode::<4>("\u{e9}123abcd"), None, "a two-byte character");
        assert_eq!(decode::<4>("0123abc"), None, "odd length");
        assert_eq!(decode::<4>("0123abcd"), Some([0x01, 0x23, 0xab, 0xcd]));
    }
}
