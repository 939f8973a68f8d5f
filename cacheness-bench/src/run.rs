//! Runs the workloads of a [`Plan`] and collects their cells.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cacheness::{BACKENDS, CacheConfig, Stats};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{BenchError, Result};
use crate::format::{count, human_size, number};
use crate::plan::{Mode, Plan, minutes};
use crate::results::{Cell, Metric, Param, RowKind, Scratch};
use crate::stores::{self, Facade, PEERS, Record, Store};

/// The diskcache driver, shipped inside the binary and written next to the
/// caches when a Python with diskcache is available.
pub const DISKCACHE_DRIVER: &str = include_str!("../python/diskcache_driver.py");

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
            CacheConfig::builder()
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

    fn w1(&mut self) -> Result<()> {
        let rows = self.rows(&["cacache", "raw-sqlite", "raw-fs"]);
        for &n in self.plan.mode.w1_sizes() {
            let records: Vec<Record> = (0..n).map(Record::new).collect();
            for (row, kind) in &rows {
                let params = [("n", Param::Int(n))];
                if let Some(reason) = (*kind == RowKind::Cacheness)
                    .then(|| not_compiled(row))
                    .flatten()
                {
                    self.push("w1", row, *kind, &params, Err(reason));
                    continue;
                }
                if let Some(reason) = self.w1_over_bound(row, n) {
                    self.push("w1", row, *kind, &params, Err(reason));
                    continue;
                }
                let mut samples = Vec::new();
                for rep in 1..=self.reps() {
                    self.step(format!("w1 {row} n={n} rep {rep}/{}", self.reps()));
                    let dir = self.fresh_dir(&format!("w1-{row}"))?;
                    let mut store = stores::open(row, &dir, "bench")?;
                    samples.push(w1_rep(store.as_mut(), row, &records)?);
                }
                self.push("w1", row, *kind, &params, Ok(samples));
            }
            self.w1_diskcache(n)?;
        }
        Ok(())
    }

    fn w1_diskcache(&mut self, n: u64) -> Result<()> {
        if !self.plan.peers {
            return Ok(());
        }
        let params = [("n", Param::Int(n))];
        let over_bound = self.w1_over_bound(DISKCACHE, n);
        let outcome = match (&self.plan.python, over_bound) {
            (None, _) => {
                Err("no python3 with diskcache (cargo xtask bench-report sets one up)".into())
            }
            (Some(_), Some(reason)) => Err(reason),
            (Some(python), None) => {
                self.step(format!("w1 diskcache n={n} ({} reps)", self.reps()));
                let dir = self.fresh_dir("w1-diskcache")?;
                let request = serde_json::json!({
                    "workload": "w1", "n": n, "reps": self.reps(),
                    "dir": &dir,
                });
                Ok(python_samples(python, &dir, request, "bench", n)?)
            }
        };
        self.push("w1", DISKCACHE, RowKind::Peer, &params, outcome);
        Ok(())
    }

    // ----- W3: payload sizes -----

    fn w3(&mut self) -> Result<()> {
        let mut rows: Vec<(String, RowKind)> = self
            .rows(&["cacache", "raw-fs"])
            .into_iter()
            .filter(|(row, kind)| {
                *kind != RowKind::Cacheness || ["memory", "json", "sqlite"].contains(&row.as_str())
            })
            .collect();
        rows.dedup();
        for &(size, count) in self.plan.mode.w3_sizes() {
            for compressible in [true, false] {
                let values = w3_values(size, count, compressible);
                let kind_name = if compressible {
                    "compressible"
                } else {
                    "incompressible"
                };
                for (row, kind) in &rows {
                    let params = [
                        ("size", Param::Int(size)),
                        ("values", Param::Int(count)),
                        ("data", Param::from(kind_name)),
                    ];
                    if let Some(reason) = (*kind == RowKind::Cacheness)
                        .then(|| not_compiled(row))
                        .flatten()
                    {
                        self.push("w3", row, *kind, &params, Err(reason));
                        continue;
                    }
                    let mut samples = Vec::new();
                    for rep in 1..=self.reps() {
                        self.step(format!(
                            "w3 {row} {} x{count} {kind_name} rep {rep}/{}",
                            human_size(size),
                            self.reps()
                        ));
                        let dir = self.fresh_dir(&format!("w3-{row}"))?;
                        let mut store = stores::open(row, &dir, "w3")?;
                        samples.push(w3_rep(store.as_mut(), row, &values)?);
                        drop(store);
                        self.release_if_few_files(&dir)?;
                    }
                    self.push("w3", row, *kind, &params, Ok(samples));
                }
            }
        }
        Ok(())
    }

    // ----- W4: hot keys -----

    fn w4(&mut self) -> Result<()> {
        let (entries, gets) = self.plan.mode.w4_sizes();
        let hot = (entries / 5).max(1);
        let mut rng = fastrand::Rng::with_seed(4);
        let skewed: Vec<u64> = (0..gets)
            .map(|_| {
                if rng.f64() < 0.8 {
                    rng.u64(0..hot)
                } else {
                    rng.u64(hot..entries.max(hot + 1))
                }
            })
            .collect();
        let uniform: Vec<u64> = (0..gets).map(|_| rng.u64(0..entries)).collect();
        // Every backend is filled first, then the repetitions alternate between
        // them: the ratios W4 is read for (a layer over its backend alone) then
        // compare repetitions run side by side, not minutes apart on a machine
        // whose speed drifts.
        let mut stores = Vec::new();
        for backend in self.plan.backends.clone() {
            // A backend not compiled in keeps its reason, reported as "not run".
            let store = match not_compiled(&backend) {
                Some(reason) => Err(reason),
                None => {
                    let dir = self.fresh_dir(&format!("w4-{backend}"))?;
                    self.step(format!("w4 {backend}: filling {entries} entries"));
                    // A layer that can hold the whole working set: the default
                    // (1 000 entries) is smaller than the hot fifth of 10 000, so
                    // the layer would measure its own eviction, not its hits.
                    let mut store = Facade::open_layer_holding(&backend, &dir, "w4", entries)?;
                    for idx in 0..entries {
                        store.put_record(idx, &Record::new(idx))?;
                    }
                    Ok(store)
                }
            };
            stores.push((backend, store));
        }
        for (distribution, sequence) in [("80/20", &skewed), ("uniform", &uniform)] {
            let params = [
                ("entries", Param::Int(entries)),
                ("gets", Param::Int(gets)),
                ("distribution", Param::from(distribution)),
            ];
            let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); stores.len()];
            for rep in 1..=self.reps() {
                for ((backend, store), samples) in stores.iter_mut().zip(&mut samples) {
                    let Ok(store) = store else {
                        continue;
                    };
                    self.step(format!(
                        "w4 {backend} {distribution} rep {rep}/{}",
                        self.reps()
                    ));
                    samples.push(w4_rep(store, backend, sequence)?);
                }
            }
            for ((backend, store), samples) in stores.iter().zip(samples) {
                let outcome = store.as_ref().map(|_| samples).map_err(Clone::clone);
                self.push("w4", backend, RowKind::Cacheness, &params, outcome);
            }
        }
        Ok(())
    }

    // ----- W5: concurrency -----

    fn w5_threads(&mut self) -> Result<()> {
        let (thread_counts, keys, ops) = self.plan.mode.w5_threads();
        for backend in self.plan.backends.clone() {
            // A persistent backend's keys are written once; each repetition
            // starts from a copy of that cache (see `clone_cache`).
            let template = match not_compiled(&backend) {
                Some(_) => None,
                None => self.filled_template(&backend, "w5", keys, None)?,
            };
            for &threads in thread_counts {
                let params = [
                    ("threads", Param::Int(threads)),
                    ("keys", Param::Int(keys)),
                    ("ops", Param::Int(ops)),
                ];
                if let Some(reason) = not_compiled(&backend) {
                    self.push("w5", &backend, RowKind::Cacheness, &params, Err(reason));
                    continue;
                }
                let mut samples = Vec::new();
                for rep in 1..=self.reps() {
                    self.step(format!(
                        "w5 {backend} {threads} threads rep {rep}/{}",
                        self.reps()
                    ));
                    let dir = self.fresh_dir(&format!("w5-{backend}"))?;
                    samples.push(w5_threads_rep(
                        &backend,
                        &dir,
                        template.as_deref(),
                        (threads, keys, ops),
                    )?);
                }
                self.push("w5", &backend, RowKind::Cacheness, &params, Ok(samples));
            }
        }
        if self.plan.peers {
            for &threads in thread_counts {
                let params = [
                    ("threads", Param::Int(threads)),
                    ("keys", Param::Int(keys)),
                    ("ops", Param::Int(ops)),
                ];
                let outcome = match &self.plan.python {
                    None => Err("no python3 with diskcache".into()),
                    Some(python) => {
                        self.step(format!("w5 diskcache {threads} threads"));
                        let dir = self.fresh_dir("w5-diskcache")?;
                        let request = serde_json::json!({
                            "workload": "w5-threads", "threads": threads, "keys": keys,
                            "ops": ops, "reps": self.reps(), "dir": &dir,
                        });
                        Ok(python_samples(python, &dir, request, "w5", keys)?)
                    }
                };
                self.push("w5", DISKCACHE, RowKind::Peer, &params, outcome);
            }
        }
        Ok(())
    }

    fn w5_processes(&mut self) -> Result<()> {
        let (processes, per_process) = self.plan.mode.w5_processes();
        let params = [
            ("processes", Param::Int(processes)),
            ("keys_each", Param::Int(per_process)),
        ];
        for backend in self.plan.backends.clone() {
            if let Some(reason) = not_compiled(&backend) {
                self.push("w5p", &backend, RowKind::Cacheness, &params, Err(reason));
                continue;
            }
            let probe = self.fresh_dir("w5p-probe")?;
            let multi_process = Facade::open(&backend, &probe, "w5p")?
                .cache
                .backend()
                .capabilities()
                .multi_process;
            if !multi_process {
                let reason = "single process by design".to_owned();
                self.push("w5p", &backend, RowKind::Cacheness, &params, Err(reason));
                continue;
            }
            let mut samples = Vec::new();
            for rep in 1..=self.reps() {
                self.step(format!(
                    "w5 {backend} {processes} processes rep {rep}/{}",
                    self.reps()
                ));
                let dir = self.fresh_dir(&format!("w5p-{backend}"))?;
                samples.push(self.w5_processes_rep(&backend, &dir, processes, per_process)?);
            }
            self.push("w5p", &backend, RowKind::Cacheness, &params, Ok(samples));
        }
        if self.plan.peers {
            let outcome = match &self.plan.python {
                None => Err("no python3 with diskcache".into()),
                Some(python) => {
                    self.step(format!("w5 diskcache {processes} processes"));
                    let dir = self.fresh_dir("w5p-diskcache")?;
                    let request = serde_json::json!({
                        "workload": "w5-processes", "processes": processes,
                        "keys_each": per_process, "reps": self.reps(), "dir": &dir,
                    });
                    Ok(python_samples(
                        python,
                        &dir,
                        request,
                        "w5p",
                        processes * per_process,
                    )?)
                }
            };
            self.push("w5p", DISKCACHE, RowKind::Peer, &params, outcome);
        }
        Ok(())
    }

    fn w5_processes_rep(
        &self,
        backend: &str,
        dir: &Path,
        processes: u64,
        per_process: u64,
    ) -> Result<Sample> {
        let mut children = Vec::new();
        for writer in 0..processes {
            let args = [
                "child".to_owned(),
                "w5-writer".to_owned(),
                backend.to_owned(),
                dir.display().to_string(),
                (writer * per_process).to_string(),
                per_process.to_string(),
            ];
            let child = Command::new(&self.plan.exe)
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|source| BenchError::io(&self.plan.exe, source))?;
            children.push(child);
        }
        let mut first_start = f64::INFINITY;
        let mut last_end: f64 = 0.0;
        for child in children {
            let report = child_json(child.wait_with_output(), "w5-writer")?;
            first_start = first_start.min(json_f64(&report, "start_s"));
            last_end = last_end.max(json_f64(&report, "end_s"));
        }
        let verify = Command::new(&self.plan.exe)
            .args([
                "child",
                "w5-verify",
                backend,
                &dir.display().to_string(),
                &(processes * per_process).to_string(),
            ])
            .output();
        let report = child_json(verify, "w5-verify")?;
        let total = (processes * per_process) as f64;
        Ok(BTreeMap::from([
            ("put_ops_s", total / (last_end - first_start).max(1e-9)),
            ("lost_count", json_f64(&report, "lost")),
            ("wrong_count", json_f64(&report, "wrong")),
        ]))
    }

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
        let mut config = CacheConfig::builder().dir(&dir).backend(backend);
        if let Some(threshold) = inline_threshold {
            config = config.inline_threshold(threshold);
        }
        let mut store = Facade::open_config(config.build(), workload)?;
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

    fn w6(&mut self) -> Result<()> {
        for backend in self.plan.backends.clone() {
            if let Some(reason) = not_compiled(&backend) {
                let params = [("n", Param::Int(self.plan.mode.large_n()))];
                self.push("w6", &backend, RowKind::Cacheness, &params, Err(reason));
                continue;
            }
            let other = match backend.as_str() {
                "json" => Some("sqlite"),
                "sqlite" => Some("json"),
                _ => None,
            };
            let mut involved = vec![backend.as_str()];
            involved.extend(other.filter(|other| not_compiled(other).is_none()));
            // The longest cell: one fill, then a fill or a migration per repetition.
            let (n, note) = self.large_n_for(&involved, f64::from(self.reps()) + 1.0)?;
            let params = [("n", Param::Int(n))];
            let Some(dir) = self.filled_template(&backend, "w6", n, None)? else {
                let reason = "not persistent: nothing to reopen".to_owned();
                self.push("w6", &backend, RowKind::Cacheness, &params, Err(reason));
                continue;
            };
            let mut samples = Vec::new();
            for rep in 1..=self.reps() {
                self.step(format!("w6 {backend} open rep {rep}/{}", self.reps()));
                let started = Instant::now();
                let mut store = Facade::open(&backend, &dir, "w6")?;
                let first = store.get_record(n / 2)?;
                let elapsed = started.elapsed();
                if first != Some(Record::new(n / 2)) {
                    return Err(BenchError::WrongValue {
                        workload: "w6".into(),
                        backend: backend.clone(),
                        item: n / 2,
                    });
                }
                samples.push(BTreeMap::from([(
                    "open_first_get_ms",
                    elapsed.as_secs_f64() * 1e3,
                )]));
            }
            self.push("w6", &backend, RowKind::Cacheness, &params, Ok(samples));
            self.annotate(note.as_ref());
            self.w6_rebuild(&backend, n)?;
            self.annotate(note.as_ref());
            if let Some(other) = other {
                self.w6_migrate(&backend, other, &dir, n)?;
                self.annotate(note.as_ref());
            }
        }
        Ok(())
    }

    /// Time to rebuild the metadata from the blob files after it is deleted.
    /// Values go to blob files (inline threshold 0): inline values have no file
    /// to rebuild from.
    fn w6_rebuild(&mut self, backend: &str, n: u64) -> Result<()> {
        let params = [("n", Param::Int(n)), ("task", Param::from("rebuild"))];
        let Some(metadata) = metadata_files(backend) else {
            let reason = "no metadata file of its own to lose".to_owned();
            self.push("w6", backend, RowKind::Cacheness, &params, Err(reason));
            return Ok(());
        };
        let Some(template) = self.filled_template(backend, "w6r", n, Some(0))? else {
            let reason = "not persistent: nothing to rebuild".to_owned();
            self.push("w6", backend, RowKind::Cacheness, &params, Err(reason));
            return Ok(());
        };
        let mut samples = Vec::new();
        for rep in 1..=self.reps() {
            self.step(format!("w6 {backend} rebuild rep {rep}/{}", self.reps()));
            let dir = self.fresh_dir(&format!("w6r-{backend}"))?;
            clone_cache(&template, &dir)?;
            let open = || {
                CacheConfig::builder()
                    .dir(&dir)
                    .backend(backend)
                    .inline_threshold(0)
                    .open()
                    .map_err(|source| BenchError::cache("w6", backend, source))
            };
            for name in metadata {
                let path = dir.join(name);
                if path.exists() {
                    std::fs::remove_file(&path).map_err(|source| BenchError::io(&path, source))?;
                }
            }
            let started = Instant::now();
            let cache = open()?;
            let report = cache
                .rebuild(&mut cacheness::no_progress)
                .map_err(|source| BenchError::cache("w6", backend, source))?;
            let elapsed = started.elapsed();
            let entries = cache
                .stats()
                .map_err(|source| BenchError::cache("w6", backend, source))?
                .entries;
            if entries != n {
                return Err(BenchError::cache(
                    "w6",
                    backend,
                    format!("rebuild recovered {entries} of {n} entries ({report:?})"),
                ));
            }
            samples.push(BTreeMap::from([("ms", elapsed.as_secs_f64() * 1e3)]));
        }
        self.push("w6", backend, RowKind::Cacheness, &params, Ok(samples));
        Ok(())
    }

    /// Time to open `filled` (a cache of `from`) as `to`: the facade migrates
    /// every entry on that open.
    fn w6_migrate(&mut self, from: &str, to: &str, filled: &Path, n: u64) -> Result<()> {
        let task = format!("migrate to {to}");
        let params = [("n", Param::Int(n)), ("task", Param::from(task.as_str()))];
        if let Some(reason) = not_compiled(to) {
            self.push("w6", from, RowKind::Cacheness, &params, Err(reason));
            return Ok(());
        }
        let mut samples = Vec::new();
        for rep in 1..=self.reps() {
            self.step(format!("w6 {from} {task} rep {rep}/{}", self.reps()));
            let dir = self.fresh_dir(&format!("w6m-{from}"))?;
            clone_cache(filled, &dir)?;
            let started = Instant::now();
            let mut store = Facade::open(to, &dir, "w6")?;
            let elapsed = started.elapsed();
            if store.list()? as u64 != n || store.get_record(n / 2)? != Some(Record::new(n / 2)) {
                return Err(wrong("w6", to, n / 2));
            }
            samples.push(BTreeMap::from([("ms", elapsed.as_secs_f64() * 1e3)]));
        }
        self.push("w6", from, RowKind::Cacheness, &params, Ok(samples));
        Ok(())
    }

    // ----- W7: memory -----

    fn w7(&mut self) -> Result<()> {
        for backend in self.plan.backends.clone() {
            if let Some(reason) = not_compiled(&backend) {
                let params = [("n", Param::Int(self.plan.mode.large_n()))];
                self.push("w7", &backend, RowKind::Cacheness, &params, Err(reason));
                continue;
            }
            let (n, note) = self.large_n_for(&[backend.as_str()], f64::from(self.reps()))?;
            let params = [("n", Param::Int(n))];
            let mut samples = Vec::new();
            for rep in 1..=self.reps() {
                self.step(format!(
                    "w7 {backend} {n} entries (child process) rep {rep}/{}",
                    self.reps()
                ));
                let dir = self.fresh_dir(&format!("w7-{backend}"))?;
                let output = Command::new(&self.plan.exe)
                    .args([
                        "child",
                        "w7",
                        &backend,
                        &dir.display().to_string(),
                        &n.to_string(),
                    ])
                    .output();
                let report = child_json(output, "w7")?;
                let baseline = json_f64(&report, "baseline_rss");
                let peak = json_f64(&report, "peak_rss");
                if baseline <= 0.0 || peak <= 0.0 {
                    break;
                }
                samples.push(BTreeMap::from([
                    ("peak_rss_bytes", peak),
                    ("empty_rss_bytes", baseline),
                    ("per_entry_bytes", (peak - baseline) / n as f64),
                ]));
            }
            let outcome = if samples.is_empty() {
                Err("peak RSS is not available on this OS".into())
            } else {
                Ok(samples)
            };
            self.push("w7", &backend, RowKind::Cacheness, &params, outcome);
            self.annotate(note.as_ref());
        }
        Ok(())
    }
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

/// One W1 repetition: PUT all, GET all (checked), LIST five times.
fn w1_rep(store: &mut dyn Store, row: &str, records: &[Record]) -> Result<Sample> {
    let n = records.len() as f64;
    let mut put_latency = histogram();
    let started = Instant::now();
    for (idx, record) in (0..).zip(records) {
        let op = Instant::now();
        store.put_record(idx, record)?;
        record_latency(&mut put_latency, op);
    }
    let put_s = started.elapsed().as_secs_f64();
    let mut get_latency = histogram();
    let started = Instant::now();
    for (idx, expected) in (0..).zip(records) {
        let op = Instant::now();
        let value = store.get_record(idx)?;
        record_latency(&mut get_latency, op);
        if value.as_ref() != Some(expected) {
            return Err(wrong("w1", row, idx));
        }
    }
    let get_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 0..5 {
        let listed = store.list()?;
        if listed != records.len() {
            return Err(wrong("w1", row, listed as u64));
        }
    }
    let list_ms = started.elapsed().as_secs_f64() * 1e3 / 5.0;
    let micros = |histogram: &Histogram<u64>, quantile: f64| {
        histogram.value_at_quantile(quantile) as f64 / 1e3
    };
    Ok(BTreeMap::from([
        ("put_ops_s", n / put_s.max(1e-12)),
        ("get_ops_s", n / get_s.max(1e-12)),
        ("list_ms", list_ms),
        ("put_p50_us", micros(&put_latency, 0.5)),
        ("put_p99_us", micros(&put_latency, 0.99)),
        ("get_p50_us", micros(&get_latency, 0.5)),
        ("get_p99_us", micros(&get_latency, 0.99)),
    ]))
}

fn record_latency(histogram: &mut Histogram<u64>, started: Instant) {
    record(histogram, started.elapsed());
}

/// `count` distinct values of `size` bytes: repeated text, or random bytes.
fn w3_values(size: u64, count: u64, compressible: bool) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(size ^ count);
    (0..count)
        .map(|idx| {
            let size = size as usize;
            if compressible {
                let line = format!(
                    "value {idx}: the quick brown fox jumps over the lazy dog; cached result row\n"
                );
                line.bytes().cycle().take(size).collect()
            } else {
                let mut bytes = vec![0; size];
                rng.fill(&mut bytes);
                bytes
            }
        })
        .collect()
}

/// One W3 repetition: PUT every value, GET every value back (checked).
fn w3_rep(store: &mut dyn Store, row: &str, values: &[Vec<u8>]) -> Result<Sample> {
    let total: u64 = values.iter().map(|value| value.len() as u64).sum();
    let megabytes = total as f64 / 1e6;
    let started = Instant::now();
    for (idx, value) in (0..).zip(values) {
        store.put_bytes(idx, value)?;
    }
    let put_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut read = Vec::with_capacity(values.len());
    for idx in 0..values.len() as u64 {
        read.push(store.get_bytes(idx)?);
    }
    let get_s = started.elapsed().as_secs_f64();
    for ((idx, value), expected) in (0..).zip(read).zip(values) {
        if value.as_deref() != Some(expected.as_slice()) {
            return Err(wrong("w3", row, idx));
        }
    }
    let mut sample = BTreeMap::from([
        ("put_mb_s", megabytes / put_s.max(1e-12)),
        ("get_mb_s", megabytes / get_s.max(1e-12)),
    ]);
    if let Some(stored) = store.stored_bytes().filter(|stored| *stored > 0) {
        sample.insert("compression_ratio", total as f64 / stored as f64);
    }
    Ok(sample)
}

/// One W4 repetition: every GET of `sequence` (all hits, checked by id).
fn w4_rep(store: &mut Facade, backend: &str, sequence: &[u64]) -> Result<Sample> {
    let before = store
        .cache
        .stats()
        .map_err(|source| store.fail(source.into()))?;
    let started = Instant::now();
    for &idx in sequence {
        match store.get_record(idx)? {
            Some(record) if record.id == idx => {}
            _ => return Err(wrong("w4", backend, idx)),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = store
        .cache
        .stats()
        .map_err(|source| store.fail(source.into()))?;
    let mut sample = BTreeMap::from([("get_ops_s", sequence.len() as f64 / elapsed.max(1e-12))]);
    if let Some(ratio) = layer_hit_ratio(&before, &after) {
        sample.insert("layer_hit_ratio", ratio);
    }
    let gets = (after.hits + after.misses).saturating_sub(before.hits + before.misses);
    if gets > 0 {
        let hits = after.hits.saturating_sub(before.hits);
        sample.insert("cache_hit_ratio", hits as f64 / gets as f64);
    }
    Ok(sample)
}

/// The memory layer's hit ratio between two stats, when the backend has a layer.
fn layer_hit_ratio(before: &Stats, after: &Stats) -> Option<f64> {
    let (before, after) = (before.layer?, after.layer?);
    let hits = after.hits.saturating_sub(before.hits);
    let reads = hits + after.misses.saturating_sub(before.misses);
    (reads > 0).then(|| hits as f64 / reads as f64)
}

/// One W5 repetition: `threads` threads on one cache, 90 % GET / 10 % PUT.
/// The cache holds `keys` entries first: a copy of `template` read through
/// once (untimed, so caches are as warm as after the writes), or written now.
fn w5_threads_rep(
    backend: &str,
    dir: &Path,
    template: Option<&Path>,
    (threads, keys, ops): (u64, u64, u64),
) -> Result<Sample> {
    if let Some(template) = template {
        clone_cache(template, dir)?;
    }
    let mut store = Facade::open(backend, dir, "w5")?;
    for idx in 0..keys {
        if template.is_some() {
            if store.get_record(idx)? != Some(Record::new(idx)) {
                return Err(wrong("w5", backend, idx));
            }
        } else {
            store.put_record(idx, &Record::new(idx))?;
        }
    }
    let cache = Arc::new(store.cache);
    let barrier = Arc::new(Barrier::new(threads as usize + 1));
    let per_thread = ops / threads;
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let cache = Arc::clone(&cache);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || -> std::result::Result<(), String> {
                let mut rng = fastrand::Rng::with_seed(thread + 1);
                let plan: Vec<(bool, u64)> = (0..per_thread)
                    .map(|_| (rng.u8(0..10) == 0, rng.u64(0..keys)))
                    .collect();
                barrier.wait();
                for (is_put, idx) in plan {
                    let key = cacheness::key!(experiment = "w5", idx = idx);
                    if is_put {
                        cache
                            .put(&key, &Record::new(idx))
                            .map_err(|error| error.to_string())?;
                    } else {
                        match cache.get::<Record>(&key) {
                            Ok(Some(record)) if record.id == idx => {}
                            Ok(_) => return Err(format!("wrong value for item {idx}")),
                            Err(error) => return Err(error.to_string()),
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for worker in workers {
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(BenchError::cache("w5", backend, reason)),
            Err(_) => return Err(BenchError::cache("w5", backend, "a worker thread panicked")),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(BTreeMap::from([(
        "ops_s",
        (per_thread * threads) as f64 / elapsed.max(1e-12),
    )]))
}

fn child_json(
    output: std::io::Result<std::process::Output>,
    role: &str,
) -> Result<serde_json::Value> {
    let output = output.map_err(|source| BenchError::Child {
        command: role.into(),
        reason: source.to_string(),
    })?;
    if !output.status.success() {
        return Err(BenchError::Child {
            command: role.into(),
            reason: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    serde_json::from_slice(&output.stdout).map_err(|source| BenchError::Child {
        command: role.into(),
        reason: format!("unreadable report: {source}"),
    })
}

fn json_f64(value: &serde_json::Value, name: &str) -> f64 {
    value
        .get(name)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(f64::NAN)
}

/// Runs the diskcache driver with `request`; one sample per repetition.
/// The driver reads its keys from a file: the 32-hex cache keys of items
/// `0..count` of `workload`, the key strings the Rust rows use.
fn python_samples(
    python: &Path,
    dir: &Path,
    mut request: serde_json::Value,
    workload: &'static str,
    count: u64,
) -> Result<Vec<Sample>> {
    let script = dir.join("diskcache_driver.py");
    std::fs::write(&script, DISKCACHE_DRIVER).map_err(|source| BenchError::io(&script, source))?;
    let keys_file = dir.join("keys.txt");
    let keys: String = (0..count)
        .map(|idx| stores::key_hex(workload, idx) + "\n")
        .collect();
    std::fs::write(&keys_file, keys).map_err(|source| BenchError::io(&keys_file, source))?;
    request["keys_file"] = serde_json::json!(keys_file);
    let output = Command::new(python)
        .arg(&script)
        .arg(request.to_string())
        .output();
    let report = child_json(output, "diskcache_driver.py")?;
    let samples = report
        .get("samples")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| BenchError::Child {
            command: "diskcache_driver.py".into(),
            reason: "no samples in its report".into(),
        })?;
    Ok(samples
        .iter()
        .filter_map(serde_json::Value::as_object)
        .map(|sample| {
            sample
                .iter()
                .filter_map(|(name, value)| Some((metric_name(name)?, value.as_f64()?)))
                .collect()
        })
        .collect())
}

/// The metric names the driver may report, as static names.
fn metric_name(name: &str) -> Option<&'static str> {
    const NAMES: &[&str] = &[
        "put_ops_s",
        "get_ops_s",
        "list_ms",
        "put_p50_us",
        "put_p99_us",
        "get_p50_us",
        "get_p99_us",
        "ops_s",
        "lost_count",
        "wrong_count",
    ];
    NAMES.iter().copied().find(|known| *known == name)
}

/// Whether `python` can import diskcache.
pub fn python_has_diskcache(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import diskcache"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The roles this program plays as a child of a run.
#[derive(Debug, Clone)]
pub enum ChildRole {
    /// W5: write items `first..first + count` into the cache in `dir`.
    W5Writer {
        /// The backend.
        backend: String,
        /// The shared cache directory.
        dir: PathBuf,
        /// The first item.
        first: u64,
        /// How many items.
        count: u64,
    },
    /// W5: count the entries in `dir` and read every item back.
    W5Verify {
        /// The backend.
        backend: String,
        /// The shared cache directory.
        dir: PathBuf,
        /// How many items the writers wrote.
        expected: u64,
    },
    /// W7: the peak RSS of a process holding `n` entries.
    W7 {
        /// The backend.
        backend: String,
        /// A fresh cache directory.
        dir: PathBuf,
        /// How many entries.
        n: u64,
    },
}

/// Plays `role`; the JSON report the parent reads from stdout.
pub fn child(role: &ChildRole) -> Result<serde_json::Value> {
    match role {
        ChildRole::W5Writer {
            backend,
            dir,
            first,
            count,
        } => {
            let mut store = Facade::open(backend, dir, "w5p")?;
            let start_s = unix_seconds();
            for idx in *first..first + count {
                store.put_record(idx, &Record::new(idx))?;
            }
            let end_s = unix_seconds();
            store
                .cache
                .flush()
                .map_err(|source| store.fail(source.into()))?;
            Ok(serde_json::json!({ "start_s": start_s, "end_s": end_s }))
        }
        ChildRole::W5Verify {
            backend,
            dir,
            expected,
        } => {
            let mut store = Facade::open(backend, dir, "w5p")?;
            let listed = store.list()? as u64;
            let mut lost = 0_u64;
            let mut wrong = 0_u64;
            for idx in 0..*expected {
                match store.get_record(idx)? {
                    None => lost += 1,
                    Some(record) if record != Record::new(idx) => wrong += 1,
                    Some(_) => {}
                }
            }
            Ok(serde_json::json!({ "listed": listed, "lost": lost, "wrong": wrong }))
        }
        ChildRole::W7 { backend, dir, n } => {
            let baseline = crate::machine::peak_rss_bytes().unwrap_or(0);
            let mut store = Facade::open(backend, dir, "w7")?;
            for idx in 0..*n {
                store.put_record(idx, &Record::new(idx))?;
            }
            store
                .cache
                .flush()
                .map_err(|source| store.fail(source.into()))?;
            let peak = crate::machine::peak_rss_bytes().unwrap_or(0);
            Ok(serde_json::json!({ "baseline_rss": baseline, "peak_rss": peak }))
        }
    }
}

fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
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
