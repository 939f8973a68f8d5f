//! W6, open, rebuild and migration.

use super::*;

pub(super) fn w6(results: &Results) -> String {
    let mut out = caption(results);
    let header = ["backend", "entries", "task", "ms"];
    let mut rows = Vec::new();
    for row in results.rows("w6") {
        for cell in results.cells("w6", row) {
            let task = cell
                .params
                .get("task")
                .map_or("open + first GET".into(), ToString::to_string);
            let entries = entries_with_note(cell);
            let figure = match &cell.not_run {
                Some(reason) => format!("not run: {reason}"),
                None => opt(
                    cell.median("open_first_get_ms").or(cell.median("ms")),
                    number,
                ),
            };
            rows.push(vec![format!("`{row}`"), entries, task, figure]);
        }
    }
    table(&mut out, &header, &rows);
    out.push_str("\nOpen + first GET: a cache written and closed earlier, opened again in the same process (the OS page cache is warm).\n");
    out
}
