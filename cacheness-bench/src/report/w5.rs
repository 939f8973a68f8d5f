//! W5, concurrency: threads and processes.

use super::*;

pub(super) fn w5(results: &Results) -> String {
    let mut out = caption(results);
    let threads = sizes(results, "w5", "threads");
    let mut header = vec!["row".to_owned()];
    for count in &threads {
        header.push(format!(
            "{count} thread{} ops/s",
            if *count == 1 { "" } else { "s" }
        ));
    }
    header.push("scaling 1 → max".into());
    header.push(format!(
        "vs diskcache at {} threads",
        threads.last().copied().unwrap_or(0)
    ));
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let metric = |row: &str, count: u64| {
        results
            .find("w5", row, &[("threads", Param::Int(count))])
            .filter(|cell| cell.not_run.is_none())
            .and_then(|cell| cell.median("ops_s"))
    };
    let mut rows = Vec::new();
    for row in results.rows("w5") {
        if let Some(reason) = row_not_run(results, "w5", row) {
            rows.push(not_run_row(
                label(results, row, "w5"),
                &reason,
                header.len(),
            ));
            continue;
        }
        let mut cells = vec![label(results, row, "w5")];
        for count in &threads {
            cells.push(opt(metric(row, *count), number));
        }
        let (first, last) = (threads.first().copied(), threads.last().copied());
        cells.push(opt(
            ratio(
                last.and_then(|n| metric(row, n)),
                first.and_then(|n| metric(row, n)),
            ),
            times,
        ));
        cells.push(if row == DISKCACHE {
            "—".into()
        } else {
            opt(
                ratio(
                    last.and_then(|n| metric(row, n)),
                    last.and_then(|n| metric(DISKCACHE, n)),
                ),
                times,
            )
        });
        rows.push(cells);
    }
    out.push_str("Threads on one cache, 90 % GET / 10 % PUT over the W5 keys:\n\n");
    table(&mut out, &header_refs, &rows);
    let header = [
        "row",
        "processes × keys",
        "PUT ops/s (all processes)",
        "lost entries",
        "wrong values",
    ];
    let mut rows = Vec::new();
    for row in results.rows("w5p") {
        for cell in results.cells("w5p", row) {
            let shape = format!(
                "{} × {}",
                cell.params
                    .get("processes")
                    .map_or("—".into(), ToString::to_string),
                cell.params
                    .get("keys_each")
                    .map_or("—".into(), ToString::to_string)
            );
            match &cell.not_run {
                Some(reason) => {
                    rows.push(not_run_row(
                        label(results, row, "w5p"),
                        reason,
                        header.len(),
                    ));
                }
                None => rows.push(vec![
                    label(results, row, "w5p"),
                    shape,
                    opt(cell.median("put_ops_s"), number),
                    opt(cell.metrics.get("lost_count").map(|m| m.max), number),
                    opt(cell.metrics.get("wrong_count").map(|m| m.max), number),
                ]),
            }
        }
    }
    out.push_str("\nProcesses writing distinct keys into one cache directory at once, then a fresh process reading every value back (lost and wrong: the worst repetition; both must be 0):\n\n");
    table(&mut out, &header, &rows);
    out
}
