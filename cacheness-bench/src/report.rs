//! The report: markdown tables for the generated blocks of `docs/PERFORMANCE.md`
//! and `README.md`, and the SVG plots, all from one [`Results`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{BenchError, Result};
use crate::format::{count, human_size, number, percent, times};
use crate::markers;
use crate::plots;
use crate::results::{Cell, Param, Results, RowKind};
use crate::run::DISKCACHE;
use crate::seed;

/// The blocks `docs/PERFORMANCE.md` must have, in order.
pub const PERFORMANCE_BLOCKS: &[&str] = &[
    "machine",
    "summary",
    "targets",
    "seed",
    "w1",
    "w1-ratios",
    "w2",
    "w3",
    "w4",
    "w5",
    "w6",
    "w7",
];

/// The block `README.md` must have.
pub const README_BLOCK: &str = "summary";

/// The plots, relative to the image directory.
pub const PLOTS: &[&str] = &["w2-scaling.svg", "w3-throughput.svg", "w4-hit-ratio.svg"];

/// Where the report goes.
#[derive(Debug, Clone)]
pub struct Documents {
    /// `docs/PERFORMANCE.md`: every block of [`PERFORMANCE_BLOCKS`].
    pub performance: PathBuf,
    /// `README.md`, which must have the [`README_BLOCK`] block; `None` to skip.
    pub readme: Option<PathBuf>,
    /// `docs/img/`: the SVG plots.
    pub img_dir: PathBuf,
}

/// Rewrites the documents' blocks and the plots from `results`; the files
/// that changed (none when run twice on the same results).
pub fn write(results: &Results, documents: &Documents) -> Result<Vec<PathBuf>> {
    let blocks = blocks(results);
    // Check and render everything before writing anything, so an error in one
    // document leaves every file as it was.
    let mut outputs: Vec<(PathBuf, String)> = Vec::new();
    let performance = read(&documents.performance)?;
    outputs.push((
        documents.performance.clone(),
        markers::rewrite(
            &performance,
            &documents.performance,
            &blocks,
            PERFORMANCE_BLOCKS,
        )?,
    ));
    if let Some(readme) = &documents.readme {
        let text = read(readme)?;
        let summary = BTreeMap::from([(README_BLOCK.to_owned(), blocks[README_BLOCK].clone())]);
        outputs.push((
            readme.clone(),
            markers::rewrite(&text, readme, &summary, &[README_BLOCK])?,
        ));
    }
    for (name, svg) in plots::draw(results, &documents.img_dir)? {
        outputs.push((documents.img_dir.join(name), svg));
    }
    std::fs::create_dir_all(&documents.img_dir)
        .map_err(|source| BenchError::io(&documents.img_dir, source))?;
    let mut changed = Vec::new();
    for (path, content) in outputs {
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            std::fs::write(&path, content).map_err(|source| BenchError::io(&path, source))?;
            changed.push(path);
        }
    }
    Ok(changed)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| BenchError::io(path, source))
}

/// The content of every generated block, by name.
pub fn blocks(results: &Results) -> BTreeMap<String, String> {
    let blocks = [
        ("machine", machine(results)),
        ("summary", summary(results)),
        ("targets", targets(results)),
        ("seed", seed_reference()),
        ("w1", w1(results)),
        ("w1-ratios", w1_ratios(results)),
        ("w2", w2(results)),
        ("w3", w3(results)),
        ("w4", w4(results)),
        ("w5", w5(results)),
        ("w6", w6(results)),
        ("w7", w7(results)),
    ];
    blocks
        .into_iter()
        .map(|(name, body)| (name.to_owned(), body))
        .collect()
}

// ----- formatting -----

fn opt(value: Option<f64>, format: fn(f64) -> String) -> String {
    value.map_or_else(|| "—".into(), format)
}

fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    match (numerator, denominator) {
        (Some(numerator), Some(denominator)) if denominator > 0.0 => Some(numerator / denominator),
        _ => None,
    }
}

fn short_commit(results: &Results) -> String {
    let short: String = results.git_commit.chars().take(10).collect();
    if results.git_dirty {
        format!("{short} (with uncommitted changes)")
    } else {
        short
    }
}

/// The line every table starts with: run, date, commit, machine.
fn caption(results: &Results) -> String {
    let machine = &results.machine;
    format!(
        "_{} run of {}, commit `{}`, on {} ({} cores, {:.0} GiB, {}){}._\n\n",
        results.mode,
        results.date,
        short_commit(results),
        machine.cpu,
        machine.cores,
        machine.memory_bytes as f64 / f64::from(1_u32 << 30),
        machine.filesystem,
        if results.release {
            ""
        } else {
            "; **debug build: not a figure**"
        }
    )
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        header
            .iter()
            .enumerate()
            .map(|(index, _)| if index == 0 { "---|" } else { "---:|" })
            .collect::<String>()
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
}

/// `(reason)` of a row whose every cell of `workload` was not run.
fn row_not_run(results: &Results, workload: &str, row: &str) -> Option<String> {
    let mut cells = results.cells(workload, row).peekable();
    cells.peek()?;
    let mut reason = None;
    for cell in cells {
        match &cell.not_run {
            Some(why) => reason = Some(why.clone()),
            None => return None,
        }
    }
    reason
}

fn not_run_row(label: String, reason: &str, width: usize) -> Vec<String> {
    let mut cells = vec![label, format!("not run: {reason}")];
    cells.resize(width, "—".into());
    cells
}

fn label(results: &Results, row: &str, workload: &str) -> String {
    let kind = results
        .cells(workload, row)
        .next()
        .map_or(RowKind::Cacheness, |cell| cell.kind);
    match kind {
        RowKind::Cacheness => format!("`{row}`"),
        RowKind::Peer => format!("{row} (peer)"),
        RowKind::Floor => format!("{row} (floor)"),
    }
}

fn sizes(results: &Results, workload: &str, param: &str) -> Vec<u64> {
    let mut sizes: Vec<u64> = results
        .cells
        .iter()
        .filter(|cell| cell.workload == workload)
        .filter_map(|cell| match cell.params.get(param) {
            Some(Param::Int(value)) => Some(*value),
            _ => None,
        })
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

fn w1_cell<'a>(results: &'a Results, row: &str, n: u64) -> Option<&'a Cell> {
    results
        .find("w1", row, &[("n", Param::Int(n))])
        .filter(|cell| cell.not_run.is_none())
}

fn w1_metric(results: &Results, row: &str, n: u64, metric: &str) -> Option<f64> {
    w1_cell(results, row, n)?.median(metric)
}

fn cacheness_rows<'a>(results: &'a Results, workload: &'a str) -> Vec<&'a str> {
    results
        .rows(workload)
        .into_iter()
        .filter(|row| {
            results
                .cells(workload, row)
                .next()
                .is_some_and(|cell| cell.kind == RowKind::Cacheness)
        })
        .collect()
}

/// The N the summary compares at: 1 000 if measured, else the largest below.
fn summary_n(results: &Results) -> Option<u64> {
    let sizes = sizes(results, "w1", "n");
    sizes
        .iter()
        .copied()
        .filter(|n| *n <= 1000)
        .max()
        .or_else(|| sizes.first().copied())
}

// ----- blocks -----

fn machine(results: &Results) -> String {
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

fn summary(results: &Results) -> String {
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

fn targets(results: &Results) -> String {
    let mut out = caption(results);
    let mut list = Vec::new();
    let n = 1000;
    let mut backends = Vec::new();
    for row in cacheness_rows(results, "w1") {
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
            format!("`sqlite` {op} ≥ 50 % of raw rusqlite (N = 1 000)"),
            ratio(
                w1_metric(results, "sqlite", n, metric),
                w1_metric(results, "raw-sqlite", n, metric),
            ),
            0.5,
            percent,
        ));
    }
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

fn seed_reference() -> String {
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

fn w1(results: &Results) -> String {
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
    out.push_str("\nLIST is one call listing every entry (the mean of 5 calls). Latencies are per operation, from an HDR histogram of each repetition.\n");
    out
}

fn w1_ratios(results: &Results) -> String {
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

fn w2(results: &Results) -> String {
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

fn w3_metric(results: &Results, row: &str, size: u64, data: &str, metric: &str) -> Option<f64> {
    results
        .find(
            "w3",
            row,
            &[("size", Param::Int(size)), ("data", Param::from(data))],
        )
        .filter(|cell| cell.not_run.is_none())?
        .median(metric)
}

fn w3(results: &Results) -> String {
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

fn w4_metric(results: &Results, row: &str, distribution: &str, metric: &str) -> Option<f64> {
    results
        .find("w4", row, &[("distribution", Param::from(distribution))])
        .filter(|cell| cell.not_run.is_none())?
        .median(metric)
}

fn w4(results: &Results) -> String {
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

fn w5(results: &Results) -> String {
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

fn w6(results: &Results) -> String {
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

fn w7(results: &Results) -> String {
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

/// The entries of a W6 or W7 cell, with the note of a capped size.
fn entries_with_note(cell: &Cell) -> String {
    let entries = match cell.params.get("n") {
        Some(Param::Int(n)) => count(*n),
        _ => "—".into(),
    };
    match &cell.note {
        Some(note) => format!("{entries} ({note})"),
        None => entries,
    }
}

fn mebibytes(bytes: f64) -> String {
    format!("{} MiB", number(bytes / f64::from(1_u32 << 20)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(number(1_234_567.4), "1 234 567");
        assert_eq!(number(123.6), "124");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(1.2345), "1.23");
        assert_eq!(number(0.01234), "0.012");
        assert_eq!(number(f64::NAN), "—");
        assert_eq!(times(123.4), "×123");
        assert_eq!(times(4.25), "×4.2");
        assert_eq!(times(0.5), "×0.50");
        assert_eq!(percent(0.634), "63 %");
    }
}
