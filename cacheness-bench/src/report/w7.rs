//! W7, memory.

use super::*;

pub(super) fn w7(results: &Results) -> String {
    let mut out = caption(results);
    let header = [
        "backend",
        "entries",
        "peak RSS",
        "empty process",
        "bytes per entry",
    ];
    let mut rows = Vec::new();
    for row in results.rows("w7") {
        for cell in results.cells("w7", row) {
            let entries = entries_with_note(cell);
            match &cell.not_run {
                Some(reason) => {
                    rows.push(not_run_row(label(results, row, "w7"), reason, header.len()))
                }
                None => rows.push(vec![
                    format!("`{row}`"),
                    entries,
                    opt(cell.median("peak_rss_bytes"), mebibytes),
                    opt(cell.median("empty_rss_bytes"), mebibytes),
                    opt(cell.median("per_entry_bytes"), number),
                ]),
            }
        }
    }
    table(&mut out, &header, &rows);
    out.push_str("\nEach figure comes from a child process of its own that opens the cache and puts the entries (the W1 value), so one backend's memory never counts against another. Bytes per entry: (peak − empty process) / entries.\n");
    out
}
