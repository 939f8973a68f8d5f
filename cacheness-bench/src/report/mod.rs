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
use crate::run::{CHURN_FILES, DISKCACHE, W1_CHURN, W8_BACKENDS, W8_FIGURES};
use crate::seed;

mod summary;
mod w1;
mod w2;
mod w3;
mod w4;
mod w5;
mod w6;
mod w7;
mod w8;

use summary::{machine, seed_reference, summary, targets};
use w1::{w1, w1_ratios};
use w2::w2;
use w3::w3;
use w4::w4;
use w5::w5;
use w6::w6;
use w7::w7;
use w8::{w8, w8_pair};

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
    "w8",
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
        ("w8", w8(results)),
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

fn w4_metric(results: &Results, row: &str, distribution: &str, metric: &str) -> Option<f64> {
    results
        .find("w4", row, &[("distribution", Param::from(distribution))])
        .filter(|cell| cell.not_run.is_none())?
        .median(metric)
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
