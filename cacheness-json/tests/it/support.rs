//! What several test modules share.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use cacheness_json::JsonOptions;

/// Every value in a blob file, whose header describes it: what a rebuild
/// from the files recovers (inline values, the default, are lost with the
/// metadata; see `a_rebuild_recovers_blob_values_and_loses_inline_ones`).
pub(crate) fn in_blob_files() -> JsonOptions {
    JsonOptions {
        inline_values: false,
        ..JsonOptions::default()
    }
}

/// Appends `bytes` to the file at `path`, as a writer (or a hand) would.
pub(crate) fn append(path: &Path, bytes: impl AsRef<[u8]>) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes.as_ref())
        .unwrap();
}
