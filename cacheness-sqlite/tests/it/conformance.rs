//! The shared conformance suite, for the file and the in-memory backend.

mod file {
    cacheness_core::conformance_tests!(|dir: &std::path::Path| {
        cacheness_sqlite::SqliteBackend::open(dir).expect("the database opens")
    });
}

mod memory {
    cacheness_core::conformance_tests!(|_dir: &std::path::Path| {
        cacheness_sqlite::SqliteBackend::in_memory().expect("the database opens")
    });
}
