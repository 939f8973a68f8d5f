//! W3, large values: throughput by value size.

use super::*;

pub(super) fn w3(results: &Results) -> String {
    let mut out = caption(results);
    out.push_str(
        "![W3: MB/s against value size, with the raw-fs floor](img/w3-throughput.svg)\n\n",
    );
    let header = [
        "row",
        "value size",
        "data",
        "PUT MB/s",
        "GET MB/s",
        "PUT / GET of raw-fs floor",
        "PUT / GET vs cacache",
        "compression (raw / stored)",
    ];
    let mut rows = Vec::new();
    let all_rows = results.rows("w3");
    for row in &all_rows {
        if let Some(reason) = row_not_run(results, "w3", row) {
            rows.push(not_run_row(
                label(results, row, "w3"),
                &reason,
                header.len(),
            ));
        }
    }
    for size in sizes(results, "w3", "size") {
        for data in ["compressible", "incompressible"] {
            for row in &all_rows {
                let metric = |name: &str| w3_metric(results, row, size, data, name);
                let (Some(put), Some(get)) = (metric("put_mb_s"), metric("get_mb_s")) else {
                    continue;
                };
                let of = |peer: &str, format: fn(f64) -> String| {
                    format!(
                        "{} / {}",
                        opt(
                            ratio(Some(put), w3_metric(results, peer, size, data, "put_mb_s")),
                            format
                        ),
                        opt(
                            ratio(Some(get), w3_metric(results, peer, size, data, "get_mb_s")),
                            format
                        )
                    )
                };
                let peer_row = *row == "raw-fs" || *row == "cacache";
                rows.push(vec![
                    label(results, row, "w3"),
                    human_size(size),
                    data.into(),
                    number(put),
                    number(get),
                    if *row == "raw-fs" {
                        "—".into()
                    } else {
                        of("raw-fs", percent)
                    },
                    if peer_row {
                        "—".into()
                    } else {
                        of("cacache", times)
                    },
                    opt(
                        metric("compression_ratio").map(|ratio| 1.0 / ratio),
                        percent,
                    ),
                ]);
            }
        }
    }
    table(&mut out, &header, &rows);
    out.push_str("\nThe floor writes the same bytes to a temporary file and renames it into place, then reads them back with `std::fs::read`: the disk's (and page cache's) own speed. \"stored / raw\": stored bytes after compression as a fraction of the raw bytes (lz4 when it pays).\n");
    out
}
