//! The canonical encoding (grammar in the module docs of `key`).

use std::borrow::Cow;
use std::path::PathBuf;

use super::KeyError;
use super::integer::Integer;
use super::value::{FileDigest, Value};

const MAGIC: &[u8; 3] = b"cnk";
const VERSION: u8 = 1;

const TAG_NONE: u8 = 0x00;
const TAG_BOOL: u8 = 0x01;
const TAG_INT: u8 = 0x02;
const TAG_FLOAT: u8 = 0x03;
const TAG_STR: u8 = 0x04;
const TAG_BYTES: u8 = 0x05;
const TAG_LIST: u8 = 0x06;
const TAG_MAP: u8 = 0x07;
const TAG_FILE: u8 = 0x08;

const CANONICAL_NAN: u64 = 0x7ff8_0000_0000_0000;
const NEGATIVE_ZERO: u64 = 0x8000_0000_0000_0000;

/// Decoding recurses once per nested list or map; the limit keeps hostile
/// input from overflowing the stack.
const MAX_DEPTH: usize = 256;

const LEN_SIZE: usize = 8;

/// The bits a float is keyed by: one NaN, one zero.
pub(crate) fn canonical_float_bits(float: f64) -> u64 {
    if float.is_nan() {
        CANONICAL_NAN
    } else if float == 0.0 {
        0
    } else {
        float.to_bits()
    }
}

/// A parameter as `Params` holds it: its name and value.
pub(crate) type Field = (Cow<'static, str>, Value);

/// The length of the encoding of `params`.
pub(crate) fn encoded_len(params: &[Field]) -> usize {
    MAGIC.len()
        + 1
        + LEN_SIZE
        + params
            .iter()
            .map(|(name, value)| LEN_SIZE + name.len() + value_len(value))
            .sum::<usize>()
}

/// Writes the encoding of `params` (exactly [`encoded_len`] bytes) to `out`.
pub(crate) fn encode_into(params: &[Field], out: &mut impl Output) {
    out.put(MAGIC);
    out.put(&[VERSION]);
    put_len(out, params.len());
    for (name, value) in params {
        put_str(out, name);
        put_value(out, value);
    }
}

/// Where an encoding is written: a growable buffer, or a fixed one sized
/// beforehand (keys of a few parameters are hashed from the stack).
pub(crate) trait Output {
    fn put(&mut self, bytes: &[u8]);
}

impl Output for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A fixed buffer filled from the front; `put` past its end is a bug of the
/// caller's sizing and panics.
pub(crate) struct Filling<'a> {
    pub(crate) buffer: &'a mut [u8],
    pub(crate) filled: usize,
}

impl Output for Filling<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.filled + bytes.len();
        self.buffer[self.filled..end].copy_from_slice(bytes);
        self.filled = end;
    }
}

fn value_len(value: &Value) -> usize {
    1 + match value {
        Value::None => 0,
        Value::Bool(_) => 1,
        Value::Int(_) => 1 + 16,
        Value::Float(_) => 8,
        Value::Str(text) => LEN_SIZE + text.len(),
        Value::Bytes(bytes) => LEN_SIZE + bytes.len(),
        Value::List(items) => LEN_SIZE + items.iter().map(value_len).sum::<usize>(),
        Value::Map(entries) => {
            LEN_SIZE
                + entries
                    .iter()
                    .map(|(key, item)| LEN_SIZE + key.len() + value_len(item))
                    .sum::<usize>()
        }
        Value::File(_) => 32,
    }
}

fn put_len(out: &mut impl Output, len: usize) {
    // usize is at most 64 bits on every target Rust supports.
    out.put(&(len as u64).to_le_bytes());
}

fn put_str(out: &mut impl Output, text: &str) {
    put_len(out, text.len());
    out.put(text.as_bytes());
}

fn put_value(out: &mut impl Output, value: &Value) {
    match value {
        Value::None => out.put(&[TAG_NONE]),
        Value::Bool(flag) => out.put(&[TAG_BOOL, u8::from(*flag)]),
        Value::Int(integer) => {
            out.put(&[TAG_INT, u8::from(integer.is_negative())]);
            out.put(&integer.magnitude().to_le_bytes());
        }
        Value::Float(float) => {
            out.put(&[TAG_FLOAT]);
            out.put(&canonical_float_bits(*float).to_le_bytes());
        }
        Value::Str(text) => {
            out.put(&[TAG_STR]);
            put_str(out, text);
        }
        Value::Bytes(bytes) => {
            out.put(&[TAG_BYTES]);
            put_len(out, bytes.len());
            out.put(bytes);
        }
        Value::List(items) => {
            out.put(&[TAG_LIST]);
            put_len(out, items.len());
            for item in items {
                put_value(out, item);
            }
        }
        Value::Map(entries) => {
            out.put(&[TAG_MAP]);
            put_len(out, entries.len());
            for (key, item) in entries {
                put_str(out, key);
                put_value(out, item);
            }
        }
        Value::File(digest) => {
            out.put(&[TAG_FILE]);
            out.put(&digest.blake3);
        }
    }
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<(String, Value)>, KeyError> {
    let mut reader = Reader { bytes, pos: 0 };
    let magic = reader.array::<3>("header")?;
    if &magic != MAGIC {
        return Err(malformed(0, "not a cacheness key encoding (bad magic)"));
    }
    let version = reader.u8("version")?;
    if version != VERSION {
        return Err(malformed(
            3,
            format!("unsupported encoding version {version}"),
        ));
    }
    let params = reader.entries(EntryKind::Parameter, 0)?;
    if reader.remaining() > 0 {
        return Err(malformed(
            reader.pos,
            format!("{} trailing bytes", reader.remaining()),
        ));
    }
    Ok(params)
}

fn malformed(offset: usize, reason: impl Into<String>) -> KeyError {
    KeyError::Malformed {
        offset,
        reason: reason.into(),
    }
}

#[derive(Clone, Copy)]
enum EntryKind {
    Parameter,
    MapEntry,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], KeyError> {
        let taken = self
            .bytes
            .get(self.pos..)
            .and_then(|rest| rest.get(..len))
            .ok_or_else(|| {
                malformed(
                    self.pos,
                    format!(
                        "truncated {what}: needs {len} bytes, {} left",
                        self.remaining()
                    ),
                )
            })?;
        self.pos += len;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], KeyError> {
        let start = self.pos;
        let slice = self.take(N, what)?;
        <[u8; N]>::try_from(slice).map_err(|_| malformed(start, format!("truncated {what}")))
    }

    fn u8(&mut self, what: &str) -> Result<u8, KeyError> {
        self.array::<1>(what).map(|[byte]| byte)
    }

    /// A length or count. Every counted item takes at least one byte, so
    /// anything above the remaining input is malformed; rejecting it here
    /// also caps what callers pre-allocate.
    fn len(&mut self, what: &str) -> Result<usize, KeyError> {
        let start = self.pos;
        let len = u64::from_le_bytes(self.array(what)?);
        usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.remaining())
            .ok_or_else(|| {
                malformed(
                    start,
                    format!("{what} {len} exceeds the {} bytes left", self.remaining()),
                )
            })
    }

    fn str(&mut self, what: &str) -> Result<&'a str, KeyError> {
        let len = self.len(what)?;
        let start = self.pos;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|error| {
            malformed(
                start + error.valid_up_to(),
                format!("{what} is not valid UTF-8"),
            )
        })
    }

    /// Named entries in strictly increasing byte order: the parameters at the
    /// top level, a map's entries below it.
    fn entries(&mut self, kind: EntryKind, depth: usize) -> Result<Vec<(String, Value)>, KeyError> {
        let (count_label, name_label) = match kind {
            EntryKind::Parameter => ("parameter count", "parameter name"),
            EntryKind::MapEntry => ("map count", "map key"),
        };
        let count = self.len(count_label)?;
        let mut entries = Vec::with_capacity(count);
        let mut previous: Option<&str> = None;
        for _ in 0..count {
            let name_start = self.pos;
            let name = self.str(name_label)?;
            if previous.is_some_and(|previous| previous >= name) {
                return Err(malformed(
                    name_start,
                    format!("{name_label} {name:?} is not in strictly increasing byte order"),
                ));
            }
            previous = Some(name);
            let value = self.value(depth)?;
            entries.push((name.to_owned(), value));
        }
        Ok(entries)
    }

    fn value(&mut self, depth: usize) -> Result<Value, KeyError> {
        let tag_start = self.pos;
        match self.u8("value tag")? {
            TAG_NONE => Ok(Value::None),
            TAG_BOOL => match self.u8("bool")? {
                0 => Ok(Value::Bool(false)),
                1 => Ok(Value::Bool(true)),
                other => Err(malformed(
                    tag_start + 1,
                    format!("bool byte {other} is not 0 or 1"),
                )),
            },
            TAG_INT => {
                let negative = match self.u8("integer sign")? {
                    0 => false,
                    1 => true,
                    other => {
                        return Err(malformed(
                            tag_start + 1,
                            format!("integer sign byte {other} is not 0 or 1"),
                        ));
                    }
                };
                let magnitude = u128::from_le_bytes(self.array("integer magnitude")?);
                Integer::from_sign_magnitude(negative, magnitude)
                    .map(Value::Int)
                    .ok_or_else(|| malformed(tag_start + 1, "negative zero integer"))
            }
            TAG_FLOAT => {
                let bits = u64::from_le_bytes(self.array("float")?);
                let float = f64::from_bits(bits);
                if canonical_float_bits(float) == bits {
                    Ok(Value::Float(float))
                } else if bits == NEGATIVE_ZERO {
                    Err(malformed(
                        tag_start + 1,
                        "float -0.0 must be encoded as 0.0",
                    ))
                } else {
                    Err(malformed(
                        tag_start + 1,
                        format!("non-canonical NaN bits {bits:#018x}"),
                    ))
                }
            }
            TAG_STR => Ok(Value::Str(self.str("string")?.to_owned())),
            TAG_BYTES => {
                let len = self.len("bytes length")?;
                Ok(Value::Bytes(self.take(len, "bytes")?.to_vec()))
            }
            TAG_LIST => {
                let depth = self.deeper(depth, tag_start)?;
                let count = self.len("list count")?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(depth)?);
                }
                Ok(Value::List(items))
            }
            TAG_MAP => {
                let depth = self.deeper(depth, tag_start)?;
                self.entries(EntryKind::MapEntry, depth)
                    .map(|entries| Value::Map(entries.into_iter().collect()))
            }
            TAG_FILE => Ok(Value::File(FileDigest {
                path: PathBuf::new(),
                blake3: self.array("file digest")?,
            })),
            unknown => Err(malformed(
                tag_start,
                format!("unknown value tag {unknown:#04x}"),
            )),
        }
    }

    fn deeper(&self, depth: usize, at: usize) -> Result<usize, KeyError> {
        if depth >= MAX_DEPTH {
            Err(malformed(
                at,
                format!("lists and maps nested deeper than {MAX_DEPTH}"),
            ))
        } else {
            Ok(depth + 1)
        }
    }
}
