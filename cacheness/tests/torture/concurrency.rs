//! Concurrency torture: 4 processes × 2 threads run a mixed put/get/remove
//! workload on the same keys of one fresh `json` or `sqlite` cache dir. Every
//! value read must be one some writer wrote, whole; at the end every key holds
//! the value of some writer's *last* write of it (or nothing, if some writer's
//! last write was a remove), checked against the writers' logs; the blob files
//! match the entries exactly; and no process panicked or saw an error.
//!
//! Default: 500 operations per thread (4 000 per backend); with
//! `CACHENESS_TORTURE_LONG=1`: 10 000 per thread.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::support::{Rng, scale};
use cacheness::{key, ops::no_progress};

/// The child's instructions: `backend|dir|process index|log path|ops per thread|seed`.
const CHILD_ROLE: &str = "CACHENESS_TORTURE_CONCURRENCY_CHILD";
const PROCESSES: u64 = 4;
const THREADS: u64 = 2;
const KEYS: u64 = 16;

fn key_of(id: u64) -> cacheness::Params {
    key!(torture = "concurrency", id = id)
}

/// The bytes writer `writer` puts as its operation `seq` on key `id`.
fn value_of(writer: u64, seq: u64, id: u64) -> Vec<u8> {
    let mut rng = Rng::new(writer << 40 ^ seq << 8 ^ id);
    let mut bytes = format!("w{writer} s{seq} k{id} ").into_bytes();
    let len = rng.below(300) as usize;
    bytes.extend((0..len).map(|_| rng.next_u64() as u8));
    bytes
}

/// Checks bytes read for key `id` are a whole value some writer wrote for it.
fn check_read(id: u64, bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
    let mut words = text.split(' ');
    let parse = |word: Option<&str>, tag: char| {
        word.and_then(|word| word.strip_prefix(tag))
            .and_then(|number| number.parse::<u64>().ok())
    };
    match (
        parse(words.next(), 'w'),
        parse(words.next(), 's'),
        parse(words.next(), 'k'),
    ) {
        (Some(writer), Some(seq), Some(key)) if key == id && value_of(writer, seq, id) == bytes => {
            Ok(())
        }
        _ => Err(format!(
            "key {id} returned bytes no writer wrote: {text:?}…"
        )),
    }
}

/// One writer thread: its operations, returning its log lines
/// (`writer id put seq` / `writer id remove`) in order.
fn writer_thread(cache: &cacheness::Cache, writer: u64, ops: u64, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed ^ writer.wrapping_mul(0x9e37_79b9));
    let mut log = Vec::new();
    for seq in 0..ops {
        let id = rng.below(KEYS);
        match rng.below(10) {
            0..=4 => {
                cache
                    .put_bytes(&key_of(id), &value_of(writer, seq, id))
                    .unwrap();
                log.push(format!("{writer} {id} put {seq}"));
            }
            5..=7 => {
                if let Some(bytes) = cache.get_bytes(&key_of(id)).unwrap() {
                    check_read(id, &bytes).unwrap();
                }
            }
            _ => {
                cache.remove(&key_of(id)).unwrap();
                log.push(format!("{writer} {id} remove"));
            }
        }
    }
    log
}

/// The child: one process, two writer threads sharing one cache handle.
#[test]
fn concurrency_child_role() {
    let Ok(instructions) = std::env::var(CHILD_ROLE) else {
        return;
    };
    let parts: Vec<&str> = instructions.split('|').collect();
    let [backend, dir, process, log, ops, seed] = parts[..] else {
        panic!("bad {CHILD_ROLE}: {instructions}");
    };
    let (process, ops, seed): (u64, u64, u64) = (
        process.parse().unwrap(),
        ops.parse().unwrap(),
        seed.parse().unwrap(),
    );
    let cache = Arc::new(crate::support::open(backend, Path::new(dir)));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let cache = Arc::clone(&cache);
            std::thread::spawn(move || writer_thread(&cache, process * THREADS + thread, ops, seed))
        })
        .collect();
    let mut lines = Vec::new();
    for thread in threads {
        lines.extend(thread.join().expect("a writer thread panicked"));
    }
    let mut file = fs::File::create(log).unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
    file.sync_all().unwrap();
}

/// What a writer did last to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Put(u64),
    Remove,
}

fn torture(backend: &str) {
    let seed = crate::support::seed(&format!("concurrency {backend}"));
    let ops = scale(500, 10_000);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let children: Vec<_> = (0..PROCESSES)
        .map(|process| {
            let log = root.path().join(format!("writer-{process}.log"));
            let child = crate::support::child("concurrency::concurrency_child_role")
                .env(
                    CHILD_ROLE,
                    format!(
                        "{backend}|{}|{process}|{}|{ops}|{seed}",
                        dir.display(),
                        log.display()
                    ),
                )
                .spawn()
                .unwrap();
            (child, log)
        })
        .collect();
    // writer → key → its last write of that key.
    let mut last: BTreeMap<u64, BTreeMap<u64, Last>> = BTreeMap::new();
    let mut writes = 0u64;
    for (child, log) in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{backend} writer process failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        for line in fs::read_to_string(&log).unwrap().lines() {
            let words: Vec<&str> = line.split(' ').collect();
            let writer: u64 = words[0].parse().unwrap();
            let id: u64 = words[1].parse().unwrap();
            let what = match words[2] {
                "put" => Last::Put(words[3].parse().unwrap()),
                _ => Last::Remove,
            };
            last.entry(writer).or_default().insert(id, what);
            writes += 1;
        }
    }
    assert_eq!(
        last.len() as u64,
        PROCESSES * THREADS,
        "every writer logged"
    );

    let cache = crate::support::open(backend, &dir);
    let mut present = 0;
    for id in 0..KEYS {
        let candidates: Vec<(u64, Last)> = last
            .iter()
            .filter_map(|(writer, keys)| keys.get(&id).map(|what| (*writer, *what)))
            .collect();
        let actual = cache.get_bytes(&key_of(id)).unwrap();
        match &actual {
            Some(bytes) => {
                present += 1;
                check_read(id, bytes).unwrap();
                assert!(
                    candidates.iter().any(|(writer, what)| match what {
                        Last::Put(seq) => value_of(*writer, *seq, id) == *bytes,
                        Last::Remove => false,
                    }),
                    "{backend} key {id}: holds {:?}, which is no writer's last write ({candidates:?})",
                    String::from_utf8_lossy(&bytes[..20.min(bytes.len())])
                );
            }
            None => assert!(
                candidates.is_empty() || candidates.iter().any(|(_, what)| *what == Last::Remove),
                "{backend} key {id}: lost; every writer's last write was a put ({candidates:?})"
            ),
        }
    }
    let report = cache.verify(false, &mut no_progress).unwrap();
    assert!(report.is_clean(), "{backend}: {report:?}");
    assert!(crate::support::temp_files(&dir).is_empty());
    eprintln!(
        "concurrency {backend}: {PROCESSES} processes × {THREADS} threads × {ops} ops, {writes} writes logged, {present}/{KEYS} keys present at the end, all consistent"
    );
}

#[test]
fn json_four_processes_two_threads_each() {
    torture("json");
}

#[test]
fn sqlite_four_processes_two_threads_each() {
    torture("sqlite");
}
