//! `get_or_insert_with` across processes (`SingleFlight::AcrossProcesses`):
//! processes racing for a key compute it once, a process killed while
//! computing does not block the others, and hostile lock files never hang a
//! caller or lead it out of the dir.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use cacheness::{Cache, SingleFlight, ToKey, key};

use crate::support::{DISK_BACKENDS, child, config, mkfifo};

const CHILD_ROLE: &str = "CACHENESS_TORTURE_SINGLE_FLIGHT";
const PROCESSES: usize = 4;

fn open(backend: &str, dir: &Path) -> Cache {
    config(backend, dir)
        .single_flight(SingleFlight::AcrossProcesses)
        .open()
        .unwrap()
}

/// Waits until `done` holds, polling the file system; panics after a minute
/// (a safety bound for a hung peer, never a wait for time to pass).
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::yield_now();
    }
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |listing| listing.count())
}

/// The child: `race|BACKEND|DIR|SIDE` marks its arrival in `SIDE/arrived`,
/// then asks for the key; a computation appends to `SIDE/runs` and ends once
/// every process has arrived. `hold|BACKEND|DIR|SIDE` starts computing,
/// says so in `SIDE/computing`, and never ends.
#[test]
fn single_flight_child_role() {
    let Ok(instructions) = std::env::var(CHILD_ROLE) else {
        return;
    };
    let parts: Vec<&str> = instructions.split('|').collect();
    let [role, backend, dir, side] = parts[..] else {
        panic!("bad {CHILD_ROLE}: {instructions}");
    };
    let side = Path::new(side);
    let cache = open(backend, Path::new(dir));
    let pid = std::process::id();
    let value = match role {
        "race" => {
            fs::write(side.join("arrived").join(pid.to_string()), b"").unwrap();
            cache
                .get_or_insert_with(&key!(model = "shared"), || {
                    let mut runs = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(side.join("runs"))
                        .unwrap();
                    writeln!(runs, "{pid}").unwrap();
                    until("every process arrived", || {
                        count_files(&side.join("arrived")) == PROCESSES
                    });
                    format!("computed by {pid}")
                })
                .unwrap()
        }
        "hold" => cache
            .get_or_insert_with(&key!(model = "shared"), || -> String {
                fs::write(side.join("computing"), b"").unwrap();
                loop {
                    std::thread::park();
                }
            })
            .unwrap(),
        other => panic!("unknown role {other}"),
    };
    fs::write(side.join("values").join(pid.to_string()), value).unwrap();
}

#[test]
fn processes_racing_for_a_missing_key_compute_it_once() {
    for backend in DISK_BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let side = tempfile::tempdir().unwrap();
        fs::create_dir(side.path().join("arrived")).unwrap();
        fs::create_dir(side.path().join("values")).unwrap();
        // Created once first, so the children race for the key, not the dir.
        drop(open(backend, dir.path()));
        let instructions = format!(
            "race|{backend}|{}|{}",
            dir.path().display(),
            side.path().display()
        );
        let children: Vec<_> = (0..PROCESSES)
            .map(|_| {
                child("single_flight::single_flight_child_role")
                    .env(CHILD_ROLE, &instructions)
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "{backend}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let runs = fs::read_to_string(side.path().join("runs")).unwrap();
        assert_eq!(runs.lines().count(), 1, "{backend}: computed by {runs}");
        let winner = format!("computed by {}", runs.trim());
        for value in fs::read_dir(side.path().join("values")).unwrap() {
            assert_eq!(fs::read_to_string(value.unwrap().path()).unwrap(), winner);
        }
        assert!(
            count_files(&dir.path().join(cacheness::backend::LOCKS_DIR)) == 0,
            "{backend}: lock files are removed after use"
        );
    }
}

#[test]
fn a_process_killed_while_computing_does_not_block_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let side = tempfile::tempdir().unwrap();
    fs::create_dir(side.path().join("values")).unwrap();
    drop(open("sqlite", dir.path()));
    let mut holder = child("single_flight::single_flight_child_role")
        .env(
            CHILD_ROLE,
            format!(
                "hold|sqlite|{}|{}",
                dir.path().display(),
                side.path().display()
            ),
        )
        .spawn()
        .unwrap();
    until("the child computes", || {
        side.path().join("computing").exists()
    });
    holder.kill().unwrap();
    holder.wait().unwrap();
    let cache = open("sqlite", dir.path());
    let value = cache
        .get_or_insert_with(&key!(model = "shared"), || "computed again".to_owned())
        .unwrap();
    assert_eq!(value, "computed again");
}

#[test]
fn hostile_lock_files_never_hang_a_caller_or_lead_out_of_the_dir() {
    let key = key!(model = "shared");
    let lock_name = format!("{}.lock", key.to_key());
    for plant in ["fifo", "symlink", "directory", "symlinked dir"] {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let cache = open("sqlite", dir.path());
        let locks = dir.path().join(cacheness::backend::LOCKS_DIR);
        match plant {
            "symlinked dir" => symlink(outside.path(), &locks).unwrap(),
            _ => fs::create_dir(&locks).unwrap(),
        }
        let target = outside.path().join("target");
        fs::write(&target, b"keep").unwrap();
        match plant {
            "fifo" => mkfifo(&locks.join(&lock_name)),
            "symlink" => symlink(&target, locks.join(&lock_name)).unwrap(),
            "directory" => fs::create_dir(locks.join(&lock_name)).unwrap(),
            _ => {}
        }
        let value = cache.get_or_insert_with(&key, || plant.to_owned()).unwrap();
        assert_eq!(value, plant, "{plant}: computed without the lock");
        assert_eq!(cache.get::<String>(&key).unwrap().as_deref(), Some(plant));
        assert_eq!(fs::read(&target).unwrap(), b"keep", "{plant}");
        assert_eq!(
            count_files(outside.path()),
            1,
            "{plant}: nothing made outside"
        );
    }
}
