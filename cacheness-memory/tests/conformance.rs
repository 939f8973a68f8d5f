//! The shared conformance suite over `MemoryBackend`.

mod conformance {
    cacheness_core::conformance_tests!(|_dir: &std::path::Path| {
        cacheness_memory::MemoryBackend::new()
    });
}
