//! W2, scaling: W1's rates as N grows.

use super::*;

pub(super) fn w2(results: &Results) -> String {
    let mut out = caption(results);
    out.push_str("![W2: ops/s against the number of entries, log-log](img/w2-scaling.svg)\n\n");
    let sizes = sizes(results, "w1", "n");
    let (Some(&smallest), Some(&largest)) = (sizes.first(), sizes.last()) else {
        out.push_str("W1 was not run.\n");
        return out;
    };
    let reference = if sizes.contains(&1000) && largest > 1000 {
        1000
    } else {
        smallest
    };
    let header = [
        "row".to_owned(),
        format!("PUT ops/s, N = {}", count(reference)),
        format!("PUT ops/s, N = {}", count(largest)),
        "PUT kept".into(),
        format!("GET ops/s, N = {}", count(reference)),
        format!("GET ops/s, N = {}", count(largest)),
        "GET kept".into(),
    ];
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut rows = Vec::new();
    for row in results.rows("w1") {
        if row_not_run(results, "w1", row).is_some() {
            continue;
        }
        let at = |n: u64, metric: &str| w1_metric(results, row, n, metric);
        rows.push(vec![
            label(results, row, "w1"),
            opt(at(reference, "put_ops_s"), number),
            opt(at(largest, "put_ops_s"), number),
            opt(
                ratio(at(largest, "put_ops_s"), at(reference, "put_ops_s")),
                percent,
            ),
            opt(at(reference, "get_ops_s"), number),
            opt(at(largest, "get_ops_s"), number),
            opt(
                ratio(at(largest, "get_ops_s"), at(reference, "get_ops_s")),
                percent,
            ),
        ]);
    }
    table(&mut out, &header, &rows);
    out.push_str("\n\"Kept\": ops/s at the largest N as a fraction of ops/s at the reference N; 100 % is a flat line. For comparison, the Python original's `sqlite` PUT fell to 21 % from 50 to 1 000 entries (1 753 → 361 ops/s).\n");
    out
}
