//! Entries as rows: one column per field of the unified schema.

use std::path::Path;

use cacheness_core::{CacheKey, Compression, ContentHash, Entry, Location, Params, UserMetadata};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Row, Statement, ToSql};

use crate::error::SqliteError;

/// The columns of `entries`, in the order rows are read and written; a macro so
/// that statements are `concat!`ed at compile time, not formatted per call.
macro_rules! columns {
    () => {
        concat!("key, ", $crate::row::other_columns!())
    };
}
pub(crate) use columns;

/// [`columns!`] but the first, `key`.
macro_rules! other_columns {
    () => {
        "prefix, description, type_tag, codec, params, \
         created_at, accessed_at, expires_at, access_count, stored_size, raw_size, \
         compression, content_hash, inline_value, blob_name, signature, user_metadata"
    };
}
pub(crate) use other_columns;

const COLUMN_NAMES: [&str; 18] = [
    "key",
    "prefix",
    "description",
    "type_tag",
    "codec",
    "params",
    "created_at",
    "accessed_at",
    "expires_at",
    "access_count",
    "stored_size",
    "raw_size",
    "compression",
    "content_hash",
    "inline_value",
    "blob_name",
    "signature",
    "user_metadata",
];

/// Why an operation failed, before the backend adds the path and operation.
#[derive(Debug)]
pub(crate) enum Failure {
    Sql(rusqlite::Error),
    InvalidRow {
        key: String,
        column: &'static str,
        reason: String,
    },
    Encode {
        key: String,
        column: &'static str,
        source: serde_json::Error,
    },
    Foreign {
        tables: String,
    },
}

impl Failure {
    /// The public error, naming the database and what was being done.
    pub(crate) fn into_error(self, path: &Path, operation: &'static str) -> SqliteError {
        let path = path.to_owned();
        match self {
            Failure::Sql(source) => SqliteError::Query {
                operation,
                path,
                source,
            },
            Failure::InvalidRow {
                key,
                column,
                reason,
            } => SqliteError::InvalidRow {
                path,
                key,
                column,
                reason,
            },
            Failure::Encode {
                key,
                column,
                source,
            } => SqliteError::Encode {
                key,
                column,
                source,
            },
            Failure::Foreign { tables } => SqliteError::Foreign { path, tables },
        }
    }
}

/// A row read for an operation that must work whether or not the row can be read
/// back as an entry (a removal, a listing passing over damage).
// Boxing the entry would cost an allocation per listed row; the value lives
// only until it is matched.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum RowRead {
    /// The row as an entry.
    Entry(Entry),
    /// A row that cannot be read as an entry (a column of the wrong type, JSON
    /// that does not parse or nests past the parser's limit).
    Unreadable {
        /// The key column's bytes, whatever their length (empty if the column is
        /// not a blob): where a keyset page goes on from.
        raw_key: Vec<u8>,
        /// The key, if the key column itself is a valid key.
        key: Option<CacheKey>,
        /// The `stored_size` column if that much is readable, else 0: what the
        /// running totals subtract when the row goes.
        stored_size: u64,
        /// What is wrong with it, naming the column.
        reason: String,
    },
}

impl RowRead {
    /// The row's `stored_size` (0 when unreadable).
    pub(crate) fn stored_size(&self) -> u64 {
        match self {
            RowRead::Entry(entry) => entry.stored_size,
            RowRead::Unreadable { stored_size, .. } => *stored_size,
        }
    }

    /// The key for messages: hex, or `?` when the key column is damaged too.
    pub(crate) fn key_hex(raw_key: &[u8], key: Option<CacheKey>) -> String {
        match key {
            Some(key) => key.to_hex(),
            None if raw_key.is_empty() => "?".into(),
            None => raw_key.iter().map(|byte| format!("{byte:02x}")).collect(),
        }
    }
}

/// Reads a row selected as [`columns!`]: an entry, or what is known of a row
/// that cannot be one. Only SQLite failing to give the row's values is an error.
pub(crate) fn read_row(row: &Row<'_>) -> rusqlite::Result<RowRead> {
    match entry_from_row(row) {
        Ok(entry) => Ok(RowRead::Entry(entry)),
        Err(Failure::Sql(error)) => Err(error),
        Err(failure) => {
            let raw_key = match row.get_ref(0)? {
                ValueRef::Blob(bytes) => bytes.to_vec(),
                _ => Vec::new(),
            };
            let key = <[u8; 16]>::try_from(raw_key.as_slice())
                .ok()
                .map(CacheKey::from_bytes);
            let reason = match failure {
                Failure::InvalidRow { column, reason, .. } => {
                    format!("invalid `{column}`: {reason}")
                }
                other => format!("{other:?}"),
            };
            Ok(RowRead::Unreadable {
                raw_key,
                key,
                stored_size: wide(row.get_ref(10)?).unwrap_or(0),
                reason,
            })
        }
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Failure::Sql(error)
    }
}

/// A `u64` as SQLite stores it: an INTEGER when it fits in `i64` (every real time,
/// size and count), else an 8-byte big-endian BLOB. SQLite orders every INTEGER
/// before every BLOB and BLOBs of one length bytewise, so the encoding keeps the
/// order of `u64`, and indexed range queries (`expires_at <= ?`) and `max()` work
/// over the whole range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wide(pub(crate) u64);

impl ToSql for Wide {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Owned(match i64::try_from(self.0) {
            Ok(small) => Value::Integer(small),
            Err(_) => Value::Blob(self.0.to_be_bytes().to_vec()),
        }))
    }
}

/// Reads a [`Wide`] value back.
pub(crate) fn wide(value: ValueRef<'_>) -> Result<u64, String> {
    match value {
        ValueRef::Integer(small) => {
            u64::try_from(small).map_err(|_| format!("negative integer {small}"))
        }
        ValueRef::Blob(bytes) => match <[u8; 8]>::try_from(bytes) {
            Ok(bytes) => Ok(u64::from_be_bytes(bytes)),
            Err(_) => Err(format!("a blob of {} bytes, not 8", bytes.len())),
        },
        other => Err(format!("{:?}, not an integer", other.data_type())),
    }
}

/// Binds `entry` to the 18 parameters of an insert in [`columns!`] order.
pub(crate) fn bind_entry(statement: &mut Statement<'_>, entry: &Entry) -> Result<usize, Failure> {
    let encode = |column, source| Failure::Encode {
        key: entry.key.to_hex(),
        column,
        source,
    };
    let params = match &entry.params {
        Some(params) => Some(params_column(params).map_err(|e| encode("params", e))?),
        None => None,
    };
    let user_metadata = if entry.user_metadata.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&entry.user_metadata).map_err(|e| encode("user_metadata", e))?)
    };
    let (inline_value, blob_name) = match &entry.location {
        Location::Inline(bytes) => (Some(bytes.as_slice()), None),
        Location::Blob(name) => (None, Some(name.as_str())),
    };
    Ok(statement.execute(rusqlite::params![
        entry.key.as_bytes().as_slice(),
        entry.prefix,
        entry.description,
        entry.type_tag,
        entry.codec,
        params,
        Wide(entry.created_at),
        Wide(entry.accessed_at),
        entry.expires_at.map(Wide),
        Wide(entry.access_count),
        Wide(entry.stored_size),
        Wide(entry.raw_size),
        entry.compression.as_str(),
        entry.content_hash.0.as_slice(),
        inline_value,
        blob_name,
        entry.signature,
        user_metadata,
    ])?)
}

/// `params` as stored: the canonical binary encoding (the one the key is the
/// hash of, a BLOB) when decoding it gives the same params back, else JSON text.
/// The binary form decodes several times faster, which listings and gets of
/// many entries feel; JSON covers what it leaves out (the paths of file digests,
/// NaN payloads). Rows of older versions hold JSON text and read as before.
fn params_column(params: &Params) -> Result<Value, serde_json::Error> {
    let binary = params.encode();
    if Params::decode(&binary).is_ok_and(|back| back == *params) {
        return Ok(Value::Blob(binary));
    }
    serde_json::to_string(params).map(Value::Text)
}

/// Reads a row selected as [`columns!`] back into an entry; damage is an error
/// naming the key and column, never a panic.
pub(crate) fn entry_from_row(row: &Row<'_>) -> Result<Entry, Failure> {
    let key = match row.get_ref(0)? {
        ValueRef::Blob(bytes) => match <[u8; 16]>::try_from(bytes) {
            Ok(bytes) => CacheKey::from_bytes(bytes),
            Err(_) => return Err(invalid("?", 0, format!("{} bytes, not 16", bytes.len()))),
        },
        other => return Err(invalid("?", 0, format!("{:?}", other.data_type()))),
    };
    let reader = Columns { row, key };
    let location = match (reader.optional_blob(14)?, reader.optional_text(15)?) {
        (Some(bytes), None) => Location::Inline(bytes.to_vec()),
        (None, Some(name)) => Location::Blob(name.to_owned()),
        _ => {
            return Err(reader.invalid(14, "exactly one of inline_value and blob_name must be set"));
        }
    };
    let params = match row.get_ref(5)? {
        ValueRef::Null => None,
        ValueRef::Blob(binary) => {
            Some(Params::decode(binary).map_err(|e| reader.invalid(5, e.to_string()))?)
        }
        ValueRef::Text(json) => Some(
            serde_json::from_slice::<Params>(json).map_err(|e| reader.invalid(5, e.to_string()))?,
        ),
        other => {
            return Err(reader.invalid(5, format!("{:?}, not text or a blob", other.data_type())));
        }
    };
    let user_metadata = match reader.optional_text(17)? {
        Some(json) => serde_json::from_str::<UserMetadata>(json)
            .map_err(|e| reader.invalid(17, e.to_string()))?,
        None => UserMetadata::new(),
    };
    let compression = reader
        .text(12)?
        .parse::<Compression>()
        .map_err(|reason| reader.invalid(12, reason))?;
    let content_hash = match reader.optional_blob(13)?.map(<[u8; 32]>::try_from) {
        Some(Ok(hash)) => ContentHash(hash),
        _ => return Err(reader.invalid(13, "not a 32-byte blob")),
    };
    let mut entry = Entry::new(key, content_hash, location);
    entry.prefix = reader.text(1)?.to_owned();
    entry.description = reader.text(2)?.to_owned();
    entry.type_tag = reader.text(3)?.to_owned();
    entry.codec = reader.text(4)?.to_owned();
    entry.params = params;
    entry.created_at = reader.wide(6)?;
    entry.accessed_at = reader.wide(7)?;
    entry.expires_at = match row.get_ref(8)? {
        ValueRef::Null => None,
        value => Some(wide(value).map_err(|reason| reader.invalid(8, reason))?),
    };
    entry.access_count = reader.wide(9)?;
    entry.stored_size = reader.wide(10)?;
    entry.raw_size = reader.wide(11)?;
    entry.compression = compression;
    entry.signature = reader.optional_text(16)?.map(str::to_owned);
    entry.user_metadata = user_metadata;
    Ok(entry)
}

fn invalid(key: &str, column: usize, reason: impl Into<String>) -> Failure {
    Failure::InvalidRow {
        key: key.to_owned(),
        column: COLUMN_NAMES[column],
        reason: reason.into(),
    }
}

/// Typed column reads that name the key and column when they fail.
struct Columns<'row, 'stmt> {
    row: &'row Row<'stmt>,
    key: CacheKey,
}

impl<'row> Columns<'row, '_> {
    fn invalid(&self, column: usize, reason: impl Into<String>) -> Failure {
        invalid(&self.key.to_hex(), column, reason)
    }

    fn text(&self, column: usize) -> Result<&'row str, Failure> {
        self.optional_text(column)?
            .ok_or_else(|| self.invalid(column, "NULL"))
    }

    fn optional_text(&self, column: usize) -> Result<Option<&'row str>, Failure> {
        match self.row.get_ref(column)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|e| self.invalid(column, e.to_string())),
            other => Err(self.invalid(column, format!("{:?}, not text", other.data_type()))),
        }
    }

    fn optional_blob(&self, column: usize) -> Result<Option<&'row [u8]>, Failure> {
        match self.row.get_ref(column)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(bytes) => Ok(Some(bytes)),
            other => Err(self.invalid(column, format!("{:?}, not a blob", other.data_type()))),
        }
    }

    fn wide(&self, column: usize) -> Result<u64, Failure> {
        wide(self.row.get_ref(column)?).map_err(|reason| self.invalid(column, reason))
    }
}

#[cfg(test)]
mod tests {
    use cacheness_core::key::{FileDigest, Value as ParamValue};

    use super::*;

    #[test]
    fn params_are_stored_binary_when_that_loses_nothing() {
        let plain = Params::new()
            .with("experiment", "bench")
            .unwrap()
            .with("idx", 7u64)
            .unwrap()
            .with("rate", -0.5)
            .unwrap()
            .with(
                "tags",
                vec![ParamValue::from("a"), ParamValue::bytes(*b"\0\xff")],
            )
            .unwrap();
        let with_file = plain
            .clone()
            .with(
                "input",
                FileDigest {
                    path: "/data/input.csv".into(),
                    blake3: [9; 32],
                },
            )
            .unwrap();
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (params TEXT)").unwrap();
        for (params, kind) in [(&plain, "blob"), (&with_file, "text")] {
            conn.execute("DELETE FROM t", []).unwrap();
            conn.execute(
                "INSERT INTO t VALUES (?1)",
                [params_column(params).unwrap()],
            )
            .unwrap();
            let stored: String = conn
                .query_row("SELECT typeof(params) FROM t", [], |row| row.get(0))
                .unwrap();
            assert_eq!(stored, kind, "{params}");
        }
    }

    #[test]
    fn wide_values_keep_their_order_in_sqlite() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        let values = [
            0,
            1,
            i64::MAX as u64,
            i64::MAX as u64 + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        for value in values.iter().rev() {
            conn.execute("INSERT INTO t VALUES (?1)", [Wide(*value)])
                .unwrap();
        }
        let mut statement = conn.prepare("SELECT v FROM t ORDER BY v").unwrap();
        let sorted: Vec<u64> = statement
            .query_map([], |row| Ok(wide(row.get_ref(0)?).unwrap()))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(sorted, values);
        let at_most: i64 = conn
            .query_row(
                "SELECT count(*) FROM t WHERE v <= ?1",
                [Wide(i64::MAX as u64 + 1)],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(at_most, 4);
        assert!(wide(ValueRef::Integer(-1)).is_err());
        assert!(wide(ValueRef::Blob(&[1, 2])).is_err());
    }
}
