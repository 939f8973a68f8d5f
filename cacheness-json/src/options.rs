//! Options of the JSON backend.

use cacheness_core::Durability;
use serde::Deserialize;

use crate::error::JsonError;

/// Default for [`JsonOptions::compaction_min_bytes`]: 1 MiB.
pub const DEFAULT_COMPACTION_MIN_BYTES: u64 = 1 << 20;
/// Default for [`JsonOptions::compaction_ratio`].
pub const DEFAULT_COMPACTION_RATIO: f64 = 1.0;

/// How the JSON backend stores and compacts its metadata.
///
/// Deserializes from a config file; unknown fields are an error and missing ones
/// take their defaults:
///
/// ```
/// let options: cacheness_json::JsonOptions =
///     serde_json::from_str(r#"{ "compaction_min_bytes": 65536 }"#)?;
/// assert_eq!(options.compaction_min_bytes, 65536);
/// assert!(options.inline_values);
///
/// // Every value in a blob file: lost metadata can be rebuilt from the files.
/// let rebuildable: cacheness_json::JsonOptions =
///     serde_json::from_str(r#"{ "inline_values": false }"#)?;
/// assert!(!rebuildable.inline_values);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonOptions {
    /// Whether values up to the cache's `inline_threshold` live inline in the
    /// metadata (journal line and snapshot) rather than in blob files (default
    /// `true`, like sqlite).
    ///
    /// On, a small put is one journal append: no file is created, so puts stay
    /// fast when the file system is busy deleting (a cache that evicts deletes
    /// files all the time). Inline values are lost with the metadata: a rebuild
    /// recovers the blob-file values and reports how many inline entries it
    /// could not recover
    /// ([`RebuildReport::inline_lost`](cacheness_core::RebuildReport::inline_lost)).
    /// Off, every value is a blob file whose header describes its entry, so the
    /// metadata can be rebuilt from the files alone: the choice for a cache
    /// whose entries must survive losing `metadata.json`.
    pub inline_values: bool,
    /// The journal is never compacted below this size in bytes (default 1 MiB).
    pub compaction_min_bytes: u64,
    /// The journal is compacted into the snapshot once it is larger than this
    /// fraction of the snapshot's size (and than `compaction_min_bytes`); default
    /// 1.0. Compaction rewrites the whole snapshot, so a ratio keeps its cost
    /// amortized O(1) per write.
    pub compaction_ratio: f64,
    /// Whether each journal append is `fsync`ed ([`Durability::Sync`]: survives a
    /// power loss) or only written to the OS ([`Durability::Flush`], the default:
    /// survives the process being killed). Compaction always syncs.
    pub durability: Durability,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            inline_values: true,
            compaction_min_bytes: DEFAULT_COMPACTION_MIN_BYTES,
            compaction_ratio: DEFAULT_COMPACTION_RATIO,
            durability: Durability::Flush,
        }
    }
}

impl JsonOptions {
    pub(crate) fn validate(&self) -> Result<(), JsonError> {
        if !(self.compaction_ratio.is_finite() && self.compaction_ratio > 0.0) {
            return Err(JsonError::InvalidOption {
                field: "compaction_ratio",
                reason: format!("{} is not a positive number", self.compaction_ratio),
            });
        }
        Ok(())
    }

    /// Whether a journal of `journal_len` bytes over a snapshot of
    /// `snapshot_len` bytes is due for compaction.
    pub(crate) fn compaction_due(&self, journal_len: u64, snapshot_len: u64) -> bool {
        let relative = (snapshot_len as f64 * self.compaction_ratio) as u64;
        journal_len > self.compaction_min_bytes.max(relative)
    }
}
