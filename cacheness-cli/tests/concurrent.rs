//! The `cacheness` binary's maintenance commands run while other processes write.
//!
//! Writer processes (this test binary run again with `CACHENESS_CLI_WRITER` set,
//! selecting the `writer_process` test) put 6 KB values, each in its own blob
//! file, on fresh keys and print every key whose put returned to stdout. Beside
//! them the test runs the real `cacheness gc`, `verify`, `verify --repair` and
//! `ls`, over and over, on the same dir. Afterwards every acknowledged key must
//! read back with its bytes, and no command may have found a missing entry or
//! an orphaned blob: every blob a writer makes is about to be, or already is,
//! referenced by its entry, so none of them is garbage.
//!
//! The work is bounded by counts (puts per writer, rounds of commands), never by
//! time, so that the test's length does not depend on the machine's speed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use cacheness::{Cache, CacheConfig, key};

const WRITER_ENV: &str = "CACHENESS_CLI_WRITER";
const WRITERS: u64 = 2;
/// Puts per writer.
const PUTS: u64 = 500;
/// Above the default inline threshold (4 KiB), so every value is a blob file.
const VALUE_LEN: usize = 6 * 1024;
/// The most rounds of (gc, verify, verify --repair, ls) per backend.
const MAX_ROUNDS: u64 = 40;
/// An acknowledgement line: `ack <writer> <index>`.
const ACK: &str = "ack";

/// The bytes writer `writer` puts under index `index`: pseudo-random, so that
/// lz4 does not shrink them into the metadata.
fn value(writer: u64, index: u64) -> Vec<u8> {
    let mut state = (writer + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (index << 20) ^ 0x5eed;
    (0..VALUE_LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn open(backend: &str, dir: &Path) -> Cache {
    CacheConfig::new()
        .dir(dir)
        .backend(backend)
        .open()
        .expect("the cache opens")
}

/// A writer's work; a no-op in an ordinary test run.
#[test]
fn writer_process() {
    let Ok(role) = std::env::var(WRITER_ENV) else {
        return;
    };
    let mut parts = role.splitn(3, ':');
    let backend = parts.next().expect("role has a backend").to_owned();
    let writer: u64 = parts
        .next()
        .and_then(|writer| writer.parse().ok())
        .expect("role has a writer number");
    let dir = PathBuf::from(parts.next().expect("role has a directory"));
    let cache = open(&backend, &dir);
    let mut out = std::io::stdout().lock();
    // The harness has printed `test writer_process ... ` without a newline.
    writeln!(out).expect("stdout is open");
    for index in 0..PUTS {
        cache
            .put_bytes(&key!(writer = writer, index = index), &value(writer, index))
            .expect("put succeeds");
        // Printed only once the put returned: the parent holds the cache to it.
        writeln!(out, "{ACK} {writer} {index}").expect("stdout is open");
        out.flush().expect("stdout is open");
    }
    cache.flush().expect("flush succeeds");
}

fn spawn_writer(backend: &str, writer: u64, dir: &Path) -> Child {
    Command::new(std::env::current_exe().expect("the test binary has a path"))
        .args([
            "--exact",
            "writer_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, format!("{backend}:{writer}:{}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the writer starts")
}

fn cacheness(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cacheness"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("the binary runs")
}

/// What went wrong in one command's run, if anything.
fn damage_reported(args: &[&str], output: &Output) -> Option<String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let describe = || {
        format!(
            "`cacheness {}` exited {:?}\nstdout: {stdout}\nstderr: {stderr}",
            args.join(" "),
            output.status.code()
        )
    };
    if !output.status.success() {
        return Some(describe());
    }
    let clean = match args[0] {
        "verify" => stdout.contains(" 0 missing, 0 orphaned files"),
        "gc" => stdout.contains(" 0 orphaned blobs"),
        _ => true,
    };
    (!clean).then(describe)
}

fn maintenance_beside_writers(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    // The dir holds the backend's metadata before the CLI first looks at it.
    open(backend, dir.path())
        .put_bytes(&key!(seed = true), b"seed")
        .unwrap();
    let mut writers: Vec<Child> = (0..WRITERS)
        .map(|writer| spawn_writer(backend, writer, dir.path()))
        .collect();
    let commands: [&[&str]; 4] = [&["gc"], &["verify"], &["verify", "--repair"], &["ls"]];
    let mut damage = Vec::new();
    let mut rounds = 0;
    // While a writer still runs, and at least twice so the commands also meet
    // a cache at rest.
    while rounds < 2
        || (rounds < MAX_ROUNDS
            && writers
                .iter_mut()
                .any(|writer| writer.try_wait().expect("wait works").is_none()))
    {
        for args in commands {
            let output = cacheness(dir.path(), args);
            damage.extend(damage_reported(args, &output));
        }
        rounds += 1;
    }
    let mut acknowledged = Vec::new();
    for (number, writer) in writers.into_iter().enumerate() {
        let output = writer.wait_with_output().expect("the writer runs");
        assert!(
            output.status.success(),
            "{backend}: writer {number} failed: {}",
            output.status
        );
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let mut words = line.split(' ');
            if words.next() != Some(ACK) {
                continue;
            }
            let mut number = || -> u64 {
                words
                    .next()
                    .and_then(|word| word.parse().ok())
                    .expect("an ack line has two numbers")
            };
            acknowledged.push((number(), number()));
        }
    }
    assert_eq!(
        acknowledged.len() as u64,
        WRITERS * PUTS,
        "{backend}: every put was acknowledged"
    );
    let cache = open(backend, dir.path());
    let mut lost = Vec::new();
    for &(writer, index) in &acknowledged {
        let back = cache
            .get_bytes(&key!(writer = writer, index = index))
            .expect("get succeeds");
        if back.as_deref() != Some(value(writer, index).as_slice()) {
            lost.push((writer, index));
        }
    }
    eprintln!(
        "{backend}: {rounds} rounds of gc, verify, verify --repair, ls beside {WRITERS} writers; {} acknowledged puts, {} lost, {} commands reported damage",
        acknowledged.len(),
        lost.len(),
        damage.len()
    );
    assert!(
        lost.is_empty(),
        "{backend}: {} of {} acknowledged puts lost, such as (writer, index) {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        damage.is_empty(),
        "{backend}: {} commands reported damage beside writers; the first:\n{}",
        damage.len(),
        damage[0]
    );
}

#[test]
fn json_maintenance_beside_writers_loses_nothing() {
    maintenance_beside_writers("json");
}

#[test]
fn sqlite_maintenance_beside_writers_loses_nothing() {
    maintenance_beside_writers("sqlite");
}
