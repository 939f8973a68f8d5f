//! The overview blocks: the machine, the summary table, the targets checked and the seed's published figures.

use super::*;

pub(super) fn machine(results: &Results) -> String {
    let machine = &results.machine;
    let mut sizes = String::new();
    for (workload, what) in &results.sizes {
        let _ = writeln!(sizes, "| {workload} | {what} |");
    }
    if let Some(scratch) = results.scratch {
        let _ = writeln!(
            sizes,
            "| cache dirs | {} files, {} on disk at the end of the run, kept until then and deleted after the last cell |",
            count(scratch.files),
            mebibytes(scratch.bytes as f64)
        );
    }
    let table = format!(
        "| | |\n|---|---|\n| machine | {} · {} cores · {:.1} GiB · {} |\n| cache dir | `{}` ({}) |\n| commit | `{}` |\n| date | {} |\n| run | {} mode, {} repetitions per cell (median shown; min and max in the JSON){} |\n| command | `{}` |\n",
        machine.cpu,
        machine.cores,
        machine.memory_bytes as f64 / f64::from(1_u32 << 30),
        machine.os,
        machine.cache_dir,
        machine.filesystem,
        short_commit(results),
        results.date,
        results.mode,
        results.repetitions,
        if results.release {
            ", release build"
        } else {
            ", **debug build**"
        },
        results.command,
    );
    table + &sizes
}

pub(super) fn summary(results: &Results) -> String {
    let mut out = caption(results);
    let Some(n) = summary_n(results) else {
        out.push_str("W1 was not run.\n");
        return out;
    };
    let _ = writeln!(
        out,
        "W1, the seed's workload at N = {}: PUT then GET of ~200-byte serde values, LIST of all entries. Ratios are against peers measured in the same run, and against the Python original's published figures for the same backend (static reference).\n",
        count(n)
    );
    let header = [
        "backend",
        "PUT ops/s",
        "GET ops/s",
        "LIST ms",
        "PUT / GET vs Python original",
        "PUT / GET vs diskcache",
        "PUT / GET vs cacache",
    ];
    let mut rows = Vec::new();
    for row in cacheness_rows(results, "w1") {
        if let Some(reason) = row_not_run(results, "w1", row) {
            rows.push(not_run_row(
                label(results, row, "w1"),
                &reason,
                header.len(),
            ));
            continue;
        }
        let put = w1_metric(results, row, n, "put_ops_s");
        let get = w1_metric(results, row, n, "get_ops_s");
        let pair = |peer_put: Option<f64>, peer_get: Option<f64>| {
            format!(
                "{} / {}",
                opt(ratio(put, peer_put), times),
                opt(ratio(get, peer_get), times)
            )
        };
        let seed = seed::at(row, n);
        rows.push(vec![
            format!("`{row}`"),
            opt(put, number),
            opt(get, number),
            opt(w1_metric(results, row, n, "list_ms"), number),
            pair(seed.map(|s| s.0), seed.map(|s| s.1)),
            pair(
                w1_metric(results, DISKCACHE, n, "put_ops_s"),
                w1_metric(results, DISKCACHE, n, "get_ops_s"),
            ),
            pair(
                w1_metric(results, "cacache", n, "put_ops_s"),
                w1_metric(results, "cacache", n, "get_ops_s"),
            ),
        ]);
    }
    for peer in [DISKCACHE, "cacache"] {
        if let Some(reason) = row_not_run(results, "w1", peer) {
            rows.push(not_run_row(format!("{peer} (peer)"), &reason, header.len()));
        } else if w1_cell(results, peer, n).is_some() {
            rows.push(vec![
                format!("{peer} (peer)"),
                opt(w1_metric(results, peer, n, "put_ops_s"), number),
                opt(w1_metric(results, peer, n, "get_ops_s"), number),
                opt(w1_metric(results, peer, n, "list_ms"), number),
                "—".into(),
                "—".into(),
                "—".into(),
            ]);
        }
    }
    if let Some(point) = seed::GUIDE
        .iter()
        .find(|profile| profile.backend == "sqlite")
        .and_then(|profile| profile.points.iter().find(|point| point.0 == n))
    {
        rows.push(vec![
            "Python original, `sqlite` (reference, not measured)".into(),
            number(point.1),
            number(point.2),
            number(point.3),
            "—".into(),
            "—".into(),
            "—".into(),
        ]);
    }
    table(&mut out, &header, &rows);
    let _ = writeln!(
        out,
        "\nPython original figures: {}. Each backend is compared with its own counterpart there (`sqlite-memory` and `memlayer+sqlite` with `sqlite`, `memlayer+json` with `json`).",
        seed::GUIDE_SOURCE
    );
    out
}

/// A target of BENCHMARK.md, checked against the results.
struct Target {
    what: String,
    measured: String,
    verdict: Option<bool>,
}

fn verdict(target: &Target) -> &'static str {
    match target.verdict {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

fn check(what: String, value: Option<f64>, goal: f64, format: fn(f64) -> String) -> Target {
    Target {
        what,
        measured: opt(value, format),
        verdict: value.map(|value| value >= goal),
    }
}

pub(super) fn targets(results: &Results) -> String {
    let mut out = caption(results);
    let mut list = Vec::new();
    let n = 1000;
    let mut backends = Vec::new();
    // Rows of another codec (`sqlite/json`) are shown in W1, not held to the
    // per-backend targets.
    for row in cacheness_rows(results, "w1")
        .into_iter()
        .filter(|row| !row.contains('/'))
    {
        match row_not_run(results, "w1", row) {
            Some(reason) => list.push(Target {
                what: format!("`{row}`: every target"),
                measured: format!("not run: {reason}"),
                verdict: None,
            }),
            None => backends.push(row),
        }
    }
    for row in &backends {
        for (op, metric, index) in [("PUT", "put_ops_s", 0), ("GET", "get_ops_s", 1)] {
            let seed = seed::at(row, n).map(|s| if index == 0 { s.0 } else { s.1 });
            list.push(check(
                format!("`{row}` {op} ≥ 100× the Python original (N = 1 000)"),
                ratio(w1_metric(results, row, n, metric), seed),
                100.0,
                times,
            ));
        }
    }
    for (op, metric, goal) in [("PUT", "put_ops_s", 3.0), ("GET", "get_ops_s", 5.0)] {
        list.push(check(
            format!("`sqlite` {op} ≥ {goal}× diskcache (N = 1 000)"),
            ratio(
                w1_metric(results, "sqlite", n, metric),
                w1_metric(results, DISKCACHE, n, metric),
            ),
            goal,
            times,
        ));
    }
    let largest = sizes(results, "w1", "n").last().copied().unwrap_or(0);
    for row in &backends {
        for (op, metric) in [("PUT", "put_ops_s"), ("GET", "get_ops_s")] {
            list.push(check(
                format!("`{row}` {op} ops/s at 100 000 entries ≥ 70 % of at 1 000"),
                (largest >= 100_000)
                    .then(|| {
                        ratio(
                            w1_metric(results, row, 100_000, metric),
                            w1_metric(results, row, n, metric),
                        )
                    })
                    .flatten(),
                0.7,
                percent,
            ));
        }
        let list_ms = w1_metric(results, row, n, "list_ms");
        list.push(Target {
            what: format!("`{row}` LIST of 1 000 entries under 2 ms"),
            measured: opt(list_ms, |ms| format!("{} ms", number(ms))),
            verdict: list_ms.map(|ms| ms < 2.0),
        });
    }
    for (op, metric) in [("PUT", "put_ops_s"), ("GET", "get_ops_s")] {
        list.push(check(
            format!("`sqlite` {op} ≥ 80 % of raw rusqlite (N = 1 000)"),
            ratio(
                w1_metric(results, "sqlite", n, metric),
                w1_metric(results, "raw-sqlite", n, metric),
            ),
            0.8,
            percent,
        ));
    }
    let ops = |value: f64| format!("{}/s", number(value));
    for (op, metric, goal) in [("GET", "get_ops_s", 3e6), ("PUT", "put_ops_s", 2e6)] {
        list.push(check(
            format!(
                "`memory` {op} ≥ {} M/s, binary codec (N = 1 000, one thread)",
                goal / 1e6
            ),
            w1_metric(results, "memory", n, metric),
            goal,
            ops,
        ));
    }
    for (workload, condition) in [("w1", ""), (W1_CHURN, ", after a mass deletion")] {
        let metric = |row: &str| {
            results
                .find(workload, row, &[("n", Param::Int(n))])
                .filter(|cell| cell.not_run.is_none())
                .and_then(|cell| cell.median("put_ops_s"))
        };
        list.push(check(
            format!("`json` PUT ≥ 100 000/s (N = 1 000{condition})"),
            metric("json"),
            100_000.0,
            ops,
        ));
        list.push(check(
            format!("`json` PUT ≥ 3× diskcache (N = 1 000{condition})"),
            ratio(metric("json"), metric(DISKCACHE)),
            3.0,
            times,
        ));
    }
    list.push(check(
        "`memlayer+sqlite` GET ≥ 1.5 M/s on 80/20 reads".into(),
        w4_metric(results, "memlayer+sqlite", "80/20", "get_ops_s"),
        1.5e6,
        ops,
    ));
    let w3_largest = sizes(results, "w3", "size").last().copied();
    for row in ["json", "sqlite"] {
        for (op, metric) in [("PUT", "put_mb_s"), ("GET", "get_mb_s")] {
            let value = w3_largest.and_then(|size| {
                ratio(
                    w3_metric(results, row, size, "incompressible", metric),
                    w3_metric(results, "raw-fs", size, "incompressible", metric),
                )
            });
            list.push(check(
                format!(
                    "`{row}` {op} of {} values ≥ 70 % of the raw-fs floor",
                    w3_largest.map_or("large".into(), human_size)
                ),
                value,
                0.7,
                percent,
            ));
        }
    }
    for row in &backends {
        for (op, metric) in [("PUT", "put_ops_s"), ("GET", "get_ops_s")] {
            list.push(check(
                format!("`{row}` {op} ≥ 2× cacache on small values (N = 1 000)"),
                ratio(
                    w1_metric(results, row, n, metric),
                    w1_metric(results, "cacache", n, metric),
                ),
                2.0,
                times,
            ));
        }
    }
    for base in ["json", "sqlite"] {
        let layered = format!("memlayer+{base}");
        list.push(check(
            format!("`{layered}` ≥ 5× `{base}` on 80/20 reads"),
            ratio(
                w4_metric(results, &layered, "80/20", "get_ops_s"),
                w4_metric(results, base, "80/20", "get_ops_s"),
            ),
            5.0,
            times,
        ));
    }
    for row in W8_BACKENDS {
        let (by_hand, memoized) = w8_pair(results, row, "memoized");
        list.push(check(
            format!("`{row}` memoized call on a hit ≥ 90 % of a hand-written `get`"),
            ratio(memoized, by_hand),
            0.9,
            percent,
        ));
        for (figure, what) in [
            ("put_1", "PUT, one task"),
            ("get_1", "GET, one task"),
            ("get_many", "GET, many tasks"),
            ("put_many", "PUT, many tasks"),
        ] {
            let (sync, asynchronous) = w8_pair(results, row, figure);
            list.push(check(
                format!("`{row}` async {what} ≥ 80 % of sync"),
                ratio(asynchronous, sync),
                0.8,
                percent,
            ));
        }
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|target| {
            vec![
                target.what.clone(),
                target.measured.clone(),
                verdict(target).into(),
            ]
        })
        .collect();
    table(
        &mut out,
        &["target (BENCHMARK.md)", "measured", "verdict"],
        &rows,
    );
    let missed = list
        .iter()
        .filter(|target| target.verdict == Some(false))
        .count();
    let unmeasured = list
        .iter()
        .filter(|target| target.verdict.is_none())
        .count();
    let _ = writeln!(
        out,
        "\n{} of {} targets met, {missed} missed, {unmeasured} not measured in this run (a backend not compiled in, a peer not installed, or a size only the full run has).",
        list.len() - missed - unmeasured,
        list.len()
    );
    out
}

pub(super) fn seed_reference() -> String {
    let mut out = format!(
        "Static reference, **not measured here**. Source: {}.\n\n",
        seed::GUIDE_SOURCE
    );
    let mut rows = Vec::new();
    for profile in seed::GUIDE {
        for &(n, put, get, list) in profile.points {
            rows.push(vec![
                format!("Python `{}`", profile.backend),
                count(n),
                number(put),
                number(get),
                number(list),
            ]);
        }
    }
    table(
        &mut out,
        &["Python original", "N", "PUT ops/s", "GET ops/s", "LIST ms"],
        &rows,
    );
    let _ = writeln!(out, "\nAnd from {}:\n", seed::TARGETS_SOURCE);
    let rows: Vec<Vec<String>> = seed::TARGETS
        .iter()
        .map(|&(name, put, get, list)| vec![name.into(), number(put), number(get), number(list)])
        .collect();
    table(
        &mut out,
        &["Python", "PUT ops/s", "GET ops/s", "LIST ms"],
        &rows,
    );
    out
}
