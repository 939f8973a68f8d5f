//! The shared conformance suite over `JsonBackend`: with the default options
//! (small values inline), with every value in a blob file, and with inline
//! values compacting on nearly every write.

mod default_options {
    use cacheness_json::JsonBackend;

    cacheness_core::conformance_tests!(
        |dir: &std::path::Path| JsonBackend::open(dir).expect("the json backend opens")
    );
}

mod in_blob_files {
    use cacheness_json::JsonBackend;

    use crate::support::in_blob_files;

    cacheness_core::conformance_tests!(|dir: &std::path::Path| {
        JsonBackend::open_with(dir, &in_blob_files()).expect("the json backend opens")
    });
}

mod inline_compacting {
    use cacheness_json::{JsonBackend, JsonOptions};

    // Inline values and a tiny threshold: nearly every write compacts.
    cacheness_core::conformance_tests!(|dir: &std::path::Path| {
        let options = JsonOptions {
            inline_values: true,
            compaction_min_bytes: 512,
            compaction_ratio: 0.1,
            ..JsonOptions::default()
        };
        JsonBackend::open_with(dir, &options).expect("the json backend opens")
    });
}
