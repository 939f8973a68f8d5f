//! Hostile cache dirs: what another local user, a careless script or a second
//! container can leave in a cache dir must not hang cacheness, make it read or
//! write outside the dir, or cost entries.
//!
//! - **Planted links and FIFOs.** For `json` and `sqlite`, at every name the
//!   cache opens (the metadata files and SQLite's `-wal`/`-shm`, the signing key
//!   and its id, the migration markers and lock, a blob file, a shard dir,
//!   `tmp/`), a symlink to a file outside the dir and, separately, a FIFO. A
//!   child process (under a watchdog: a hang kills it and fails the test) opens
//!   the cache with signing on and runs put, get, list, verify, gc, rebuild and
//!   get again; for the migration markers the dir holds the *other* backend's
//!   cache, so the open migrates. Each operation either works or fails with an
//!   error naming the planted path; nothing outside the dir changes; no metadata
//!   is read through a link (the link targets are a decoy cache's files, whose
//!   entry must never show) and no value is served from one (a linked blob file
//!   is a valid blob of the same key with other bytes); once the plant is
//!   removed, every entry reads back (only the entries behind a planted blob or
//!   shard may be gone).
//! - **Limits at put.** Parameters nested 70 deep, user metadata nested 200
//!   deep and a 64 MiB + 1 byte parameter are refused at put with an error
//!   naming the limit, and the rest of the cache stays readable, also after a
//!   reopen.
//! - **Another signing key.** A handle with another key refuses to open or
//!   reads misses, and deletes nothing: afterwards the original handle and a
//!   fresh one read every entry, and every blob file is still there.
//! - **Another PID namespace.** A writer run under `unshare --pid --fork` (at a
//!   pid this namespace does not have) holds a fresh temp file in `tmp/` named
//!   with its pid; `gc` here must not delete it. Skipped with a printed reason
//!   where `unshare` is missing or not permitted.
#![cfg(all(unix, feature = "json", feature = "sqlite"))]

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cacheness::KeyError;
use cacheness::{
    Cache, CacheConfig, ListOptions, Params, PutOptions, ToKey, Value, key, ops::no_progress,
};

/// The child's instructions: `ops|check` `|backend|dir`.
const HOSTILE_ROLE: &str = "CACHENESS_TORTURE_HOSTILE_CHILD";
/// The PID-namespace child's instructions: `launcher|backend|dir|pid` or
/// `writer|backend|dir`.
const PIDNS_ROLE: &str = "CACHENESS_TORTURE_HOSTILE_PIDNS";
/// Entries in each cache; blob-sized, so every one has a blob file.
const ENTRIES: u64 = 8;
/// Starts the child's report lines (the test harness prints its own lines too).
const REPORT: &str = "report: ";
/// How long a child may take before it counts as hung.
const WATCHDOG: Duration = Duration::from_secs(10);

/// Every name the cache opens in its dir; `BLOB` and `SHARD` stand for the blob
/// file of entry 0 and its shard dir.
const PLANTED: [&str; 15] = [
    "metadata.json",
    "metadata.journal",
    "metadata.lock",
    "cache_metadata.db",
    "cache_metadata.db-wal",
    "cache_metadata.db-shm",
    "signing.key",
    "signing.id",
    ".cacheness-migrating",
    ".cacheness-migrate.lock",
    ".cacheness-migrated-json-to-sqlite",
    ".cacheness-migrated-sqlite-to-json",
    BLOB,
    SHARD,
    "tmp",
];
const BLOB: &str = "<blob of entry 0>";
const SHARD: &str = "<shard of entry 0>";
/// Where a json decoy keeps its journal from before its compaction.
const DECOY_JOURNAL: &str = "journal-with-the-decoy";
const GENERIC_OUTSIDE: &[u8] = b"outside the cache dir: must stay byte-identical\n";

fn key_of(id: u64) -> Params {
    key!(torture = "hostile", id = id)
}

fn value_of(id: u64) -> Vec<u8> {
    crate::support::random_bytes(0x686f_7374 ^ id, 2_000)
}

/// The entry of the decoy cache that must never show in a real one.
fn decoy_key() -> Params {
    key!(torture = "hostile", decoy = true)
}

fn other_backend(backend: &str) -> &'static str {
    if backend == "json" { "sqlite" } else { "json" }
}

/// The torture configuration with entry signing on (so `signing.key` is read).
fn config(backend: &str, dir: &Path) -> CacheConfig {
    crate::support::config(backend, dir).sign_entries(true)
}

/// Errors on one line, for the child's reports.
fn one_line(error: impl std::fmt::Display) -> String {
    error.to_string().replace('\n', " ")
}

/// Reports every entry that reads other bytes (`wrong ID`), nothing (`miss ID`)
/// or fails (`err get ID MESSAGE`).
fn get_all(cache: &Cache, report: &mut dyn FnMut(String)) {
    for id in 0..ENTRIES {
        match cache.get_bytes(&key_of(id)) {
            Ok(Some(bytes)) if bytes == value_of(id) => {}
            Ok(Some(_)) => report(format!("wrong {id}")),
            Ok(None) => report(format!("miss {id}")),
            Err(error) => report(format!("err get {}", one_line(error))),
        }
    }
}

fn outcome<T>(operation: &str, result: cacheness::Result<T>) -> String {
    match result {
        Ok(_) => format!("ok {operation}"),
        Err(error) => format!("err {operation} {}", one_line(error)),
    }
}

/// The child: `ops` opens the cache and runs every operation, `check` opens it
/// and reads every entry; one line per outcome on stdout.
#[test]
fn hostile_child_role() {
    let Ok(instructions) = std::env::var(HOSTILE_ROLE) else {
        return;
    };
    let parts: Vec<&str> = instructions.split('|').collect();
    let [mode, backend, dir] = parts[..] else {
        panic!("bad {HOSTILE_ROLE}: {instructions}");
    };
    let mut stdout = std::io::stdout().lock();
    let mut report = |line: String| {
        writeln!(stdout, "{REPORT}{line}").unwrap();
        stdout.flush().unwrap();
    };
    let cache = match config(backend, Path::new(dir)).open() {
        Ok(cache) => cache,
        Err(error) => {
            report(format!("err open {}", one_line(error)));
            return;
        }
    };
    report("ok open".into());
    if mode == "check" {
        get_all(&cache, &mut report);
        return;
    }
    report(outcome(
        "put",
        cache.put_bytes(&key_of(100), &value_of(100)),
    ));
    get_all(&cache, &mut report);
    match cache.list(&ListOptions::default()) {
        Ok(listed) => {
            if listed.iter().any(|entry| entry.key == decoy_key().to_key()) {
                report("decoy list".into());
            }
            report("ok list".into());
        }
        Err(error) => report(format!("err list {}", one_line(error))),
    }
    report(outcome("verify", cache.verify(false, &mut no_progress)));
    report(outcome("gc", cache.gc(&mut no_progress)));
    report(outcome("rebuild", cache.rebuild(&mut no_progress)));
    get_all(&cache, &mut report);
}

/// Writes the json snapshot (`metadata.json`) from the journal, as a
/// compaction does, so both files exist.
fn compact_json(dir: &Path) {
    cacheness_json::JsonBackend::open(dir)
        .and_then(|backend| backend.compact())
        .unwrap();
}

/// A cache of `backend` with `ENTRIES` blob entries (signed), closed; a json
/// one has half of them in its snapshot, half in its journal.
fn make_template(backend: &str, dir: &Path) {
    let cache = config(backend, dir).open().unwrap();
    for id in 0..ENTRIES {
        if id == ENTRIES / 2 && backend == "json" {
            compact_json(dir);
        }
        cache.put_bytes(&key_of(id), &value_of(id)).unwrap();
    }
}

/// A decoy cache signed with `template`'s key: the decoy entry (inline) and
/// entry 0 with other bytes. Its files are what the planted links point at; a
/// json decoy keeps a copy of its journal and then compacts, so both a journal
/// and a snapshot holding the decoy exist.
fn make_decoy(backend: &str, template: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::copy(template.join("signing.key"), dir.join("signing.key")).unwrap();
    let cache = config(backend, dir).open().unwrap();
    cache.put_bytes(&decoy_key(), b"decoy").unwrap();
    cache
        .put_bytes(&key_of(0), &crate::support::random_bytes(0xbad, 2_000))
        .unwrap();
    drop(cache);
    if backend == "json" {
        fs::copy(dir.join("metadata.journal"), dir.join(DECOY_JOURNAL)).unwrap();
        compact_json(dir);
    }
}

/// The shard dir and blob file of entry 0 in `dir`.
fn blob_of_entry_zero(dir: &Path) -> (PathBuf, PathBuf) {
    let hex = key_of(0).to_key().to_hex();
    let shard = dir.join("blobs").join(&hex[..2]);
    let blob = fs::read_dir(&shard)
        .unwrap()
        .flatten()
        .map(|item| item.path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&hex))
        })
        .expect("entry 0 has a blob file");
    (shard, blob)
}

/// The path `planted` stands for in `dir`.
fn planted_path(dir: &Path, planted: &str) -> PathBuf {
    match planted {
        BLOB => blob_of_entry_zero(dir).1,
        SHARD => blob_of_entry_zero(dir).0,
        name => dir.join(name),
    }
}

/// Entries that may be gone after `planted`: those behind a planted blob or shard.
fn may_be_lost(planted: &str) -> BTreeSet<u64> {
    let shard = |id: u64| key_of(id).to_key().to_hex()[..2].to_owned();
    match planted {
        BLOB => BTreeSet::from([0]),
        SHARD => (0..ENTRIES).filter(|id| shard(*id) == shard(0)).collect(),
        _ => BTreeSet::new(),
    }
}

/// What the link at `planted` points at: the decoy's file of that name where it
/// has one (a valid file a cache would read), another key for `signing.key`,
/// generic bytes otherwise.
fn outside_content(planted: &str, decoy: &Path) -> Vec<u8> {
    match planted {
        BLOB => fs::read(blob_of_entry_zero(decoy).1).unwrap(),
        "signing.key" => crate::support::random_bytes(0x006b_6579, 32),
        "metadata.journal" => {
            fs::read(decoy.join(DECOY_JOURNAL)).unwrap_or_else(|_| GENERIC_OUTSIDE.to_vec())
        }
        "metadata.json" | "cache_metadata.db" => {
            fs::read(decoy.join(planted)).unwrap_or_else(|_| GENERIC_OUTSIDE.to_vec())
        }
        _ => GENERIC_OUTSIDE.to_vec(),
    }
}

/// Whether an error message names the planted path.
fn names_path(message: &str, dir: &Path, path: &Path) -> bool {
    let relative = path.strip_prefix(dir).unwrap().display().to_string();
    let blob_name = relative
        .strip_prefix("blobs/")
        .filter(|name| name.contains('/'));
    message.contains(&path.display().to_string())
        || (relative != "tmp" && message.contains(&relative))
        || blob_name.is_some_and(|name| message.contains(name))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plant {
    Symlink,
    Fifo,
}

/// Runs the hostile child in `mode` on `dir` under the watchdog; its report
/// lines, or `Err` if it hung or panicked.
fn run_child(mode: &str, backend: &str, dir: &Path) -> Result<Vec<String>, String> {
    let mut child = crate::support::child("hostile::hostile_child_role")
        .env(HOSTILE_ROLE, format!("{mode}|{backend}|{}", dir.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stdout).read_to_string(&mut text);
        text
    });
    let status = crate::support::wait_bounded(&mut child, WATCHDOG);
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let lines: Vec<String> = reader
        .join()
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix(REPORT))
        .map(str::to_owned)
        .collect();
    match status {
        None => Err(format!(
            "hung: killed after {WATCHDOG:?}; it had reported {lines:?}"
        )),
        Some(status) if !status.success() => Err(format!(
            "the child failed ({status}) after {lines:?}: {}",
            stderr.trim()
        )),
        Some(_) => Ok(lines),
    }
}

/// Removes every symlink and FIFO under `dir` (a plant, or one the cache moved).
fn remove_plants(dir: &Path) {
    for path in crate::support::files_under(dir) {
        if let Ok(metadata) = fs::symlink_metadata(&path) {
            let kind = metadata.file_type();
            if kind.is_symlink() || kind.is_fifo() {
                fs::remove_file(&path).unwrap();
            }
        }
    }
}

/// One case: `planted` as `plant` in a copy of the right template; returns the
/// problems found.
fn hostile_case(
    backend: &str,
    planted: &str,
    plant: Plant,
    root: &Path,
    case: usize,
) -> Vec<String> {
    // The migration markers matter when the open migrates: the dir then holds
    // the other backend's cache.
    let source = if planted.starts_with(".cacheness-") {
        other_backend(backend)
    } else {
        backend
    };
    let case_root = root.join(format!("case-{case}"));
    let dir = case_root.join("cache");
    let outside = case_root.join("outside");
    fs::create_dir_all(&outside).unwrap();
    crate::support::copy_dir(&root.join(format!("template-{source}")), &dir);
    let target = planted_path(&dir, planted);
    let victim = outside.join("victim");
    fs::write(
        &victim,
        outside_content(planted, &root.join(format!("decoy-{source}"))),
    )
    .unwrap();
    // The original (file or dir) is kept beside, and put back once the plant is removed.
    let saved = case_root.join("saved");
    if fs::symlink_metadata(&target).is_ok() {
        fs::rename(&target, &saved).unwrap();
    }
    match plant {
        Plant::Symlink => symlink(&victim, &target).unwrap(),
        Plant::Fifo => crate::support::mkfifo(&target),
    }
    // Everything beside the cache dir: the linked file, the saved original.
    let beside = |case_root: &Path| {
        let mut tree = crate::support::tree_snapshot(case_root);
        tree.retain(|path, _| !path.starts_with(&dir));
        tree
    };
    let before = beside(&case_root);
    let context = format!("{backend}, {plant:?} at {planted}");
    let lost_allowed = may_be_lost(planted);
    let mut problems = Vec::new();
    match run_child("ops", backend, &dir) {
        Err(error) => problems.push(format!("{context}: {error}")),
        Ok(lines) => {
            let mut missing = BTreeSet::new();
            for line in &lines {
                let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
                match word {
                    "ok" => {}
                    "err" if names_path(rest, &dir, &target) => {}
                    "err" => problems.push(format!(
                        "{context}: an error that does not name {}: {rest}",
                        target.display()
                    )),
                    "wrong" => problems.push(format!(
                        "{context}: entry {rest} read other bytes (served from outside the dir?)"
                    )),
                    "decoy" => problems.push(format!(
                        "{context}: the decoy entry is listed: metadata was read through the link"
                    )),
                    "miss" if rest.parse().is_ok_and(|id| lost_allowed.contains(&id)) => {}
                    "miss" => {
                        missing.insert(rest.parse::<u64>().unwrap());
                    }
                    _ => problems.push(format!("{context}: unexpected report {line:?}")),
                }
            }
            if !missing.is_empty() {
                problems.push(format!(
                    "{context}: entries read as missing while the cache works: {missing:?}"
                ));
            }
        }
    }
    if beside(&case_root) != before {
        problems.push(format!(
            "{context}: files outside the cache dir changed (the linked file written, truncated or deleted, or files made beside the dir)"
        ));
    }
    remove_plants(&dir);
    if fs::symlink_metadata(&saved).is_ok() && fs::symlink_metadata(&target).is_err() {
        fs::rename(&saved, &target).unwrap();
    }
    match run_child("check", backend, &dir) {
        Err(error) => problems.push(format!("{context}: after the plant was removed: {error}")),
        Ok(lines) => {
            let unexpected: Vec<String> = lines
                .into_iter()
                .filter(|line| {
                    let lost = line
                        .strip_prefix("miss ")
                        .and_then(|id| id.parse().ok())
                        .is_some_and(|id| lost_allowed.contains(&id));
                    line != "ok open" && !lost
                })
                .collect();
            if !unexpected.is_empty() {
                problems.push(format!(
                    "{context}: after the plant was removed: {}",
                    unexpected.join(", ")
                ));
            }
        }
    }
    let _ = fs::remove_dir_all(&case_root);
    problems
}

fn planted_everywhere(backend: &str, plant: Plant) {
    let root = tempfile::tempdir().unwrap();
    for source in crate::support::DISK_BACKENDS {
        let template = root.path().join(format!("template-{source}"));
        make_template(source, &template);
        make_decoy(
            source,
            &template,
            &root.path().join(format!("decoy-{source}")),
        );
    }
    let mut problems = Vec::new();
    let mut failed_cases = 0;
    for (case, planted) in PLANTED.iter().enumerate() {
        let found = hostile_case(backend, planted, plant, root.path(), case);
        failed_cases += usize::from(!found.is_empty());
        problems.extend(found);
    }
    eprintln!(
        "hostile {backend} {plant:?}: {} names planted, {failed_cases} cases with problems, {} problems",
        PLANTED.len(),
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "{backend} {plant:?}: {failed_cases} of {} cases failed:\n{}",
        PLANTED.len(),
        problems.join("\n")
    );
}

#[test]
fn json_symlinks_at_every_name_are_refused_or_harmless() {
    planted_everywhere("json", Plant::Symlink);
}

#[test]
fn sqlite_symlinks_at_every_name_are_refused_or_harmless() {
    planted_everywhere("sqlite", Plant::Symlink);
}

#[test]
fn json_fifos_at_every_name_never_hang() {
    planted_everywhere("json", Plant::Fifo);
}

#[test]
fn sqlite_fifos_at_every_name_never_hang() {
    planted_everywhere("sqlite", Plant::Fifo);
}

// ---------------------------------------------------------------------------
// Limits at put.

fn nested_value(depth: usize) -> Value {
    let mut value = Value::from(1u64);
    for _ in 0..depth {
        value = Value::List(vec![value]);
    }
    value
}

fn nested_json(depth: usize) -> serde_json::Value {
    let mut value = serde_json::Value::from(1);
    for _ in 0..depth {
        value = serde_json::Value::Array(vec![value]);
    }
    value
}

/// Every entry reads back, the listing and `verify` work; problems found.
fn rest_is_readable(cache: &Cache, context: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for id in 0..ENTRIES {
        match cache.get_bytes(&key_of(id)) {
            Ok(Some(bytes)) if bytes == value_of(id) => {}
            other => problems.push(format!(
                "{context}: entry {id}: {:?}",
                other.map(|bytes| bytes.map(|bytes| bytes.len()))
            )),
        }
    }
    if let Err(error) = cache.list(&ListOptions::default()) {
        problems.push(format!("{context}: list: {error}"));
    }
    match cache.verify(false, &mut no_progress) {
        Ok(_) => {}
        Err(error) => problems.push(format!("{context}: verify: {error}")),
    }
    problems
}

/// What is put, its parameters (or their refusal), its options, and words
/// one of which the refusal must contain.
type LimitCase = (
    &'static str,
    Result<Params, KeyError>,
    PutOptions,
    &'static [&'static str],
);

#[test]
fn deep_nesting_and_oversized_parameters_are_refused_at_put() {
    let mut problems = Vec::new();
    for backend in crate::support::DISK_BACKENDS {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let cache = crate::support::open(backend, &dir);
        for id in 0..ENTRIES {
            cache.put_bytes(&key_of(id), &value_of(id)).unwrap();
        }
        let huge = "p".repeat((64 << 20) + 1);
        // Parameters past a limit may be refused as they are built, or at put.
        let cases: [LimitCase; 3] = [
            (
                "parameters nested 70 deep",
                Params::new().with("deep", nested_value(70)),
                PutOptions::new(),
                &["nest", "deep", "depth"],
            ),
            (
                "user metadata nested 200 deep",
                Ok(key!(torture = "hostile", case = "deep metadata")),
                PutOptions::new().metadata("deep", nested_json(200)),
                &["nest", "deep", "depth"],
            ),
            (
                "a parameter of 64 MiB + 1 byte",
                Params::new().with("big", huge.as_str()),
                PutOptions::new(),
                &["MiB", "bytes", "size", "large"],
            ),
        ];
        drop(huge);
        for (what, params, options, limit_words) in cases {
            let context = format!("{backend}, {what}");
            let put = params
                .map_err(cacheness::Error::from)
                .and_then(|params| cache.put_bytes_with(&params, &value_of(7), &options));
            match put {
                Ok(()) => problems.push(format!("{context}: accepted at put")),
                Err(error) => {
                    let message = error.to_string();
                    let names_limit = message.chars().any(|c| c.is_ascii_digit())
                        && limit_words.iter().any(|word| message.contains(word));
                    if !names_limit {
                        problems.push(format!(
                            "{context}: refused, but the error does not name the limit: {message}"
                        ));
                    }
                }
            }
            problems.extend(rest_is_readable(&cache, &format!("{context}, same handle")));
        }
        drop(cache);
        match crate::support::config(backend, &dir).open() {
            Ok(cache) => {
                problems.extend(rest_is_readable(&cache, &format!("{backend}, reopened")));
                if let Err(error) = cache.gc(&mut no_progress) {
                    problems.push(format!("{backend}, reopened: gc: {error}"));
                }
            }
            Err(error) => problems.push(format!("{backend}: reopen: {error}")),
        }
    }
    eprintln!("limits at put: {} problems", problems.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// Another signing key.

#[test]
fn a_different_signing_key_never_deletes() {
    let mut problems = Vec::new();
    for backend in crate::support::DISK_BACKENDS {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let original = config(backend, &dir).open().unwrap();
        for id in 0..ENTRIES {
            original.put_bytes(&key_of(id), &value_of(id)).unwrap();
        }
        // A few inline entries too.
        for id in 0..3 {
            original
                .put_bytes(&key_of(1_000 + id), format!("inline {id}").as_bytes())
                .unwrap();
        }
        let blobs_before = crate::support::blob_files(&dir);
        let context = format!("{backend}, another key");
        let other = config(backend, &dir).open_backend().and_then(|metadata| {
            Cache::builder()
                .dir(&dir)
                .inline_threshold(64)
                .signing_key([0x5a; 32])
                .open_shared(metadata)
        });
        let mut served = 0;
        match other {
            Err(error) => eprintln!("{context}: open refused: {error}"),
            Ok(other) => {
                for id in (0..ENTRIES).chain(1_000..1_003) {
                    if let Ok(Some(_)) = other.get_bytes(&key_of(id)) {
                        served += 1;
                    }
                }
                let _ = other.list(&ListOptions::default());
                let _ = other.verify(false, &mut no_progress);
                let _ = other.gc(&mut no_progress);
                let _ = other.rebuild(&mut no_progress);
            }
        }
        if served > 0 {
            problems.push(format!(
                "{context}: served {served} entries whose signature it cannot check"
            ));
        }
        let check = |cache: &Cache, who: &str, problems: &mut Vec<String>| {
            let mut lost = Vec::new();
            for id in 0..ENTRIES {
                if !matches!(cache.get_bytes(&key_of(id)), Ok(Some(ref bytes)) if *bytes == value_of(id))
                {
                    lost.push(id);
                }
            }
            for id in 0..3 {
                let expected = format!("inline {id}").into_bytes();
                if !matches!(cache.get_bytes(&key_of(1_000 + id)), Ok(Some(ref bytes)) if *bytes == expected)
                {
                    lost.push(1_000 + id);
                }
            }
            if !lost.is_empty() {
                problems.push(format!(
                    "{context}: afterwards the {who} does not read entries {lost:?}"
                ));
            }
        };
        check(&original, "original handle", &mut problems);
        drop(original);
        let missing: Vec<&PathBuf> = {
            let after: BTreeSet<PathBuf> = crate::support::blob_files(&dir).into_iter().collect();
            blobs_before
                .iter()
                .filter(|path| !after.contains(*path))
                .collect()
        };
        if !missing.is_empty() {
            problems.push(format!(
                "{context}: {} of {} blob files deleted",
                missing.len(),
                blobs_before.len()
            ));
        }
        match config(backend, &dir).open() {
            Ok(fresh) => check(&fresh, "reopened cache", &mut problems),
            Err(error) => problems.push(format!("{context}: reopen with the right key: {error}")),
        }
    }
    eprintln!("another signing key: {} problems", problems.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// Another PID namespace.

/// The PID-namespace child. The launcher (pid 1 of the new namespace) asks for
/// `pid` as the next pid and starts the writer; the writer opens the cache,
/// makes a temp file in `tmp/` named as a put names it (its pid, a nonce),
/// holds it open and locked, reports `ready PATH PID`, and stays alive until
/// its stdin closes.
#[test]
fn pidns_child_role() {
    let Ok(instructions) = std::env::var(PIDNS_ROLE) else {
        return;
    };
    let parts: Vec<&str> = instructions.split('|').collect();
    match parts[..] {
        ["launcher", backend, dir, pid] => {
            let wanted: u32 = pid.parse().unwrap();
            if let Err(error) = fs::write("/proc/sys/kernel/ns_last_pid", (wanted - 1).to_string())
            {
                println!("note ns_last_pid not writable: {error}");
            }
            let status = crate::support::child("hostile::pidns_child_role")
                .env(PIDNS_ROLE, format!("writer|{backend}|{dir}"))
                .stdin(Stdio::inherit())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .status()
                .unwrap();
            assert!(status.success(), "the writer failed: {status}");
        }
        ["writer", backend, dir] => {
            let dir = Path::new(dir);
            let cache = crate::support::open(backend, dir);
            let pid = std::process::id();
            let path = dir.join(format!("tmp/{pid}-{:016x}.tmp", 0x7772_6974_6572u64));
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .unwrap();
            file.lock().unwrap();
            file.write_all(&crate::support::random_bytes(1, 1 << 20))
                .unwrap();
            println!("ready {} {pid}", path.display());
            std::io::stdout().flush().unwrap();
            let mut rest = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut rest);
            drop(file);
            let _ = fs::remove_file(&path);
            drop(cache);
        }
        _ => panic!("bad {PIDNS_ROLE}: {instructions}"),
    }
}

/// Why PID namespaces cannot be tried here, if they cannot.
fn unshare_unavailable() -> Option<String> {
    match Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Err(error) => Some(format!("`unshare` cannot run: {error}")),
        Ok(output) if !output.status.success() => Some(format!(
            "`unshare --pid --fork` is not permitted: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// A pid this namespace does not have, for the writer in the other one.
fn pid_missing_here() -> u32 {
    let max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(32_768);
    (1_000..max - 2)
        .rev()
        .step_by(7)
        .find(|pid| !Path::new("/proc").join(pid.to_string()).exists())
        .expect("some pid is free")
}

#[test]
fn a_writer_in_another_pid_namespace_keeps_its_temp_file() {
    if let Some(reason) = unshare_unavailable() {
        eprintln!("another PID namespace: skipped: {reason}");
        return;
    }
    let mut problems = Vec::new();
    for backend in crate::support::DISK_BACKENDS {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let cache = crate::support::open(backend, &dir);
        let wanted = pid_missing_here();
        let test_binary = std::env::current_exe().unwrap();
        let mut child = Command::new("unshare")
            .args(["--pid", "--fork"])
            .arg(&test_binary)
            .args([
                "hostile::pidns_child_role",
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "--quiet",
            ])
            .env(
                PIDNS_ROLE,
                format!("launcher|{backend}|{}|{wanted}", dir.display()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut temp = None;
        while let Ok(line) = ready.recv_timeout(WATCHDOG) {
            if let Some(note) = line.strip_prefix("note ") {
                eprintln!("another PID namespace ({backend}): {note}");
            }
            if let Some(rest) = line.strip_prefix("ready ") {
                let (path, pid) = rest.rsplit_once(' ').unwrap();
                temp = Some((PathBuf::from(path), pid.to_owned()));
                break;
            }
        }
        let Some((path, pid)) = temp else {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{backend}: the writer in the other namespace never got ready: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let visible_here = Path::new("/proc").join(&pid).exists();
        if visible_here {
            eprintln!(
                "another PID namespace ({backend}): note: the writer's pid {pid} also exists here, so this run cannot tell a pid check from a correct one"
            );
        }
        let mut collected = 0;
        for _ in 0..3 {
            match cache.gc(&mut no_progress) {
                Ok(report) => collected += report.temp_files,
                Err(error) => problems.push(format!("{backend}: gc: {error}")),
            }
        }
        let kept = path.exists();
        if !kept {
            problems.push(format!(
                "{backend}: gc deleted the temp file {} of a live writer in another PID namespace (pid {pid} there, wanted {wanted}; {collected} temp files collected)",
                path.display()
            ));
        }
        drop(child.stdin.take());
        match crate::support::wait_bounded(&mut child, WATCHDOG) {
            Some(status) if status.success() => {}
            Some(status) => {
                let mut stderr = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
                problems.push(format!("{backend}: the writer failed ({status}): {stderr}"));
            }
            None => problems.push(format!("{backend}: the writer did not exit")),
        }
        eprintln!(
            "another PID namespace ({backend}): writer pid {pid} there (asked for {wanted}), temp file {}",
            if kept { "kept" } else { "deleted by gc" }
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
