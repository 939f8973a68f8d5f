//! W8, memoized calls and the async API: each against its baseline.

use super::*;

/// What each W8 figure is, for the table: (figure, what is measured, its
/// baseline).
const LABELS: [(&str, &str, &str); 5] = [
    ("memoized", "memoized call, hit", "hand-written `get`"),
    ("put_1", "async PUT, 1 task", "sync PUT, 1 thread"),
    ("get_1", "async GET, 1 task", "sync GET, 1 thread"),
    (
        "get_many",
        "async GET, many tasks",
        "sync GET, many threads",
    ),
    (
        "put_many",
        "async PUT, many tasks",
        "sync PUT, many threads",
    ),
];

/// The median of `figure`'s baseline and measured metric in `row`'s W8 cell.
pub(super) fn w8_pair(results: &Results, row: &str, figure: &str) -> (Option<f64>, Option<f64>) {
    let cell = results.cells("w8", row).find(|cell| cell.not_run.is_none());
    let metrics = W8_FIGURES.iter().find(|(name, _, _)| *name == figure);
    match (cell, metrics) {
        (Some(cell), Some((_, baseline, measured))) => {
            (cell.median(baseline), cell.median(measured))
        }
        _ => (None, None),
    }
}

pub(super) fn w8(results: &Results) -> String {
    let mut out = caption(results);
    let header = ["backend", "measured", "ops/s", "baseline", "ops/s", "ratio"];
    let mut rows = Vec::new();
    for row in results.rows("w8") {
        if let Some(reason) = row_not_run(results, "w8", row) {
            rows.push(not_run_row(
                label(results, row, "w8"),
                &reason,
                header.len(),
            ));
            continue;
        }
        for (figure, measured_label, baseline_label) in LABELS {
            let (baseline, measured) = w8_pair(results, row, figure);
            rows.push(vec![
                format!("`{row}`"),
                measured_label.into(),
                opt(measured, number),
                baseline_label.into(),
                opt(baseline, number),
                opt(ratio(measured, baseline), percent),
            ]);
        }
    }
    table(&mut out, &header, &rows);
    let entries = sizes(results, "w8", "entries");
    let tasks = sizes(results, "w8", "tasks");
    let threads = sizes(results, "w8", "threads");
    let workers = sizes(results, "w8", "workers");
    let first = |values: &[u64]| values.first().map_or("—".into(), |n| count(*n));
    let _ = writeln!(
        out,
        "\n{} W1 records per figure. The memoized call is `#[memoize(cache = cache, skip(cache))] fn memoized(cache: &Cache, idx: u64) -> Record`, against a `get` of `key!(experiment, idx)` with a put on a miss (every call a hit). Many callers: {} tasks on a Tokio runtime of {} worker threads, against {} threads of the sync API. `sqlite` is in a fresh dir; `memory` has no dir, so its async calls run on the calling task. Each figure and its baseline run one after the other on the same cache, in an order that alternates between repetitions.",
        first(&entries),
        first(&tasks),
        first(&workers),
        first(&threads),
    );
    out
}
