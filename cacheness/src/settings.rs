//! The settings that define a cache, stored in its dir at creation
//! (`settings.json`), so every process and the CLI apply the same ones.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use cacheness_core::files::{create_private_file, open_regular_read};
use cacheness_core::{Error, EvictionPolicy, NamedCodec, Result};

/// The file in the cache dir.
pub const SETTINGS_FILE: &str = "settings.json";

/// The format this version writes and reads.
const FORMAT_VERSION: u32 = 1;

/// A settings file is a few hundred bytes; anything larger is not one.
const MAX_SETTINGS_BYTES: u64 = 64 * 1024;

/// The settings that define a cache, as stored in `settings.json` in its dir.
///
/// Written when a cache dir is first opened for writing, from the
/// configuration of that open; later opens that leave a setting unset use the
/// stored one. Change them with [`write_settings`] (or `cacheness settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheSettings {
    /// The format of this file (1).
    pub format_version: u32,
    /// The codec values are stored with.
    pub codec: NamedCodec,
    /// The size limit in stored bytes, if any.
    pub max_size: Option<u64>,
    /// The TTL of entries put without their own, in milliseconds, if any.
    pub default_ttl_ms: Option<u64>,
    /// Which entries the size limit evicts first.
    pub eviction: EvictionPolicy,
    /// Whether entries are signed (the key is `signing.key` in the dir).
    pub sign_entries: bool,
}

impl CacheSettings {
    /// Settings of the current format.
    pub fn new(
        codec: NamedCodec,
        max_size: Option<u64>,
        default_ttl: Option<Duration>,
        eviction: EvictionPolicy,
        sign_entries: bool,
    ) -> Self {
        CacheSettings {
            format_version: FORMAT_VERSION,
            codec,
            max_size,
            default_ttl_ms: default_ttl.map(|ttl| ttl.as_millis().try_into().unwrap_or(u64::MAX)),
            eviction,
            sign_entries,
        }
    }

    /// The default TTL as a duration.
    pub fn default_ttl(&self) -> Option<Duration> {
        self.default_ttl_ms.map(Duration::from_millis)
    }
}

fn path_of(dir: &Path) -> PathBuf {
    dir.join(SETTINGS_FILE)
}

fn refused(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Config {
        field: "settings",
        reason: format!(
            "{}: {reason}; fix it, or remove it to have the next open record the \
             configuration's settings",
            path.display()
        ),
    }
}

/// The settings stored in `dir`, or `None` when it has none (a new dir, or one
/// created before settings were stored). A settings file that is not a regular
/// file, is too large, is not valid, or is of a newer format is an error
/// naming it.
pub fn read_settings(dir: &Path) -> Result<Option<CacheSettings>> {
    let path = path_of(dir);
    let file = match open_regular_read(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(refused(&path, error)),
    };
    let mut text = Vec::new();
    file.take(MAX_SETTINGS_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|source| Error::io("read", &path, source))?;
    if text.len() as u64 > MAX_SETTINGS_BYTES {
        return Err(refused(&path, "larger than a settings file can be"));
    }
    #[derive(Deserialize)]
    struct Version {
        format_version: u32,
    }
    match serde_json::from_slice::<Version>(&text) {
        Ok(version) if version.format_version > FORMAT_VERSION => {
            return Err(refused(
                &path,
                format!(
                    "format {} is newer than this version of cacheness reads ({FORMAT_VERSION})",
                    version.format_version
                ),
            ));
        }
        _ => {}
    }
    let settings: CacheSettings =
        serde_json::from_slice(&text).map_err(|error| refused(&path, error))?;
    if settings.max_size == Some(0) {
        return Err(refused(
            &path,
            "max_size 0 is no cache (use null for no limit)",
        ));
    }
    Ok(Some(settings))
}

/// Writes `settings` into `dir`, replacing what is there (a temp file renamed
/// into place: a reader sees the old file or the new one, never a part).
pub fn write_settings(dir: &Path, settings: &CacheSettings) -> Result<()> {
    let temp = write_temp(dir, settings)?;
    let path = path_of(dir);
    std::fs::rename(&temp, &path).map_err(|source| {
        let _ = std::fs::remove_file(&temp);
        Error::io("replace", &path, source)
    })
}

/// Writes `settings` into `dir` unless it has some already; returns the ones
/// that hold (another process may have been first).
pub(crate) fn create_settings(dir: &Path, settings: &CacheSettings) -> Result<CacheSettings> {
    let temp = write_temp(dir, settings)?;
    let path = path_of(dir);
    // A hard link never replaces an existing file: of processes creating the
    // same dir at once, one's settings are the dir's, and the others read them.
    let linked = std::fs::hard_link(&temp, &path);
    let created = match linked {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // A file system without hard links (FAT, some network mounts): the
        // caller holds the dir's lease, so no other open creates it meanwhile.
        Err(_) if std::fs::symlink_metadata(&path).is_err() => std::fs::rename(&temp, &path)
            .map(|()| true)
            .map_err(|source| Error::io("create", &path, source)),
        Err(_) => Ok(false),
    };
    let _ = std::fs::remove_file(&temp);
    match created? {
        true => Ok(settings.clone()),
        false => read_settings(dir)?
            .ok_or_else(|| refused(&path, "vanished while the cache was being opened")),
    }
}

fn write_temp(dir: &Path, settings: &CacheSettings) -> Result<PathBuf> {
    let mut text = serde_json::to_vec_pretty(settings).map_err(|error| Error::Config {
        field: "settings",
        reason: error.to_string(),
    })?;
    text.push(b'\n');
    let nonce: u64 = rand_nonce();
    let temp = dir.join(format!(
        ".{SETTINGS_FILE}.{}.{nonce:x}.tmp",
        std::process::id()
    ));
    let written = create_private_file(&temp).and_then(|mut file| {
        file.write_all(&text)?;
        file.sync_all()
    });
    written.map_err(|source| {
        let _ = std::fs::remove_file(&temp);
        Error::io("write", &temp, source)
    })?;
    Ok(temp)
}

/// A number no other writer of this process picks at the same time.
fn rand_nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    NEXT.fetch_add(1, Ordering::Relaxed) ^ (u64::from(nanos) << 20)
}
