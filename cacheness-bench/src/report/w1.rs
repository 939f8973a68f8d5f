//! W1, the seed workload: rates by N, and cacheness against its peers.

use super::*;

pub(super) fn w1(results: &Results) -> String {
    let mut out = caption(results);
    let header = [
        "row",
        "N",
        "PUT ops/s",
        "GET ops/s",
        "LIST ms",
        "PUT p50 / p99 µs",
        "GET p50 / p99 µs",
    ];
    let mut rows = Vec::new();
    let all_rows = results.rows("w1");
    for row in &all_rows {
        if let Some(reason) = row_not_run(results, "w1", row) {
            rows.push(not_run_row(
                label(results, row, "w1"),
                &reason,
                header.len(),
            ));
        }
    }
    for n in sizes(results, "w1", "n") {
        for row in &all_rows {
            let Some(cell) = w1_cell(results, row, n) else {
                // A size skipped on its own (the full run's cell bound) says so.
                if row_not_run(results, "w1", row).is_none()
                    && let Some(reason) = results
                        .find("w1", row, &[("n", Param::Int(n))])
                        .and_then(|cell| cell.not_run.as_ref())
                {
                    let mut cells = not_run_row(label(results, row, "w1"), reason, header.len());
                    cells.insert(1, count(n));
                    cells.truncate(header.len());
                    rows.push(cells);
                }
                continue;
            };
            let pair = |p50: &str, p99: &str| {
                format!(
                    "{} / {}",
                    opt(cell.median(p50), number),
                    opt(cell.median(p99), number)
                )
            };
            rows.push(vec![
                label(results, row, "w1"),
                count(n),
                opt(cell.median("put_ops_s"), number),
                opt(cell.median("get_ops_s"), number),
                opt(cell.median("list_ms"), number),
                pair("put_p50_us", "put_p99_us"),
                pair("get_p50_us", "get_p99_us"),
            ]);
        }
    }
    table(&mut out, &header, &rows);
    out.push_str("\nLIST is one call listing every entry (the mean of 5 calls). Latencies are per operation, from an HDR histogram of each repetition. A row named `backend/codec` is that backend storing values with that codec instead of the default one. The rows of a cell ran interleaved, repetition by repetition (every row's first repetition, then every row's second, ...), so no row pays for the file deletions of the row before it.\n");
    out.push_str(&w1_churn(results));
    out
}

/// The after-deletion condition, beside the same rows in the calm one.
fn w1_churn(results: &Results) -> String {
    let mut out = String::new();
    let rows: Vec<Vec<String>> = results
        .rows(W1_CHURN)
        .into_iter()
        .filter_map(|row| {
            let churned = results
                .find(W1_CHURN, row, &[])
                .filter(|cell| cell.not_run.is_none())?;
            let n = match churned.params.get("n") {
                Some(Param::Int(n)) => *n,
                _ => return None,
            };
            let calm = w1_cell(results, row, n);
            let pair = |metric: &str| {
                format!(
                    "{} / {}",
                    opt(calm.and_then(|cell| cell.median(metric)), number),
                    opt(churned.median(metric), number)
                )
            };
            Some(vec![
                label(results, row, "w1"),
                count(n),
                pair("put_ops_s"),
                pair("get_ops_s"),
            ])
        })
        .collect();
    if rows.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\n**After a mass deletion.** Each repetition starts right after {} one-byte files were created and deleted on the same file system (what a cache's eviction and gc produce; ext4 creates files much more slowly for a while after), rows interleaved as above:\n",
        count(CHURN_FILES)
    );
    table(
        &mut out,
        &[
            "row",
            "N",
            "PUT ops/s calm / after deletion",
            "GET ops/s calm / after deletion",
        ],
        &rows,
    );
    out
}

pub(super) fn w1_ratios(results: &Results) -> String {
    let mut out = caption(results);
    let header = [
        "backend",
        "N",
        "PUT / GET vs Python original",
        "PUT / GET vs diskcache",
        "PUT / GET vs cacache",
        "PUT / GET of raw SQLite",
        "PUT / GET of raw fs",
        "LIST vs diskcache",
    ];
    let mut rows = Vec::new();
    for n in sizes(results, "w1", "n") {
        for row in cacheness_rows(results, "w1") {
            let Some(cell) = w1_cell(results, row, n) else {
                continue;
            };
            let put = cell.median("put_ops_s");
            let get = cell.median("get_ops_s");
            let versus = |peer: &str, format: fn(f64) -> String| {
                format!(
                    "{} / {}",
                    opt(ratio(put, w1_metric(results, peer, n, "put_ops_s")), format),
                    opt(ratio(get, w1_metric(results, peer, n, "get_ops_s")), format)
                )
            };
            let seed = seed::at(row, n);
            // LIST is a time: the peer's time over ours says how many times faster.
            let list = ratio(
                w1_metric(results, DISKCACHE, n, "list_ms"),
                cell.median("list_ms"),
            );
            rows.push(vec![
                format!("`{row}`"),
                count(n),
                format!(
                    "{} / {}",
                    opt(ratio(put, seed.map(|s| s.0)), times),
                    opt(ratio(get, seed.map(|s| s.1)), times)
                ),
                versus(DISKCACHE, times),
                versus("cacache", times),
                versus("raw-sqlite", percent),
                versus("raw-fs", percent),
                opt(list, times),
            ]);
        }
    }
    table(&mut out, &header, &rows);
    out.push_str("\n×k: cacheness does k times the peer's operations per second (LIST: finishes k times sooner). Percentages: cacheness as a fraction of the floor's throughput (raw SQLite with the `sqlite` backend's pragmas, one `INSERT OR REPLACE`/`SELECT` per operation; raw fs: temp file + rename per value). Python original: its published figure for the same N (up to 1 000 only).\n");
    out
}
