//! W4, skewed reads: hit ratio and read rate.

use super::*;

pub(super) fn w4(results: &Results) -> String {
    let mut out = caption(results);
    out.push_str("![W4: hit ratio of the memory layer](img/w4-hit-ratio.svg)\n\n");
    let header = [
        "backend",
        "distribution",
        "GET ops/s",
        "vs without the layer",
        "layer hit ratio",
    ];
    let mut rows = Vec::new();
    for row in results.rows("w4") {
        if let Some(reason) = row_not_run(results, "w4", row) {
            rows.push(not_run_row(
                label(results, row, "w4"),
                &reason,
                header.len(),
            ));
            continue;
        }
        for distribution in ["80/20", "uniform"] {
            let get = w4_metric(results, row, distribution, "get_ops_s");
            let base = row.strip_prefix("memlayer+");
            rows.push(vec![
                format!("`{row}`"),
                distribution.into(),
                opt(get, number),
                base.map_or_else(
                    || "—".into(),
                    |base| {
                        let without = w4_metric(results, base, distribution, "get_ops_s");
                        format!("{} `{base}`", opt(ratio(get, without), times))
                    },
                ),
                opt(
                    w4_metric(results, row, distribution, "layer_hit_ratio"),
                    percent,
                ),
            ]);
        }
    }
    table(&mut out, &header, &rows);
    let entries = sizes(results, "w4", "entries");
    let gets = sizes(results, "w4", "gets");
    let _ = writeln!(
        out,
        "\n{} entries, {} GETs per repetition: 80 % of reads on 20 % of the keys, or uniform. The memory layer holds up to as many entries as the cache has (its default, 1 000, is smaller than the hot fifth of 10 000) and checks the backend's data version before every read (its default). Repetitions alternate between the rows, so a ratio compares repetitions run side by side. Every read is a hit for the cache; the hit ratio is the memory layer's own (a read served without asking the backend).",
        entries.first().map_or("—".into(), |n| count(*n)),
        gets.first().map_or("—".into(), |n| count(*n)),
    );
    out
}
