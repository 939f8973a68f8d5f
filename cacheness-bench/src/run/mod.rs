//! Runs the workloads of a [`Plan`] and collects their cells.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cacheness::{CacheConfig, Stats, backend::BACKENDS};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{BenchError, Result};
use crate::format::{count, human_size, number};
use crate::plan::{Mode, Plan, minutes};
use crate::results::{Cell, Metric, Param, RowKind, Scratch};
use crate::stores::{self, Facade, PEERS, Record, Store};

mod child;
mod w1;
mod w3;
mod w4;
mod w5;
mod w6;
mod w7;
mod w8;

pub use child::{ChildRole, child, python_has_diskcache};
use child::{child_json, json_f64, python_samples};
pub use w1::{CHURN_FILES, W1_CHURN};
pub use w8::{W8_BACKENDS, W8_FIGURES};

/// The diskcache driver, shipped inside the binary and written next to the
/// caches when a Python with diskcache is available.
pub const DISKCACHE_DRIVER: &str = include_str!("../../python/diskcache_driver.py");

/// The name of the diskcache row.
pub const DISKCACHE: &str = "diskcache";

/// Why backend `name` cannot run in this build, or `None` if it can.
pub fn not_compiled(name: &str) -> Option<String> {
    match BACKENDS.iter().find(|info| info.name == name) {
        Some(info) if info.compiled => None,
        Some(info) => Some(format!(
            "not compiled in (feature `{}` of cacheness)",
            info.feature
        )),
        // Composite names (`memlayer+sqlite`) are not listed: ask the facade.
        None => {
            let probe = match tempfile::tempdir() {
                Ok(probe) => probe,
                Err(error) => return Some(format!("cannot probe the backend: {error}")),
            };
            CacheConfig::new()
                .dir(probe.path())
                .backend(name)
                .open()
                .err()
                .map(|error| format!("not in this build of cacheness ({error})"))
        }
    }
}

/// The run's cache directories once every cell is measured, to delete after the
/// results are saved (deleting millions of files can take longer than a
/// workload; a run interrupted then keeps its figures).
#[derive(Debug)]
pub struct Leftovers {
    scratch: Option<tempfile::TempDir>,
    /// What they hold.
    pub held: Scratch,
}

impl Leftovers {
    /// Deletes the directories (nothing when the plan keeps them).
    pub fn delete(self) -> Result<()> {
        let Some(scratch) = self.scratch else {
            return Ok(());
        };
        let root = scratch.path().to_owned();
        eprintln!(
            "deleting the run's cache directories ({} files, {})",
            self.held.files,
            human_size(self.held.bytes)
        );
        scratch
            .close()
            .map_err(|source| BenchError::io(&root, source))
    }
}

/// Runs every workload of `plan`; the cells in order, and the run's cache
/// directories with what they hold.
pub fn run(plan: &Plan) -> Result<(Vec<Cell>, Leftovers)> {
    let mut runner = Runner::new(plan)?;
    if plan.runs("w1") {
        runner.w1()?;
    }
    if plan.runs("w3") {
        runner.w3()?;
    }
    if plan.runs("w4") {
        runner.w4()?;
    }
    if plan.runs("w5") {
        runner.w5_threads()?;
        runner.w5_processes()?;
    }
    if plan.runs("w6") {
        runner.w6()?;
    }
    if plan.runs("w7") {
        runner.w7()?;
    }
    if plan.runs("w8") {
        runner.w8()?;
    }
    let leftovers = runner.leftovers()?;
    runner.progress.finish_and_clear();
    Ok((runner.cells, leftovers))
}

/// Adds what `dir` holds to `total`, counting a hard-linked file once.
fn disk_usage(
    dir: &Path,
    total: &mut Scratch,
    seen: &mut std::collections::HashSet<(u64, u64)>,
) -> Result<()> {
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;
    let entries = std::fs::read_dir(dir).map_err(|source| BenchError::io(dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| BenchError::io(dir, source))?;
        let metadata = entry
            .metadata()
            .map_err(|source| BenchError::io(entry.path(), source))?;
        #[cfg(unix)]
        let (inode, bytes) = ((metadata.dev(), metadata.ino()), metadata.blocks() * 512);
        #[cfg(not(unix))]
        let (inode, bytes) = ((0, total.files + 1), metadata.len());
        if seen.insert(inode) {
            total.files += 1;
            total.bytes += bytes;
        }
        if metadata.is_dir() {
            disk_usage(&entry.path(), total, seen)?;
        }
    }
    Ok(())
}

struct Runner<'a> {
    plan: &'a Plan,
    progress: ProgressBar,
    cells: Vec<Cell>,
    started: Instant,
    /// Every cache directory of the run lives in here until the run ends
    /// (see [`Runner::fresh_dir`]); dropping it deletes them all.
    scratch: Option<tempfile::TempDir>,
    /// The path of `scratch`.
    scratch_path: PathBuf,
    /// How many directories [`Runner::fresh_dir`] made.
    made: u64,
    /// What the directories deleted before the run's end held
    /// ([`Runner::release_if_few_files`]).
    released: Scratch,
}

/// A finished repetition's directory with at most this many files is deleted
/// at once rather than at the run's end (see [`Runner::release_if_few_files`]).
const RELEASE_MAX_FILES: u64 = 64;

/// Timings of one repetition: named samples.
type Sample = BTreeMap<&'static str, f64>;

impl<'a> Runner<'a> {
    fn new(plan: &'a Plan) -> Result<Runner<'a>> {
        let progress = if plan.mode == Mode::Smoke {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        };
        std::fs::create_dir_all(&plan.dir).map_err(|source| BenchError::io(&plan.dir, source))?;
        let scratch = tempfile::Builder::new()
            .prefix("cacheness-bench-run-")
            .tempdir_in(&plan.dir)
            .map_err(|source| BenchError::io(&plan.dir, source))?;
        Ok(Runner {
            plan,
            progress,
            cells: Vec::new(),
            started: Instant::now(),
            scratch_path: scratch.path().to_owned(),
            scratch: Some(scratch),
            made: 0,
            released: Scratch::default(),
        })
    }

    fn step(&self, message: String) {
        self.progress.set_message(message.clone());
        if self.progress.is_hidden() && self.plan.mode != Mode::Smoke {
            // No terminal to draw on: say what runs, so a long wait is never silent.
            eprintln!("[{:>5.0}s] {message}", self.started.elapsed().as_secs_f64());
        }
    }

    /// A fresh, empty directory for one repetition (or one fill).
    ///
    /// It is not deleted when the repetition ends but with every other one when
    /// the run ends: on ext4 without a journal, creating files right after
    /// thousands were deleted is many times slower for tens of seconds (the
    /// allocator skips recently deleted inodes), so deleting as we go would
    /// make every figure depend on what ran before it.
    fn fresh_dir(&mut self, label: &str) -> Result<PathBuf> {
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        self.made += 1;
        let dir = self.scratch_path.join(format!("{:04}-{label}", self.made));
        std::fs::create_dir(&dir).map_err(|source| BenchError::io(&dir, source))?;
        Ok(dir)
    }

    /// Deletes a finished repetition's directory now if it holds at most
    /// [`RELEASE_MAX_FILES`] files. Large values take gigabytes in a handful of
    /// files (W3's 64 MiB ones: ~10 GB in a full run), and kept to the end they
    /// filled this machine's disk; deleting a handful of files does not cause
    /// the slow file creation that deleting thousands does.
    fn release_if_few_files(&mut self, dir: &Path) -> Result<()> {
        if self.plan.keep_dirs {
            return Ok(());
        }
        let mut held = Scratch::default();
        disk_usage(dir, &mut held, &mut std::collections::HashSet::new())?;
        if held.files > RELEASE_MAX_FILES {
            return Ok(());
        }
        std::fs::remove_dir_all(dir).map_err(|source| BenchError::io(dir, source))?;
        self.released.files += held.files + 1;
        self.released.bytes += held.bytes;
        Ok(())
    }

    /// Counts what the run's cache directories hold (and held, for those
    /// deleted early), and hands them over for deletion (or keeps them, if the
    /// plan says so).
    fn leftovers(&mut self) -> Result<Leftovers> {
        let root = self.scratch_path.clone();
        self.step("counting the run's cache files".into());
        let mut held = self.released;
        disk_usage(&root, &mut held, &mut std::collections::HashSet::new())?;
        if self.plan.keep_dirs {
            let kept = self.scratch.take().map_or(root, tempfile::TempDir::keep);
            eprintln!("the run's cache directories are kept in {}", kept.display());
        }
        Ok(Leftovers {
            scratch: self.scratch.take(),
            held,
        })
    }

    fn push(
        &mut self,
        workload: &str,
        row: &str,
        kind: RowKind,
        params: &[(&str, Param)],
        outcome: std::result::Result<Vec<Sample>, String>,
    ) {
        let params = params
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        let (not_run, metrics) = match outcome {
            Ok(samples) => (None, summarize(samples)),
            Err(reason) => (Some(reason), BTreeMap::new()),
        };
        self.cells.push(Cell {
            workload: workload.to_owned(),
            backend: row.to_owned(),
            kind,
            params,
            not_run,
            note: None,
            metrics,
        });
    }

    /// The cacheness rows, then the peers and floors of `peers` if asked for.
    fn rows(&self, peers: &[&'static str]) -> Vec<(String, RowKind)> {
        let mut rows: Vec<(String, RowKind)> = self
            .plan
            .backends
            .iter()
            .map(|name| (name.clone(), RowKind::Cacheness))
            .collect();
        if self.plan.peers {
            rows.extend(peers.iter().map(|name| {
                let kind = PEERS
                    .iter()
                    .find(|(peer, _)| peer == name)
                    .map_or(RowKind::Peer, |(_, kind)| *kind);
                ((*name).to_owned(), kind)
            }));
        }
        rows
    }

    fn reps(&self) -> u32 {
        self.plan.reps
    }

    /// The cell bound in seconds, in a run that has one.
    fn bound(&self) -> Option<f64> {
        self.plan.cell_bound.map(|bound| bound.as_secs_f64())
    }

    /// The W1 cell of `row` at the largest N measured so far, with that N.
    fn largest_w1(&self, row: &str) -> Option<(u64, &Cell)> {
        self.cells
            .iter()
            .filter(|cell| cell.workload == "w1" && cell.backend == row && cell.not_run.is_none())
            .filter_map(|cell| match cell.params.get("n") {
                Some(Param::Int(at)) => Some((*at, cell)),
                _ => None,
            })
            .max_by_key(|(at, _)| *at)
    }

    /// Why W1 does not run `row` at `n`: its repetitions would take longer
    /// than the cell bound at the rates it had at the largest N measured so far.
    fn w1_over_bound(&self, row: &str, n: u64) -> Option<String> {
        let bound = self.bound()?;
        let (at, cell) = self.largest_w1(row)?;
        let (put, get) = (cell.median("put_ops_s")?, cell.median("get_ops_s")?);
        let estimate =
            f64::from(self.reps()) * n as f64 * (1.0 / put.max(1e-9) + 1.0 / get.max(1e-9));
        (estimate > bound).then(|| {
            format!(
                "{} repetitions would take ~{} (PUT {} ops/s, GET {} ops/s at N = {} in this run), over the full run's bound of {} per cell (`--cell-minutes`)",
                self.reps(),
                minutes(estimate),
                number(put),
                number(get),
                count(at),
                minutes(bound)
            )
        })
    }

    /// The PUT rate of `backend` in this run, and where it comes from: its W1
    /// cell at the largest N measured, or else a fill of 1 000 entries timed
    /// now (not a cell).
    fn put_rate(&mut self, backend: &str) -> Result<(f64, String)> {
        let measured = self
            .largest_w1(backend)
            .and_then(|(at, cell)| Some((at, cell.median("put_ops_s")?)));
        if let Some((at, rate)) = measured {
            return Ok((rate, format!("W1 at N = {}", count(at))));
        }
        const CALIBRATION: u64 = 1_000;
        self.step(format!(
            "{backend}: timing {CALIBRATION} puts to size the cells"
        ));
        let dir = self.fresh_dir(&format!("rate-{backend}"))?;
        let mut store = Facade::open(backend, &dir, "rate")?;
        let started = Instant::now();
        for idx in 0..CALIBRATION {
            store.put_record(idx, &Record::new(idx))?;
        }
        let rate = CALIBRATION as f64 / started.elapsed().as_secs_f64().max(1e-9);
        Ok((rate, format!("{CALIBRATION} puts timed before the cell")))
    }

    /// The number of entries for a W6 or W7 cell of `backend` whose time is
    /// `work` full-size fills, and the note that says why when it is capped.
    fn large_n_for(&mut self, backends: &[&str], work: f64) -> Result<(u64, Option<String>)> {
        let n = self.plan.mode.large_n();
        let Some(bound) = self.bound() else {
            return Ok((n, None));
        };
        let mut slowest: Option<(f64, String, String)> = None;
        for backend in backends {
            let (rate, source) = self.put_rate(backend)?;
            if slowest
                .as_ref()
                .is_none_or(|(slowest, _, _)| rate < *slowest)
            {
                slowest = Some((rate, source, (*backend).to_owned()));
            }
        }
        let Some((rate, source, backend)) = slowest else {
            return Ok((n, None));
        };
        let estimate = work * n as f64 / rate.max(1e-9);
        let capped = self.plan.mode.capped_n();
        if estimate <= bound || capped >= n {
            return Ok((n, None));
        }
        Ok((
            capped,
            Some(format!(
                "capped at {} entries: {} would take ~{} (`{backend}` PUT {} ops/s, {source}), over the full run's bound of {} per cell",
                count(capped),
                count(n),
                minutes(estimate),
                number(rate),
                minutes(bound)
            )),
        ))
    }

    /// Puts `note` on the cell pushed last.
    fn annotate(&mut self, note: Option<&String>) {
        if let (Some(cell), Some(note)) = (self.cells.last_mut(), note) {
            cell.note = Some(note.clone());
        }
    }

    // ----- W1: the seed's comparison -----

    // ----- W3: payload sizes -----

    // ----- W4: hot keys -----

    // ----- W5: concurrency -----

    /// A cache of persistent `backend` holding items `0..n` of `workload`,
    /// written once and closed, for repetitions to copy with [`clone_cache`];
    /// `None` when the backend keeps nothing on disk to copy.
    fn filled_template(
        &mut self,
        backend: &str,
        workload: &'static str,
        n: u64,
        inline_threshold: Option<usize>,
    ) -> Result<Option<PathBuf>> {
        let dir = self.fresh_dir(&format!("{workload}-template-{backend}"))?;
        let mut config = CacheConfig::new().dir(&dir).backend(backend);
        if let Some(threshold) = inline_threshold {
            config = config.inline_threshold(threshold);
        }
        let mut store = Facade::open_config(config, workload)?;
        if !store.cache.backend().capabilities().persistent {
            return Ok(None);
        }
        self.step(format!("{workload} {backend}: writing {n} entries once"));
        for idx in 0..n {
            store.put_record(idx, &Record::new(idx))?;
        }
        store
            .cache
            .flush()
            .map_err(|source| store.fail(source.into()))?;
        Ok(Some(dir))
    }

    // ----- W6: open, rebuild, migrate -----

    // ----- W7: memory -----
}

/// The metadata files of a disk backend (a memory layer keeps its backend's).
fn metadata_files(backend: &str) -> Option<&'static [&'static str]> {
    match backend.strip_prefix("memlayer+").unwrap_or(backend) {
        "sqlite" => Some(&[
            "cache_metadata.db",
            "cache_metadata.db-wal",
            "cache_metadata.db-shm",
        ]),
        "json" => Some(&["metadata.json", "metadata.journal"]),
        _ => None,
    }
}

/// Copies the cache in `from` into the fresh directory `to` for one
/// repetition. Blob files (under `blobs/`) are hard-linked, not copied: the
/// blob store writes each blob once under a new name and never changes it in
/// place (a put writes a new file, a remove unlinks), so the copy behaves as a
/// full one while creating no inode per entry. Everything else (the metadata)
/// is copied.
fn clone_cache(from: &Path, to: &Path) -> Result<()> {
    clone_tree(from, to, false)
}

fn clone_tree(from: &Path, to: &Path, link: bool) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|source| BenchError::io(to, source))?;
    let entries = std::fs::read_dir(from).map_err(|source| BenchError::io(from, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| BenchError::io(from, source))?;
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|source| BenchError::io(entry.path(), source))?;
        if kind.is_dir() {
            clone_tree(&entry.path(), &target, link || entry.file_name() == "blobs")?;
        } else if kind.is_file() {
            let linked = link && std::fs::hard_link(entry.path(), &target).is_ok();
            if !linked {
                std::fs::copy(entry.path(), &target)
                    .map_err(|source| BenchError::io(entry.path(), source))?;
            }
        }
    }
    Ok(())
}

fn summarize(samples: Vec<Sample>) -> BTreeMap<String, Metric> {
    let mut by_name: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for sample in samples {
        for (name, value) in sample {
            by_name.entry(name.to_owned()).or_default().push(value);
        }
    }
    by_name
        .into_iter()
        .filter_map(|(name, values)| Metric::of(values).map(|metric| (name, metric)))
        .collect()
}

fn histogram() -> Histogram<u64> {
    // One nanosecond to one minute, three significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("the bounds are valid constants")
}

fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    histogram.saturating_record(nanos.max(1));
}

fn wrong(workload: &str, row: &str, item: u64) -> BenchError {
    BenchError::WrongValue {
        workload: workload.into(),
        backend: row.into(),
        item,
    }
}

fn record_latency(histogram: &mut Histogram<u64>, started: Instant) {
    record(histogram, started.elapsed());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_cache_links_blobs_and_copies_the_rest() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        let shard = from.path().join("blobs/ab");
        std::fs::create_dir_all(&shard).unwrap();
        std::fs::write(shard.join("blob"), b"value").unwrap();
        std::fs::write(from.path().join("metadata.json"), b"{}").unwrap();
        let copy = to.path().join("copy");
        clone_cache(from.path(), &copy).unwrap();
        assert_eq!(std::fs::read(copy.join("blobs/ab/blob")).unwrap(), b"value");
        // The metadata is a copy: changing it leaves the template alone.
        std::fs::write(copy.join("metadata.json"), b"changed").unwrap();
        assert_eq!(
            std::fs::read(from.path().join("metadata.json")).unwrap(),
            b"{}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let linked = std::fs::metadata(copy.join("blobs/ab/blob")).unwrap();
            assert_eq!(linked.nlink(), 2, "blob files are hard links");
            assert_eq!(
                std::fs::metadata(copy.join("metadata.json"))
                    .unwrap()
                    .nlink(),
                1
            );
        }
        let mut scratch = Scratch::default();
        disk_usage(
            to.path(),
            &mut scratch,
            &mut std::collections::HashSet::new(),
        )
        .unwrap();
        // copy, metadata.json, blobs, ab, blob.
        assert_eq!(scratch.files, 5);
    }
}
