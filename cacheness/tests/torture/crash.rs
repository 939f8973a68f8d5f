//! Crash torture: a child process runs a random stream of put/remove/clear on a
//! `json` or `sqlite` cache, logging each acknowledged operation; the parent
//! SIGKILLs it at a random moment, reopens the cache and checks that every
//! acknowledged write is there with the right bytes, that nothing returns wrong
//! bytes, and that after `gc` no temp file or orphaned blob is left. The same dir
//! goes through every kill point, so each round also starts from the previous
//! crash's leftovers.
//!
//! Default: 100 kill points per backend; `CACHENESS_TORTURE_LONG=1`: 2000.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Rng, scale};
use cacheness::{
    CacheKey, ListOptions, ToKey, key,
    ops::{GcOptions, no_progress},
};

/// The child's instructions: `backend|dir|round seed|side log path`.
const CHILD_ROLE: &str = "CACHENESS_TORTURE_CRASH_CHILD";
/// Keys the stream works on; few, so operations on one key follow each other.
const KEYS: u64 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put { id: u64 },
    Remove { id: u64 },
    Clear,
}

/// Operation `seq` of the round with seed `round_seed`: the child and the parent
/// compute the same stream.
fn op_at(round_seed: u64, seq: u64) -> Op {
    let mut rng = Rng::new(round_seed ^ seq.wrapping_mul(0x2545_f491_4f6c_dd1d));
    match rng.below(100) {
        0..=1 => Op::Clear,
        2..=21 => Op::Remove {
            id: rng.below(KEYS),
        },
        _ => Op::Put {
            id: rng.below(KEYS),
        },
    }
}

/// The bytes put by operation `seq`: a label naming it, then 0 to 400 bytes,
/// compressible or not, so values land inline, in blobs, with and without lz4.
fn value_at(round_seed: u64, seq: u64) -> Vec<u8> {
    let mut rng = Rng::new(round_seed.rotate_left(17) ^ seq);
    let mut bytes = format!("round {round_seed:016x} op {seq} ").into_bytes();
    let len = rng.below(400) as usize;
    if rng.below(2) == 0 {
        bytes.extend(std::iter::repeat_n(b'z', len));
    } else {
        bytes.extend((0..len).map(|_| rng.next_u64() as u8));
    }
    bytes
}

fn key_of(id: u64) -> cacheness::Params {
    key!(torture = "crash", id = id)
}

/// The child: runs the stream until killed, appending `seq\n` to the side log
/// (and then `ack seq` to stdout) after each operation returned.
#[test]
fn crash_child_role() {
    let Ok(instructions) = std::env::var(CHILD_ROLE) else {
        return;
    };
    let parts: Vec<&str> = instructions.split('|').collect();
    let [backend, dir, round_seed, log] = parts[..] else {
        panic!("bad {CHILD_ROLE}: {instructions}");
    };
    let round_seed: u64 = round_seed.parse().unwrap();
    let mut side_log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let cache = crate::support::open(backend, Path::new(dir));
    let mut stdout = std::io::stdout().lock();
    for seq in 0..1_000_000 {
        match op_at(round_seed, seq) {
            Op::Put { id } => cache
                .put_bytes(&key_of(id), &value_at(round_seed, seq))
                .unwrap(),
            Op::Remove { id } => {
                cache.remove(&key_of(id)).unwrap();
            }
            Op::Clear => {
                cache.clear().unwrap();
            }
        }
        side_log.write_all(format!("{seq}\n").as_bytes()).unwrap();
        side_log.flush().unwrap();
        writeln!(stdout, "ack {seq}").unwrap();
        stdout.flush().unwrap();
    }
}

/// What a key may hold after a kill.
type Allowed = Vec<Option<Vec<u8>>>;

/// Runs one round: spawns a child on `dir`, kills it once it acknowledged
/// `kill_after` + 1 operations (plus a random spin), and returns the acknowledged
/// sequence numbers read back from the side log.
fn run_child(
    backend: &str,
    dir: &Path,
    log: &Path,
    round_seed: u64,
    kill_after: u64,
    spin: Duration,
) -> Vec<u64> {
    let mut child = crate::support::child("crash::crash_child_role")
        .env(
            CHILD_ROLE,
            format!("{backend}|{}|{round_seed}|{}", dir.display(), log.display()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Some(seq) = line.strip_prefix("ack ") else {
            continue;
        };
        if seq.parse::<u64>().is_ok_and(|seq| seq >= kill_after) {
            // Land at a random point of the next operation.
            let started = Instant::now();
            while started.elapsed() < spin {
                std::hint::spin_loop();
            }
            child.kill().unwrap();
            killed = true;
            break;
        }
    }
    let status = child.wait().unwrap();
    if !killed {
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        panic!("{backend} child stopped before it was killed ({status}):\n{stderr}");
    }
    // The side log: complete lines only (a torn last line is an acknowledged
    // operation whose log write was cut, which counts as in flight).
    let text = fs::read_to_string(log).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    let acked: Vec<u64> = complete.lines().map(|line| line.parse().unwrap()).collect();
    let expected: Vec<u64> = (0..acked.len() as u64).collect();
    assert_eq!(
        acked, expected,
        "the side log is the sequence of acknowledged ops"
    );
    acked
}

fn apply(state: &mut BTreeMap<u64, Vec<u8>>, round_seed: u64, seq: u64) {
    match op_at(round_seed, seq) {
        Op::Put { id } => {
            state.insert(id, value_at(round_seed, seq));
        }
        Op::Remove { id } => {
            state.remove(&id);
        }
        Op::Clear => state.clear(),
    }
}

fn torture(backend: &str) {
    let seed = crate::support::seed(&format!("crash {backend}"));
    let mut rng = Rng::new(seed);
    let kill_points = scale(100, 2000);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let all_keys: BTreeSet<CacheKey> = (0..KEYS).map(|id| key_of(id).to_key()).collect();
    // What the cache holds, as far as the parent knows.
    let mut state: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut acknowledged_total = 0u64;
    let mut in_flight_applied = 0u64;
    for round in 0..kill_points {
        let round_seed = rng.next_u64();
        let log = root.path().join(format!("acks-{round}.log"));
        // Mostly kills mid-stream; sometimes right at the start (mid-open).
        let kill_after = match rng.below(10) {
            0 => 0,
            _ => rng.below(40),
        };
        let spin = Duration::from_micros(rng.below(4) * rng.below(800));
        let acked = run_child(backend, &dir, &log, round_seed, kill_after, spin);
        acknowledged_total += acked.len() as u64;
        for &seq in &acked {
            apply(&mut state, round_seed, seq);
        }
        let in_flight = acked.len() as u64;
        let mut with_in_flight = state.clone();
        apply(&mut with_in_flight, round_seed, in_flight);

        let cache = crate::support::open(backend, &dir);
        let context = format!(
            "{backend} round {round} (seed {seed}, {} acked, in flight {:?})",
            acked.len(),
            op_at(round_seed, in_flight)
        );
        for id in 0..KEYS {
            let actual = cache
                .get_bytes(&key_of(id))
                .unwrap_or_else(|error| panic!("{context}: get {id}: {error}"));
            let allowed: Allowed = vec![state.get(&id).cloned(), with_in_flight.get(&id).cloned()];
            assert!(
                allowed.contains(&actual),
                "{context}: key {id} holds {:?}, allowed {:?}",
                actual.as_ref().map(
                    |bytes| String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned()
                ),
                allowed
                    .iter()
                    .map(|value| value.as_ref().map(|bytes| String::from_utf8_lossy(
                        &bytes[..bytes.len().min(40)]
                    )
                    .into_owned()))
                    .collect::<Vec<_>>()
            );
            if actual != state.get(&id).cloned() {
                in_flight_applied += 1;
            }
            match actual {
                Some(bytes) => state.insert(id, bytes),
                None => state.remove(&id),
            };
        }
        let listed = cache.list(&ListOptions::default()).unwrap();
        for entry in &listed {
            assert!(
                all_keys.contains(&entry.key),
                "{context}: stray entry {}",
                entry.key
            );
        }
        assert_eq!(listed.len(), state.len(), "{context}: entry count");

        // The child is dead: nothing is in progress, so no file is too young.
        let gc = cache
            .gc_with(&GcOptions::new().grace(Duration::ZERO), &mut no_progress)
            .unwrap();
        let left: Vec<PathBuf> = crate::support::temp_files(&dir);
        assert!(
            left.is_empty(),
            "{context}: temp files after gc: {left:?} ({gc:?})"
        );
        let report = cache.verify(false, &mut no_progress).unwrap();
        assert!(report.is_clean(), "{context}: verify after gc: {report:?}");
        let blobs = crate::support::blob_files(&dir).len();
        let blob_entries = listed
            .iter()
            .filter(|entry| entry.blob_name().is_some())
            .count();
        assert_eq!(
            blobs, blob_entries,
            "{context}: one blob file per blob entry"
        );
        drop(cache);
        fs::remove_file(&log).unwrap();
    }
    eprintln!(
        "crash {backend}: {kill_points} kill points survived, {acknowledged_total} acknowledged operations checked, in-flight op visible {in_flight_applied} times"
    );
}

#[test]
fn json_survives_sigkill_at_random_points() {
    torture("json");
}

#[test]
fn sqlite_survives_sigkill_at_random_points() {
    torture("sqlite");
}
