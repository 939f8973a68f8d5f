//! The rows of the tables: a cacheness backend opened by name through the
//! facade, and the peers and floors it is measured against, behind one small
//! trait so every workload times them the same way.

use std::path::{Path, PathBuf};

use cacheness::backend::{Capacity, MemLayerConfig, SqliteOptions};
use cacheness::{Cache, CacheConfig, Error, ListOptions, key};
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};
use crate::results::RowKind;

/// The seed workload's value: an id, a short name and 20 integers, about 200
/// bytes as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The item number.
    pub id: u64,
    /// A short name.
    pub name: String,
    /// Twenty integers.
    pub values: Vec<u64>,
}

impl Record {
    /// The record stored under item `idx`.
    pub fn new(idx: u64) -> Record {
        Record {
            id: idx,
            name: format!("experiment-{idx:06}"),
            values: (0..20)
                .map(|slot| 1_000_000 + idx * 31 + slot * 7)
                .collect(),
        }
    }
}

/// The 32-hex cache key of item `idx` in `workload`: what cacheness computes
/// from `key!(experiment = workload, idx = idx)`, and what the peers use as
/// their key string.
pub fn key_hex(workload: &str, idx: u64) -> String {
    cacheness::ToKey::to_key(&key!(experiment = workload, idx = idx)).to_hex()
}

/// The peers and floors, by row name.
pub const PEERS: &[(&str, RowKind)] = &[
    ("cacache", RowKind::Peer),
    ("raw-sqlite", RowKind::Floor),
    ("raw-fs", RowKind::Floor),
];

/// Something values go into and come out of, timed by the workloads.
pub trait Store {
    /// Stores the seed record of item `idx`.
    fn put_record(&mut self, idx: u64, record: &Record) -> Result<()> {
        let bytes = serde_json::to_vec(record).map_err(|source| self.fail(source.into()))?;
        self.put_bytes(idx, &bytes)
    }

    /// Reads item `idx` back as a record.
    fn get_record(&mut self, idx: u64) -> Result<Option<Record>> {
        match self.get_bytes(idx)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| self.fail(source.into())),
            None => Ok(None),
        }
    }

    /// Stores raw bytes as item `idx`.
    fn put_bytes(&mut self, idx: u64, bytes: &[u8]) -> Result<()>;

    /// Reads item `idx` back as raw bytes.
    fn get_bytes(&mut self, idx: u64) -> Result<Option<Vec<u8>>>;

    /// Lists every entry, as a user does to see what is cached; how many.
    fn list(&mut self) -> Result<usize>;

    /// Stored bytes over raw bytes, when the store compresses.
    fn stored_bytes(&mut self) -> Option<u64> {
        None
    }

    /// An error of this store.
    fn fail(&self, source: Box<dyn std::error::Error + Send + Sync>) -> BenchError;
}

/// Opens row `name` (a cacheness backend, or a peer/floor of [`PEERS`]) in the
/// fresh directory `dir`; keys are those of `workload`.
pub fn open(name: &str, dir: &Path, workload: &'static str) -> Result<Box<dyn Store>> {
    match name {
        "cacache" => Ok(Box::new(Cacache {
            dir: dir.to_owned(),
            workload,
        })),
        "raw-sqlite" => Ok(Box::new(RawSqlite::open(dir, workload)?)),
        "raw-fs" => Ok(Box::new(RawFs::open(dir, workload)?)),
        row => match row.split_once('/') {
            // `sqlite/json`: a backend with a codec other than the default.
            Some((backend, codec)) => {
                let codec = codec.parse::<cacheness::NamedCodec>().map_err(|source| {
                    BenchError::cache(
                        workload,
                        row,
                        Error::Config {
                            field: "codec",
                            reason: format!("{source}"),
                        },
                    )
                })?;
                let config = CacheConfig::new().dir(dir).backend(backend).codec(codec);
                Ok(Box::new(Facade::open_config(config, workload)?))
            }
            None => Ok(Box::new(Facade::open(row, dir, workload)?)),
        },
    }
}

/// What kind of row `name` is.
pub fn kind_of(name: &str) -> RowKind {
    PEERS
        .iter()
        .find(|(peer, _)| *peer == name)
        .map_or(RowKind::Cacheness, |(_, kind)| *kind)
}

/// A cacheness backend, opened by name through the facade.
pub struct Facade {
    /// The cache.
    pub cache: Cache,
    backend: String,
    workload: &'static str,
}

impl Facade {
    /// Opens backend `backend` in `dir` through [`CacheConfig`], with its
    /// defaults.
    pub fn open(backend: &str, dir: &Path, workload: &'static str) -> Result<Facade> {
        Facade::open_config(CacheConfig::new().dir(dir).backend(backend), workload)
    }

    /// Opens backend `backend` in `dir` with a memory layer (for `memlayer+…`
    /// backends) that holds up to `entries` entries instead of the default.
    pub fn open_layer_holding(
        backend: &str,
        dir: &Path,
        workload: &'static str,
        entries: u64,
    ) -> Result<Facade> {
        let mut config = CacheConfig::new().dir(dir).backend(backend);
        if backend.starts_with("memlayer+") {
            config.memory_layer = Some(MemLayerConfig::new().capacity(Capacity::Entries(entries)));
        }
        Facade::open_config(config, workload)
    }

    /// Opens the cache `config` describes, as backend `config.backend`.
    pub fn open_config(config: CacheConfig, workload: &'static str) -> Result<Facade> {
        let cache = config
            .open()
            .map_err(|source| BenchError::cache(workload, &config.backend, source))?;
        Ok(Facade {
            cache,
            backend: config.backend,
            workload,
        })
    }
}

impl Store for Facade {
    fn put_record(&mut self, idx: u64, record: &Record) -> Result<()> {
        self.cache
            .put(&key!(experiment = self.workload, idx = idx), record)
            .map_err(|source| self.fail(source.into()))
    }

    fn get_record(&mut self, idx: u64) -> Result<Option<Record>> {
        self.cache
            .get(&key!(experiment = self.workload, idx = idx))
            .map_err(|source| self.fail(source.into()))
    }

    fn put_bytes(&mut self, idx: u64, bytes: &[u8]) -> Result<()> {
        self.cache
            .put_bytes(&key!(experiment = self.workload, idx = idx), bytes)
            .map_err(|source| self.fail(source.into()))
    }

    fn get_bytes(&mut self, idx: u64) -> Result<Option<Vec<u8>>> {
        self.cache
            .get_bytes(&key!(experiment = self.workload, idx = idx))
            .map_err(|source| self.fail(source.into()))
    }

    fn list(&mut self) -> Result<usize> {
        self.cache
            .list(&ListOptions::default())
            .map(|entries| entries.len())
            .map_err(|source| self.fail(source.into()))
    }

    fn stored_bytes(&mut self) -> Option<u64> {
        self.cache.stats().ok().map(|stats| stats.total_size)
    }

    fn fail(&self, source: Box<dyn std::error::Error + Send + Sync>) -> BenchError {
        BenchError::cache(self.workload, &self.backend, source)
    }
}

/// The cacache peer (sync API), keyed by the 32-hex cache key.
struct Cacache {
    dir: PathBuf,
    workload: &'static str,
}

impl Store for Cacache {
    fn put_bytes(&mut self, idx: u64, bytes: &[u8]) -> Result<()> {
        cacache::write_sync(&self.dir, key_hex(self.workload, idx), bytes)
            .map(drop)
            .map_err(|source| self.fail(source.into()))
    }

    fn get_bytes(&mut self, idx: u64) -> Result<Option<Vec<u8>>> {
        match cacache::read_sync(&self.dir, key_hex(self.workload, idx)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(cacache::Error::EntryNotFound(..)) => Ok(None),
            Err(source) => Err(self.fail(source.into())),
        }
    }

    fn list(&mut self) -> Result<usize> {
        let mut count = 0;
        for entry in cacache::list_sync(&self.dir) {
            entry.map_err(|source| self.fail(source.into()))?;
            count += 1;
        }
        Ok(count)
    }

    fn fail(&self, source: Box<dyn std::error::Error + Send + Sync>) -> BenchError {
        BenchError::cache(self.workload, "cacache", source)
    }
}

/// The raw SQLite floor: one table, `INSERT OR REPLACE` and `SELECT` by primary
/// key, each statement its own transaction, as a cache put is.
struct RawSqlite {
    conn: rusqlite::Connection,
    workload: &'static str,
}

impl RawSqlite {
    fn open(dir: &Path, workload: &'static str) -> Result<RawSqlite> {
        let fail = |source: rusqlite::Error| BenchError::cache(workload, "raw-sqlite", source);
        std::fs::create_dir_all(dir).map_err(|source| BenchError::io(dir, source))?;
        let conn = rusqlite::Connection::open(dir.join("raw.db")).map_err(fail)?;
        // The `sqlite` backend's own defaults, from the one place it takes them,
        // so the floor measures SQLite itself, not a differently tuned SQLite.
        let options = SqliteOptions::default();
        conn.execute_batch(&options.file_pragmas()).map_err(fail)?;
        conn.execute_batch(&options.pragmas()).map_err(fail)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
        )
        .map_err(fail)?;
        Ok(RawSqlite { conn, workload })
    }
}

impl Store for RawSqlite {
    fn put_bytes(&mut self, idx: u64, bytes: &[u8]) -> Result<()> {
        let key = key_hex(self.workload, idx);
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO entries (key, value) VALUES (?1, ?2)")
            .and_then(|mut statement| statement.execute(rusqlite::params![key, bytes]))
            .map(drop)
            .map_err(|source| self.fail(source.into()))
    }

    fn get_bytes(&mut self, idx: u64) -> Result<Option<Vec<u8>>> {
        let key = key_hex(self.workload, idx);
        let mut statement = self
            .conn
            .prepare_cached("SELECT value FROM entries WHERE key = ?1")
            .map_err(|source| self.fail(source.into()))?;
        let mut rows = statement
            .query([key])
            .map_err(|source| BenchError::cache(self.workload, "raw-sqlite", source))?;
        match rows
            .next()
            .map_err(|source| BenchError::cache(self.workload, "raw-sqlite", source))?
        {
            Some(row) => row
                .get(0)
                .map(Some)
                .map_err(|source| BenchError::cache(self.workload, "raw-sqlite", source)),
            None => Ok(None),
        }
    }

    fn list(&mut self) -> Result<usize> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT key, length(value) FROM entries ORDER BY key")
            .map_err(|source| self.fail(source.into()))?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(|source| BenchError::cache(self.workload, "raw-sqlite", source))?;
        let mut count = 0;
        for row in rows {
            row.map_err(|source| BenchError::cache(self.workload, "raw-sqlite", source))?;
            count += 1;
        }
        Ok(count)
    }

    fn fail(&self, source: Box<dyn std::error::Error + Send + Sync>) -> BenchError {
        BenchError::cache(self.workload, "raw-sqlite", source)
    }
}

/// The raw filesystem floor: one file per value, written under a temporary
/// name and renamed into place, read back with `std::fs::read`.
struct RawFs {
    dir: PathBuf,
    tmp: PathBuf,
    workload: &'static str,
}

impl RawFs {
    fn open(dir: &Path, workload: &'static str) -> Result<RawFs> {
        let values = dir.join("values");
        let tmp = dir.join("tmp");
        for path in [&values, &tmp] {
            std::fs::create_dir_all(path).map_err(|source| BenchError::io(path, source))?;
        }
        Ok(RawFs {
            dir: values,
            tmp,
            workload,
        })
    }
}

impl Store for RawFs {
    fn put_bytes(&mut self, idx: u64, bytes: &[u8]) -> Result<()> {
        let name = key_hex(self.workload, idx);
        let temporary = self.tmp.join(&name);
        let path = self.dir.join(&name);
        std::fs::write(&temporary, bytes)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|source| BenchError::io(path, source))
    }

    fn get_bytes(&mut self, idx: u64) -> Result<Option<Vec<u8>>> {
        let path = self.dir.join(key_hex(self.workload, idx));
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BenchError::io(path, source)),
        }
    }

    fn list(&mut self) -> Result<usize> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|source| BenchError::io(&self.dir, source))?;
        let mut count = 0;
        for entry in entries {
            let entry = entry.map_err(|source| BenchError::io(&self.dir, source))?;
            entry
                .metadata()
                .map_err(|source| BenchError::io(entry.path(), source))?;
            count += 1;
        }
        Ok(count)
    }

    fn fail(&self, source: Box<dyn std::error::Error + Send + Sync>) -> BenchError {
        BenchError::cache(self.workload, "raw-fs", source)
    }
}
