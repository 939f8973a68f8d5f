//! The backends cacheness knows of: one [`BackendInfo`] per backend, which
//! configuration, detection of a dir's backend, opening and migration all
//! read. Registering a backend is one entry in [`BACKENDS`] (plus its cargo
//! feature and its open function).

use std::path::Path;
use std::sync::Arc;

use cacheness_core::{Error, MetadataBackend, Result};

use crate::config::CacheConfig;

/// Opens a backend for a configuration; `dir` is `Some` for a backend that
/// needs one (checked before the call).
type OpenFn = fn(&CacheConfig, Option<&Path>) -> Result<Arc<dyn MetadataBackend>>;

/// A backend cacheness knows of, and whether this build has it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct BackendInfo {
    /// The name used in configuration.
    pub name: &'static str,
    /// The cargo feature of `cacheness` that compiles it in.
    pub feature: &'static str,
    /// Whether this build has it.
    pub compiled: bool,
    /// Whether its metadata lives in the cache dir (so a dir is required).
    pub needs_dir: bool,
    /// Files in the cache dir whose presence means this backend's metadata is
    /// there. Written here rather than taken from the backend crate so a
    /// build without that crate still recognizes its caches (tests check they
    /// equal the crates' own constants).
    pub metadata_files: &'static [&'static str],
    /// Files that mean metadata is there only when they are not empty (an
    /// append-only log: an empty one planted beside another backend's cache
    /// must not make the dir look like two caches).
    pub metadata_logs: &'static [&'static str],
    /// Whether an open rebuilds this backend's metadata from the blob files
    /// when it is lost (a backend that does not do it itself at open).
    pub rebuilt_when_lost: bool,
    open: OpenFn,
}

/// Every backend, in the order the docs list them.
pub const BACKENDS: &[BackendInfo] = &[
    BackendInfo {
        name: "memory",
        feature: "memory",
        compiled: cfg!(feature = "memory"),
        needs_dir: false,
        metadata_files: &[],
        metadata_logs: &[],
        rebuilt_when_lost: false,
        open: open::MEMORY,
    },
    BackendInfo {
        name: "json",
        feature: "json",
        compiled: cfg!(feature = "json"),
        needs_dir: true,
        metadata_files: &["metadata.json"],
        metadata_logs: &["metadata.journal"],
        rebuilt_when_lost: false,
        open: open::JSON,
    },
    BackendInfo {
        name: "sqlite",
        feature: "sqlite",
        compiled: cfg!(feature = "sqlite"),
        needs_dir: true,
        metadata_files: &["cache_metadata.db"],
        metadata_logs: &[],
        rebuilt_when_lost: true,
        open: open::SQLITE,
    },
    BackendInfo {
        name: "sqlite-memory",
        feature: "sqlite",
        compiled: cfg!(feature = "sqlite"),
        needs_dir: false,
        metadata_files: &[],
        metadata_logs: &[],
        rebuilt_when_lost: false,
        open: open::SQLITE_MEMORY,
    },
];

impl BackendInfo {
    /// Whether this backend's metadata is in `dir`.
    pub fn has_metadata(&self, dir: &Path) -> bool {
        self.metadata_files
            .iter()
            .any(|file| dir.join(file).exists())
            || self.metadata_logs.iter().any(|log| {
                std::fs::symlink_metadata(dir.join(log)).is_ok_and(|metadata| metadata.len() > 0)
            })
    }

    /// Opens this backend for `config`.
    pub(crate) fn open(
        &self,
        config: &CacheConfig,
        dir: Option<&Path>,
    ) -> Result<Arc<dyn MetadataBackend>> {
        if self.needs_dir && dir.is_none() {
            return Err(Error::Config {
                field: "dir",
                reason: format!(
                    "the {} backend keeps its metadata in the cache dir; set one",
                    self.name
                ),
            });
        }
        (self.open)(config, dir)
    }
}

/// The backends whose metadata lives in the cache dir.
pub(crate) fn disk_backends() -> impl Iterator<Item = &'static BackendInfo> {
    BACKENDS.iter().filter(|info| info.needs_dir)
}

/// The disk backend called `name`.
pub(crate) fn disk_backend(name: &str) -> Option<&'static BackendInfo> {
    disk_backends().find(|info| info.name == name)
}

/// The known backend called `name`, if this build has it; otherwise an error
/// listing what is available and which feature enables the missing one.
pub(crate) fn backend_info(name: &str) -> Result<&'static BackendInfo> {
    let compiled: Vec<&str> = BACKENDS
        .iter()
        .filter(|info| info.compiled)
        .map(|info| info.name)
        .collect();
    match BACKENDS.iter().find(|info| info.name == name) {
        Some(info) if info.compiled => Ok(info),
        Some(info) => Err(Error::Config {
            field: "backend",
            reason: format!(
                "backend `{name}` is not compiled in; enable the `{}` feature of cacheness (compiled in: {})",
                info.feature,
                compiled.join(", ")
            ),
        }),
        None => Err(Error::Config {
            field: "backend",
            reason: format!(
                "unknown backend `{}`; known: {} (compiled in: {})",
                name.escape_debug(),
                BACKENDS
                    .iter()
                    .map(|info| info.name)
                    .collect::<Vec<_>>()
                    .join(", "),
                compiled.join(", ")
            ),
        }),
    }
}

/// Each backend's open function, or for a backend this build lacks, one that
/// says so (never called: [`backend_info`] refuses it first).
mod open {
    #[cfg(any(feature = "json", feature = "sqlite"))]
    use cacheness_core::Durability;

    use super::*;

    #[cfg(feature = "memory")]
    pub(super) const MEMORY: OpenFn = |_, _| Ok(Arc::new(cacheness_memory::MemoryBackend::new()));
    #[cfg(not(feature = "memory"))]
    pub(super) const MEMORY: OpenFn = not_compiled;

    #[cfg(feature = "json")]
    pub(super) const JSON: OpenFn = json;
    #[cfg(not(feature = "json"))]
    pub(super) const JSON: OpenFn = not_compiled;

    #[cfg(feature = "sqlite")]
    pub(super) const SQLITE: OpenFn = sqlite;
    #[cfg(not(feature = "sqlite"))]
    pub(super) const SQLITE: OpenFn = not_compiled;

    #[cfg(feature = "sqlite")]
    pub(super) const SQLITE_MEMORY: OpenFn = |config, _| {
        Ok(Arc::new(cacheness_sqlite::SqliteBackend::in_memory_with(
            &config.sqlite,
        )?))
    };
    #[cfg(not(feature = "sqlite"))]
    pub(super) const SQLITE_MEMORY: OpenFn = not_compiled;

    #[cfg(not(all(feature = "memory", feature = "json", feature = "sqlite")))]
    fn not_compiled(config: &CacheConfig, _: Option<&Path>) -> Result<Arc<dyn MetadataBackend>> {
        Err(Error::Config {
            field: "backend",
            reason: format!("backend `{}` is not compiled in", config.backend),
        })
    }

    #[cfg(feature = "json")]
    fn json(config: &CacheConfig, dir: Option<&Path>) -> Result<Arc<dyn MetadataBackend>> {
        let dir = dir.expect("BackendInfo::open checks json's dir");
        // `Durability::Sync` promises the metadata reaches the disk too.
        let mut options = config.json.clone();
        if config.durability == Durability::Sync {
            options.durability = Durability::Sync;
        }
        let backend = if config.read_only {
            cacheness_json::JsonBackend::open_read_only(dir, &options)?
        } else {
            cacheness_json::JsonBackend::open_with(dir, &options)?
        };
        Ok(Arc::new(backend))
    }

    #[cfg(feature = "sqlite")]
    fn sqlite(config: &CacheConfig, dir: Option<&Path>) -> Result<Arc<dyn MetadataBackend>> {
        use cacheness_sqlite::{SqliteBackend, SqliteOptions, Synchronous};
        let dir = dir.expect("BackendInfo::open checks sqlite's dir");
        let mut options = config.sqlite.clone();
        if config.durability == Durability::Sync
            && matches!(options.synchronous, Synchronous::Off | Synchronous::Normal)
        {
            options.synchronous = Synchronous::Full;
        }
        options.read_only |= config.read_only;
        // The log counts towards the dir's footprint: a size-limited cache
        // keeps it within its limit (at least 64 KiB, at most the default).
        if let Some(max_size) = config.max_size
            && options.wal_limit_bytes == SqliteOptions::default().wal_limit_bytes
        {
            options.wal_limit_bytes = max_size.clamp(64 << 10, options.wal_limit_bytes);
        }
        Ok(Arc::new(SqliteBackend::open_with(dir, &options)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metadata file names written in the table are the backend crates'
    /// own (the table keeps literals so builds without a crate still detect
    /// its caches).
    #[test]
    fn metadata_file_names_are_the_backend_crates_own() {
        let named = |name: &str| BACKENDS.iter().find(|info| info.name == name).unwrap();
        #[cfg(feature = "json")]
        {
            assert_eq!(
                named("json").metadata_files,
                [cacheness_json::SNAPSHOT_FILE]
            );
            assert_eq!(named("json").metadata_logs, [cacheness_json::JOURNAL_FILE]);
        }
        #[cfg(feature = "sqlite")]
        assert_eq!(
            named("sqlite").metadata_files,
            [cacheness_sqlite::DB_FILE_NAME]
        );
        let _ = named;
    }

    #[test]
    fn names_are_unique_and_only_disk_backends_have_metadata_files() {
        for (index, info) in BACKENDS.iter().enumerate() {
            assert!(
                BACKENDS[..index]
                    .iter()
                    .all(|other| other.name != info.name)
            );
            assert_eq!(
                info.needs_dir,
                !info.metadata_files.is_empty(),
                "{}",
                info.name
            );
        }
    }
}
