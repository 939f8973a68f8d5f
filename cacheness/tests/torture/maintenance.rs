//! Maintenance torture: the operations *around* the data (gc, verify, verify
//! with repair, rebuild, cleanup, listing, clear, the backend switch at open) run
//! beside writers in other processes and are SIGKILLed at random moments; no
//! acknowledged entry may be lost and no blob an entry needs may be deleted.
//!
//! 1. Beside writers (`json`, `sqlite`): three child processes put ~6 KB values
//!    (blob files) on fresh keys and print each acknowledged put, while the
//!    parent loops `gc`, `verify(false)`, `verify(true)`, `rebuild`,
//!    `cleanup_expired`, `list` and `stats` on the same dir. `verify` must report
//!    nothing missing, orphaned or corrupted; `gc` must remove no blob and no
//!    temp file (every writer is alive and every put succeeds, so a blob without
//!    an entry is a put in progress); at the end every acknowledged put reads
//!    back with its exact bytes and `verify` is clean. A second phase loops
//!    `clear` (and `gc`) beside new writers: `clear` legitimately deletes
//!    acknowledged entries, so there only the puts that *started after the last
//!    `clear` returned* must survive (the parent creates a marker file when it
//!    stops clearing; each writer notes whether the marker existed before each
//!    put), every other key reads its bytes or nothing, never other bytes, and
//!    `verify` is clean at the end.
//! 2. Kill points: a child opening a `json` cache with `sqlite` (which migrates
//!    at open; and the reverse), a child running `rebuild` after the metadata
//!    was deleted, and a child running `gc` are SIGKILLed at random moments
//!    (uniformly over 1.2 × the longest of three unkilled runs; the sleep before
//!    the kill is the injected fault, not a wait for anything); the switch is
//!    also killed right after each file it makes appears (the target's
//!    metadata, the in-progress marker, the done marker), and, the
//!    deterministic case of issue 21, while it waits for
//!    `.cacheness-migrate.lock`, which the parent holds. After each kill, fresh
//!    opens (the target backend, then the source, then the target again; the
//!    same backend for rebuild and gc) must each see every entry with its
//!    bytes, before and after a `gc`.
//!
//! Default: 3 writers × 500 puts per backend (then × 200 in the clear phase),
//! 150 entries and 12 kills per random kill-point case, 2 per marker;
//! `CACHENESS_TORTURE_LONG=1`: 3 × 6 000 (× 3 000), 2 000 entries, 150 kills,
//! 20 per marker.
#![cfg(all(unix, feature = "json", feature = "sqlite"))]

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::support::{Rng, scale};
use cacheness::{Cache, ListOptions, key, ops::no_progress};

/// A writer's instructions: `backend|dir|phase|writer|puts|after|seed|marker`.
const WRITER_ROLE: &str = "CACHENESS_TORTURE_MAINTENANCE_WRITER";
/// A killed child's instructions: `switch|rebuild|gc` `|backend|dir`.
const KILLED_ROLE: &str = "CACHENESS_TORTURE_MAINTENANCE_KILLED";
const WRITERS: u64 = 3;
/// Over the default inline threshold (4 KiB) and the torture one (64 B).
const VALUE_LEN: usize = 6 * 1024;

fn writer_key(phase: u64, writer: u64, seq: u64) -> cacheness::Params {
    key!(
        torture = "maintenance",
        phase = phase,
        writer = writer,
        seq = seq
    )
}

fn writer_value(seed: u64, phase: u64, writer: u64, seq: u64) -> Vec<u8> {
    let mut bytes = format!("phase {phase} writer {writer} seq {seq} ").into_bytes();
    let rest = VALUE_LEN - bytes.len();
    bytes.extend(crate::support::random_bytes(
        seed ^ (phase << 56) ^ (writer << 48) ^ seq,
        rest,
    ));
    bytes
}

/// The writer child: puts `puts` values on fresh keys, and goes on until at
/// least `after` of its puts started after `marker` existed; prints
/// `ack SEQ AFTER` (AFTER 1 if the marker existed before the put began) once
/// each put returned. A put that fails fails the child.
#[test]
fn maintenance_writer_role() {
    let Ok(instructions) = std::env::var(WRITER_ROLE) else {
        return;
    };
    let parts: Vec<&str> = instructions.split('|').collect();
    let [backend, dir, phase, writer, puts, after, seed, marker] = parts[..] else {
        panic!("bad {WRITER_ROLE}: {instructions}");
    };
    let number = |text: &str| -> u64 { text.parse().unwrap() };
    let (phase, writer, puts, after, seed) = (
        number(phase),
        number(writer),
        number(puts),
        number(after),
        number(seed),
    );
    let marker = (!marker.is_empty()).then(|| PathBuf::from(marker));
    let cache = crate::support::open(backend, Path::new(dir));
    let mut stdout = std::io::stdout().lock();
    let (mut seq, mut started_after) = (0u64, 0u64);
    // Ends when the parent stops reading (a failed write to stdout panics).
    while seq < puts || started_after < after {
        let after_marker = marker.as_ref().is_some_and(|marker| marker.exists());
        cache
            .put_bytes(
                &writer_key(phase, writer, seq),
                &writer_value(seed, phase, writer, seq),
            )
            .unwrap_or_else(|error| panic!("{backend} writer {writer}: put {seq}: {error}"));
        writeln!(stdout, "ack {seq} {}", u8::from(after_marker)).unwrap();
        stdout.flush().unwrap();
        started_after += u64::from(after_marker);
        seq += 1;
    }
}

/// A put a writer acknowledged.
#[derive(Debug, Clone, Copy)]
struct Ack {
    writer: u64,
    seq: u64,
    /// It began after the parent stopped clearing.
    after_marker: bool,
}

struct Writer {
    index: u64,
    child: Child,
    acks: JoinHandle<Vec<Ack>>,
}

#[allow(clippy::too_many_arguments)]
fn spawn_writers(
    backend: &str,
    dir: &Path,
    phase: u64,
    puts: u64,
    after: u64,
    seed: u64,
    marker: Option<&Path>,
) -> Vec<Writer> {
    (0..WRITERS)
        .map(|index| {
            let mut child = crate::support::child("maintenance::maintenance_writer_role")
                .env(
                    WRITER_ROLE,
                    format!(
                        "{backend}|{}|{phase}|{index}|{puts}|{after}|{seed}|{}",
                        dir.display(),
                        marker
                            .map(|path| path.display().to_string())
                            .unwrap_or_default()
                    ),
                )
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let acks = std::thread::spawn(move || {
                let mut acks = Vec::new();
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let words: Vec<&str> = line.split(' ').collect();
                    if let ["ack", seq, after] = words[..] {
                        acks.push(Ack {
                            writer: index,
                            seq: seq.parse().unwrap(),
                            after_marker: after == "1",
                        });
                    }
                }
                acks
            });
            Writer { index, child, acks }
        })
        .collect()
}

fn all_exited(writers: &mut [Writer]) -> bool {
    writers
        .iter_mut()
        .all(|writer| writer.child.try_wait().unwrap().is_some())
}

/// Reaps the writers; every one must have exited 0 (a failed put fails it).
fn collect_acks(backend: &str, writers: Vec<Writer>, problems: &mut Vec<String>) -> Vec<Ack> {
    let mut acks = Vec::new();
    for writer in writers {
        let output = writer.child.wait_with_output().unwrap();
        if !output.status.success() {
            problems.push(format!(
                "{backend} writer {} failed ({}): {}",
                writer.index,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        acks.extend(writer.acks.join().expect("the ack reader does not panic"));
    }
    acks
}

/// What the maintenance loop did.
#[derive(Debug, Default)]
struct Tally {
    rounds: u64,
    removed_blobs: u64,
    removed_temp_files: u64,
    restored: u64,
}

/// One maintenance operation on `cache`, picked by `round`; anything that
/// shows a put in progress treated as damage goes to `problems`.
fn maintenance_round(cache: &Cache, round: u64, tally: &mut Tally, problems: &mut Vec<String>) {
    let describe = |report: &cacheness::ops::VerifyReport| {
        format!(
            "{} missing, {} orphaned, {} corrupted (first missing {:?}, first orphaned {:?})",
            report.missing.len(),
            report.orphaned.len(),
            report.corrupted.len(),
            report.missing.first(),
            report.orphaned.first()
        )
    };
    match round % 6 {
        0 => match cache.gc(&mut no_progress) {
            Ok(report) => {
                tally.removed_blobs += report.orphaned_blobs;
                tally.removed_temp_files += report.temp_files;
                if report.orphaned_blobs > 0 || report.temp_files > 0 {
                    problems.push(format!(
                        "round {round}: gc removed {} blob files and {} temp files while every writer was alive and every put succeeded",
                        report.orphaned_blobs, report.temp_files
                    ));
                }
            }
            Err(error) => problems.push(format!("round {round}: gc failed: {error}")),
        },
        1 => match cache.verify(false, &mut no_progress) {
            Ok(report) if report.is_clean() => {}
            Ok(report) => problems.push(format!(
                "round {round}: verify beside writers reported {}",
                describe(&report)
            )),
            Err(error) => problems.push(format!("round {round}: verify failed: {error}")),
        },
        2 => match cache.verify(true, &mut no_progress) {
            Ok(report) if report.is_clean() => {}
            Ok(report) => problems.push(format!(
                "round {round}: verify with repair beside writers reported (and removed) {}",
                describe(&report)
            )),
            Err(error) => problems.push(format!("round {round}: verify --repair failed: {error}")),
        },
        3 => match cache.rebuild(&mut no_progress) {
            Ok(report) => {
                tally.restored += report.restored;
                if !report.invalid.is_empty() {
                    problems.push(format!(
                        "round {round}: rebuild found {} invalid blobs, first {:?}",
                        report.invalid.len(),
                        report.invalid.first()
                    ));
                }
            }
            Err(error) => problems.push(format!("round {round}: rebuild failed: {error}")),
        },
        4 => match cache.cleanup_expired() {
            Ok(0) => {}
            Ok(removed) => problems.push(format!(
                "round {round}: cleanup_expired removed {removed} entries, none has a TTL"
            )),
            Err(error) => problems.push(format!("round {round}: cleanup_expired failed: {error}")),
        },
        _ => {
            if let Err(error) = cache.list(&ListOptions::default()) {
                problems.push(format!("round {round}: list failed: {error}"));
            }
            if let Err(error) = cache.stats() {
                problems.push(format!("round {round}: stats failed: {error}"));
            }
        }
    }
    tally.rounds += 1;
}

/// Reads every acknowledged put back through a fresh handle: lost (absent
/// although `must_survive`), wrong bytes, and how many were absent and allowed.
fn check_acks(
    backend: &str,
    dir: &Path,
    phase: u64,
    seed: u64,
    acks: &[Ack],
    must_survive: impl Fn(&Ack) -> bool,
    problems: &mut Vec<String>,
) -> u64 {
    let cache = crate::support::open(backend, dir);
    let (mut lost, mut wrong, mut absent_allowed) = (Vec::new(), Vec::new(), 0u64);
    for ack in acks {
        let expected = writer_value(seed, phase, ack.writer, ack.seq);
        match cache.get_bytes(&writer_key(phase, ack.writer, ack.seq)) {
            Ok(Some(bytes)) if bytes == expected => {}
            Ok(Some(_)) => wrong.push(*ack),
            Ok(None) if must_survive(ack) => lost.push(format!("{ack:?}")),
            Ok(None) => absent_allowed += 1,
            Err(error) => lost.push(format!("{ack:?}: {error}")),
        }
    }
    if !lost.is_empty() {
        problems.push(format!(
            "{backend} phase {phase}: {} of {} acknowledged puts lost, first {:?}",
            lost.len(),
            acks.len(),
            &lost[..lost.len().min(3)]
        ));
    }
    if !wrong.is_empty() {
        problems.push(format!(
            "{backend} phase {phase}: {} keys read wrong bytes, first {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(3)]
        ));
    }
    match cache.verify(false, &mut no_progress) {
        Ok(report) if report.is_clean() => {}
        Ok(report) => problems.push(format!(
            "{backend} phase {phase}: verify after the writers: {} missing, {} orphaned, {} corrupted",
            report.missing.len(),
            report.orphaned.len(),
            report.corrupted.len()
        )),
        Err(error) => problems.push(format!("{backend} phase {phase}: verify failed: {error}")),
    }
    absent_allowed
}

fn beside_writers(backend: &str) {
    let seed = crate::support::seed(&format!("maintenance {backend}"));
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let cache = crate::support::open(backend, &dir);
    // What the maintenance loop saw go wrong, and what the final checks found.
    let (mut seen, mut problems) = (Vec::new(), Vec::new());
    let started = Instant::now();

    // Phase 1: every maintenance operation but clear, beside the writers.
    let puts = scale(500, 6_000);
    let mut writers = spawn_writers(backend, &dir, 1, puts, 0, seed, None);
    let mut tally = Tally::default();
    // Bounded by the writers' own counts; the cap only stops a runaway loop.
    while !all_exited(&mut writers) && tally.rounds < 1_000_000 {
        maintenance_round(&cache, tally.rounds, &mut tally, &mut seen);
    }
    let acks = collect_acks(backend, writers, &mut problems);
    check_acks(backend, &dir, 1, seed, &acks, |_| true, &mut problems);
    let phase_one = started.elapsed();

    // Phase 2: clear (and gc) beside new writers; then the marker, and only
    // puts begun after it must survive.
    let marker = root.path().join("clearing-stopped");
    let writers = spawn_writers(
        backend,
        &dir,
        2,
        scale(200, 3_000),
        scale(80, 1_000),
        seed,
        Some(&marker),
    );
    let clears = scale(30, 600);
    for round in 0..clears {
        let outcome = if round % 2 == 0 {
            cache.clear().map(drop)
        } else {
            cache.gc(&mut no_progress).map(drop)
        };
        if let Err(error) = outcome {
            problems.push(format!("clear phase round {round}: {error}"));
        }
    }
    File::create(&marker).unwrap();
    let acks_two = collect_acks(backend, writers, &mut problems);
    let after = acks_two.iter().filter(|ack| ack.after_marker).count();
    let cleared = check_acks(
        backend,
        &dir,
        2,
        seed,
        &acks_two,
        |ack| ack.after_marker,
        &mut problems,
    );
    drop(cache);
    eprintln!(
        "maintenance {backend}: {WRITERS} writers, {} acknowledged puts beside {} maintenance rounds ({} blobs and {} temp files removed by gc, {} entries restored by rebuild, {} rounds saw a put in progress as damage) in {:.1} s; clear phase: {clears} clear/gc rounds, {} puts ({after} after the last clear, {cleared} cleared); {} problems at the end",
        acks.len(),
        tally.rounds,
        tally.removed_blobs,
        tally.removed_temp_files,
        tally.restored,
        seen.len(),
        phase_one.as_secs_f64(),
        acks_two.len(),
        problems.len()
    );
    assert!(
        problems.is_empty() && seen.is_empty(),
        "{backend} (seed {seed}): {} problems at the end:\n{}\n{} of {} maintenance rounds saw a put in progress as damage, first:\n{}",
        problems.len(),
        problems.join("\n"),
        seen.len(),
        tally.rounds,
        seen[..seen.len().min(6)].join("\n")
    );
}

#[test]
fn json_maintenance_beside_writers_loses_nothing() {
    beside_writers("json");
}

#[test]
fn sqlite_maintenance_beside_writers_loses_nothing() {
    beside_writers("sqlite");
}

// ---------------------------------------------------------------------------
// Kill points.

fn kill_key(id: u64) -> cacheness::Params {
    key!(torture = "maintenance-kill", id = id)
}

/// Blob-sized with every configuration the suite opens (> 64 bytes).
fn kill_value(id: u64) -> Vec<u8> {
    let mut bytes = format!("entry {id} ").into_bytes();
    bytes.extend(crate::support::random_bytes(id ^ 0x6b69_6c6c, 500));
    bytes
}

/// Entries in the kill-point caches.
fn kill_entries() -> u64 {
    scale(150, 2_000)
}

/// A `backend` cache in `dir` holding `n` blob entries, closed.
fn fill(backend: &str, dir: &Path, n: u64) {
    let cache = crate::support::open(backend, dir);
    for id in 0..n {
        cache.put_bytes(&kill_key(id), &kill_value(id)).unwrap();
    }
}

/// The killed child: `switch` opens the dir with `backend` (migrating at open);
/// `rebuild` and `gc` open it and run that operation.
#[test]
fn maintenance_killed_role() {
    let Ok(instructions) = std::env::var(KILLED_ROLE) else {
        return;
    };
    let parts: Vec<&str> = instructions.split('|').collect();
    let [operation, backend, dir] = parts[..] else {
        panic!("bad {KILLED_ROLE}: {instructions}");
    };
    let cache = crate::support::open(backend, Path::new(dir));
    match operation {
        "switch" => {}
        "rebuild" => {
            cache.rebuild(&mut no_progress).unwrap();
        }
        "gc" => {
            cache.gc(&mut no_progress).unwrap();
        }
        other => panic!("unknown operation {other}"),
    }
    println!("done");
}

fn spawn_killed_role(operation: &str, backend: &str, dir: &Path) -> Child {
    crate::support::child("maintenance::maintenance_killed_role")
        .env(
            KILLED_ROLE,
            format!("{operation}|{backend}|{}", dir.display()),
        )
        .spawn()
        .unwrap()
}

/// How a round's child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    Killed,
    Finished,
    Failed(String),
}

/// Runs the child to its end (no kill), within a bound.
fn run_to_end(mut child: Child) -> Ended {
    match crate::support::wait_bounded(&mut child, Duration::from_secs(120)) {
        None => Ended::Failed("hung for 120 s".into()),
        Some(status) if status.success() => Ended::Finished,
        Some(status) => Ended::Failed(format!("{status}: {}", stderr_of(&mut child))),
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}

/// Kills `child` after `delay`, unless it ended first. The delay is the fault
/// injected (a random point of the run), not a wait for anything to happen.
fn kill_after(mut child: Child, delay: Duration) -> Ended {
    std::thread::sleep(delay);
    match child.try_wait().unwrap() {
        Some(status) if status.success() => Ended::Finished,
        Some(status) => Ended::Failed(format!("{status}: {}", stderr_of(&mut child))),
        None => {
            child.kill().unwrap();
            child.wait().unwrap();
            Ended::Killed
        }
    }
}

/// Every entry of the kill-point caches, with its bytes.
fn read_all(cache: &Cache, n: u64) -> Result<(), String> {
    let mut missing = Vec::new();
    for id in 0..n {
        match cache.get_bytes(&kill_key(id)) {
            Ok(Some(bytes)) if bytes == kill_value(id) => {}
            Ok(Some(_)) => return Err(format!("entry {id} reads wrong bytes")),
            Ok(None) => missing.push(id),
            Err(error) => return Err(format!("entry {id}: {error}")),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {n} entries missing, first {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        ))
    }
}

/// Opens `dir` with each of `backends` in turn; each must see every entry
/// before and after its `gc` (gc deletes no blob an entry needs).
fn check_opens(dir: &Path, n: u64, backends: &[&str]) -> Result<(), String> {
    for (step, backend) in backends.iter().enumerate() {
        let cache = crate::support::config(backend, dir)
            .open()
            .map_err(|error| format!("open {step} ({backend}): {error}"))?;
        read_all(&cache, n).map_err(|error| format!("open {step} ({backend}): {error}"))?;
        cache
            .gc(&mut no_progress)
            .map_err(|error| format!("gc after open {step} ({backend}): {error}"))?;
        read_all(&cache, n)
            .map_err(|error| format!("after gc, open {step} ({backend}): {error}"))?;
    }
    Ok(())
}

/// After a killed rebuild: a fresh open and a complete rebuild restore every
/// entry; `gc` then deletes none of their blobs; `verify` is clean.
fn check_rebuild(dir: &Path, n: u64, backend: &str) -> Result<(), String> {
    let cache = crate::support::config(backend, dir)
        .open()
        .map_err(|error| format!("open: {error}"))?;
    cache
        .rebuild(&mut no_progress)
        .map_err(|error| format!("rebuild: {error}"))?;
    read_all(&cache, n).map_err(|error| format!("after rebuild: {error}"))?;
    check_gc(dir, n, backend)
}

/// After a killed gc: every entry is there, before and after a full `gc`, and
/// `verify` is clean.
fn check_gc(dir: &Path, n: u64, backend: &str) -> Result<(), String> {
    check_opens(dir, n, &[backend])?;
    let cache = crate::support::open(backend, dir);
    let report = cache
        .verify(false, &mut no_progress)
        .map_err(|error| format!("verify: {error}"))?;
    if report.is_clean() {
        Ok(())
    } else {
        Err(format!("verify: {report:?}"))
    }
}

/// Runs `rounds` kill points of `operation` by a `backend` child on fresh
/// copies of `template`, checking each with `check`.
fn kill_points(
    case: &str,
    operation: &str,
    backend: &str,
    template: &Path,
    check: &dyn Fn(&Path) -> Result<(), String>,
) {
    let seed = crate::support::seed(&format!("kill {case}"));
    let mut rng = Rng::new(seed);
    let rounds = scale(12, 150);
    let root = tempfile::tempdir().unwrap();
    // Three unkilled runs: they must pass too, and the longest spans the kill
    // points.
    let mut span = Duration::ZERO;
    for run in 0..3 {
        let dir = root.path().join(format!("unkilled-{run}"));
        crate::support::clone_cache_dir(template, &dir);
        let started = Instant::now();
        let ended = run_to_end(spawn_killed_role(operation, backend, &dir));
        span = span.max(started.elapsed());
        assert_eq!(ended, Ended::Finished, "{case}: unkilled run {run}");
        check(&dir).unwrap_or_else(|error| panic!("{case}: unkilled run {run}: {error}"));
        fs::remove_dir_all(&dir).unwrap();
    }
    let span_micros = (span.as_micros() as u64).max(1) * 6 / 5;
    let (mut killed, mut finished, mut failures) = (0u64, 0u64, Vec::new());
    for round in 0..rounds {
        let dir = root.path().join(format!("round-{round}"));
        crate::support::clone_cache_dir(template, &dir);
        let delay = Duration::from_micros(rng.below(span_micros));
        let ended = kill_after(spawn_killed_role(operation, backend, &dir), delay);
        match &ended {
            Ended::Killed => killed += 1,
            Ended::Finished => finished += 1,
            Ended::Failed(error) => failures.push(format!("round {round}: child failed: {error}")),
        }
        if let Err(error) = check(&dir) {
            failures.push(format!(
                "round {round} (killed after {delay:?} of a {span:?} run, {ended:?}): {error}"
            ));
        }
        fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!(
        "kill {case}: {rounds} rounds over a {:.0} ms run, {killed} killed, {finished} finished first, {} failed",
        span.as_secs_f64() * 1000.0,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "kill {case} (seed {seed}): {} of {rounds} rounds failed:\n{}",
        failures.len(),
        failures[..failures.len().min(8)].join("\n")
    );
}

fn switch_case(from: &str, to: &str) {
    let root = tempfile::tempdir().unwrap();
    let template = root.path().join("template");
    let n = kill_entries();
    fill(from, &template, n);
    kill_points(
        &format!("switch {from} to {to}"),
        "switch",
        to,
        &template,
        &|dir| check_opens(dir, n, &[to, from, to]),
    );
}

#[test]
fn a_json_to_sqlite_switch_killed_at_random_loses_nothing() {
    switch_case("json", "sqlite");
}

#[test]
fn a_sqlite_to_json_switch_killed_at_random_loses_nothing() {
    switch_case("sqlite", "json");
}

/// The metadata files of `backend`, which rebuild exists to replace.
fn remove_metadata(backend: &str, dir: &Path) {
    let names: &[&str] = match backend {
        "json" => &["metadata.json", "metadata.journal", "metadata.lock"],
        _ => &[
            "cache_metadata.db",
            "cache_metadata.db-wal",
            "cache_metadata.db-shm",
        ],
    };
    for name in names {
        match fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => panic!("remove {name}: {error}"),
        }
    }
}

fn rebuild_case(backend: &str) {
    let root = tempfile::tempdir().unwrap();
    let template = root.path().join("template");
    let n = kill_entries();
    fill(backend, &template, n);
    remove_metadata(backend, &template);
    kill_points(
        &format!("rebuild {backend}"),
        "rebuild",
        backend,
        &template,
        &|dir| check_rebuild(dir, n, backend),
    );
}

#[test]
fn a_json_rebuild_killed_at_random_loses_nothing() {
    rebuild_case("json");
}

#[test]
fn a_sqlite_rebuild_killed_at_random_loses_nothing() {
    rebuild_case("sqlite");
}

/// Sets a file's mtime two hours back: old enough for any grace period.
fn age(path: &Path) {
    let old = SystemTime::now() - Duration::from_secs(2 * 3600);
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(old))
        .unwrap_or_else(|error| panic!("age {}: {error}", path.display()));
}

fn gc_case(backend: &str) {
    let root = tempfile::tempdir().unwrap();
    let template = root.path().join("template");
    let n = kill_entries();
    fill(backend, &template, n);
    // Work for gc, so kills land inside it: an old orphaned copy of every blob,
    // and old temp files of a writer that does not run.
    let cache = crate::support::open(backend, &template);
    for id in 0..n {
        let entry = cache.entry(&kill_key(id)).unwrap().unwrap();
        let blob = cache.blob_path(&entry).unwrap();
        let name = blob.file_name().unwrap().to_str().unwrap();
        let orphan = blob.with_file_name(format!("{}-{:016x}", &name[..32], 0xdead_0000 + id));
        fs::copy(&blob, &orphan).unwrap();
        age(&orphan);
    }
    drop(cache);
    for index in 0..n / 5 {
        let temp = template.join(format!("tmp/4294967295-{index:016x}.tmp"));
        fs::write(&temp, b"partial").unwrap();
        age(&temp);
    }
    kill_points(&format!("gc {backend}"), "gc", backend, &template, &|dir| {
        check_gc(dir, n, backend)
    });
}

#[test]
fn a_json_gc_killed_at_random_loses_nothing() {
    gc_case("json");
}

#[test]
fn a_sqlite_gc_killed_at_random_loses_nothing() {
    gc_case("sqlite");
}

/// Whether `pid` has the migration lock file open, waiting for its hold.
fn waits_for_a_lock(pid: u32) -> bool {
    // The opener opens the lock file, then polls for its hold: seen by the
    // file among its descriptors (a polling waiter has no /proc/locks line).
    fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten().any(|fd| {
            fs::read_link(fd.path()).is_ok_and(|target| target.ends_with(".cacheness-migrate.lock"))
        })
    })
}

/// Issue 21, item 2, deterministic: another process holds the migration lock,
/// so the process switching a json cache to sqlite waits for it; it is killed
/// while it waits. Fresh opens (sqlite, json, sqlite) must each see every
/// entry, and gc must delete no blob any of them needs.
#[test]
fn a_switch_killed_while_it_waits_for_the_migration_lock_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let n = kill_entries();
    fill("json", &dir, n);
    let lock_path = dir.join(".cacheness-migrate.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    lock.lock().unwrap();
    let mut child = spawn_killed_role("switch", "sqlite", &dir);
    // Until the child is seen waiting for a lock (or ends, or 3 s pass).
    let mut seen_waiting = false;
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if waits_for_a_lock(child.id()) {
            seen_waiting = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let ended = match child.try_wait().unwrap() {
        Some(status) => format!("ended by itself ({status}): {}", stderr_of(&mut child)),
        None => {
            child.kill().unwrap();
            child.wait().unwrap();
            format!("killed (seen waiting for the lock: {seen_waiting})")
        }
    };
    drop(lock);
    let outcome = check_opens(&dir, n, &["sqlite", "json", "sqlite"]);
    eprintln!("kill while waiting for the migration lock: child {ended}; {n} entries: {outcome:?}");
    outcome.unwrap_or_else(|error| panic!("child {ended}: {error}"));
}

/// Kills a switching child as soon as `appears` exists in `dir` (polled every
/// 100 µs, for at most ~10 s), or lets it finish if it never does. Whether the
/// file was seen.
fn kill_when_it_appears(mut child: Child, appears: &Path) -> Result<bool, String> {
    for _ in 0..100_000 {
        if fs::symlink_metadata(appears).is_ok() {
            child.kill().unwrap();
            child.wait().unwrap();
            return Ok(true);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return if status.success() {
                Ok(false)
            } else {
                Err(format!(
                    "child failed ({status}): {}",
                    stderr_of(&mut child)
                ))
            };
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err("the child neither ended nor made the file in ~10 s".into())
}

/// Issue 21's "kill points inside migration (before and after each marker)":
/// the switching child is killed right after each file it makes appears.
#[test]
fn a_switch_killed_as_each_marker_appears_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let n = kill_entries();
    let rounds = scale(2, 20);
    let mut failures = Vec::new();
    let mut seen = 0;
    let mut total = 0;
    for (from, to, target_file) in [
        ("json", "sqlite", "cache_metadata.db"),
        ("sqlite", "json", "metadata.journal"),
    ] {
        let template = root.path().join(format!("template-{from}"));
        fill(from, &template, n);
        let events = [
            target_file.to_owned(),
            ".cacheness-migrating".to_owned(),
            format!(".cacheness-migrated-{from}-to-{to}"),
        ];
        for event in &events {
            for round in 0..rounds {
                total += 1;
                let dir = root.path().join(format!("{from}-{round}"));
                crate::support::clone_cache_dir(&template, &dir);
                let context =
                    format!("{from} to {to}, killed when {event} appeared, round {round}");
                match kill_when_it_appears(spawn_killed_role("switch", to, &dir), &dir.join(event))
                {
                    Ok(true) => seen += 1,
                    Ok(false) => {
                        eprintln!("{context}: the file never appeared; the child finished")
                    }
                    Err(error) => failures.push(format!("{context}: {error}")),
                }
                if let Err(error) = check_opens(&dir, n, &[to, from, to]) {
                    failures.push(format!("{context}: {error}"));
                }
                fs::remove_dir_all(&dir).unwrap();
            }
        }
    }
    eprintln!(
        "kill at each marker: {total} rounds, {seen} killed as the file appeared, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} rounds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
