//! The shared conformance suite over `MemLayer<MemoryBackend>`, in several shapes.

use std::path::Path;
use std::time::Duration;

use cacheness_memlayer::{Capacity, MemLayer, MemLayerConfig};
use cacheness_memory::MemoryBackend;

fn layer(config: MemLayerConfig) -> MemLayer<MemoryBackend> {
    MemLayer::new(MemoryBackend::new(), config).expect("the test configuration is valid")
}

mod default_config {
    cacheness_core::conformance_tests!(|_dir: &std::path::Path| super::layer(
        cacheness_memlayer::MemLayerConfig::default()
    ));
}

/// Three entries: nearly every read evicts, so fills and evictions race writes.
mod three_entries {
    use super::*;
    cacheness_core::conformance_tests!(|_dir: &Path| layer(
        MemLayerConfig::new().capacity(Capacity::Entries(3))
    ));
}

/// A byte capacity that holds a handful of small entries and no large ones.
mod four_kib {
    use super::*;
    cacheness_core::conformance_tests!(|_dir: &Path| layer(
        MemLayerConfig::new().capacity(Capacity::Bytes(4 * 1024))
    ));
}

/// Copies trusted for a second between version checks.
mod check_interval {
    use super::*;
    cacheness_core::conformance_tests!(|_dir: &Path| layer(
        MemLayerConfig::new().check_interval(Duration::from_secs(1))
    ));
}

/// Turned off: a plain pass-through.
mod disabled {
    use super::*;
    cacheness_core::conformance_tests!(|_dir: &Path| layer(MemLayerConfig::new().enabled(false)));
}

/// Over the SQLite file backend, with the default and a tiny capacity.
mod sqlite {
    use super::*;
    use cacheness_sqlite::SqliteBackend;

    fn open(dir: &Path, config: MemLayerConfig) -> MemLayer<SqliteBackend> {
        let backend = SqliteBackend::open(dir).expect("the database opens");
        MemLayer::new(backend, config).expect("the test configuration is valid")
    }

    mod default_config {
        use super::*;
        cacheness_core::conformance_tests!(|dir: &Path| open(dir, MemLayerConfig::default()));
    }

    mod three_entries {
        use super::*;
        cacheness_core::conformance_tests!(|dir: &Path| open(
            dir,
            MemLayerConfig::new().capacity(Capacity::Entries(3))
        ));
    }
}

/// Over the JSON backend.
mod json {
    use super::*;
    cacheness_core::conformance_tests!(|dir: &Path| {
        let backend = cacheness_json::JsonBackend::open(dir).expect("the metadata opens");
        MemLayer::new(backend, MemLayerConfig::default()).expect("the test configuration is valid")
    });
}
