//! The `cacheness` binary run on real cache directories, for every command and for
//! bad input.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use cacheness::{CacheConfig, PutOptions, key};

fn cacheness(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cacheness"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

/// A sqlite cache with three small entries, one under a prefix, and one large
/// value in a blob file; returns the blob entry's key.
fn populated(dir: &Path) -> String {
    let cache = CacheConfig::new()
        .dir(dir)
        .backend("sqlite")
        .open()
        .unwrap();
    cache.put(&key!(name = "a"), &"alpha").unwrap();
    cache.put(&key!(name = "b"), &"beta").unwrap();
    cache
        .put_with(
            &key!(name = "c"),
            &"gamma",
            &PutOptions::new()
                .prefix("greek")
                .description("third letter"),
        )
        .unwrap();
    let large: Vec<u8> = (0..20_000u32)
        .flat_map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
        .take(20_000)
        .collect();
    cache.put_bytes(&key!(name = "large"), &large).unwrap();
    key!(name = "large").key().to_string()
}

#[test]
fn ls_and_stats_show_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let table = cacheness(dir.path(), &["ls"]);
    assert_code(&table, 0);
    assert!(stdout(&table).contains("4 entries"), "{}", stdout(&table));
    assert!(stdout(&table).contains("third letter"));

    let json = cacheness(dir.path(), &["ls", "--json", "--sort", "size"]);
    assert_code(&json, 0);
    let lines: Vec<serde_json::Value> = stdout(&json)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0]["key"],
        key!(name = "large").key().to_string(),
        "largest first"
    );

    let greek = cacheness(dir.path(), &["ls", "--json", "--prefix", "greek"]);
    assert_eq!(stdout(&greek).lines().count(), 1);

    let stats = cacheness(dir.path(), &["stats", "--json"]);
    assert_code(&stats, 0);
    let stats: serde_json::Value = serde_json::from_str(&stdout(&stats)).unwrap();
    assert_eq!(stats["entries"], 4);
    assert_code(&cacheness(dir.path(), &["stats"]), 0);
}

#[test]
fn get_rm_and_clear() {
    let dir = tempfile::tempdir().unwrap();
    let large = populated(dir.path());
    let out = dir.path().join("value.bin");
    let get = cacheness(dir.path(), &["get", &large, "-o", out.to_str().unwrap()]);
    assert_code(&get, 0);
    assert_eq!(fs::read(&out).unwrap().len(), 20_000);
    let small = cacheness(dir.path(), &["get", &key!(name = "a").key().to_string()]);
    assert_eq!(stdout(&small), "\"alpha\"", "the stored JSON of the value");

    assert_code(&cacheness(dir.path(), &["rm", &large]), 0);
    let again = cacheness(dir.path(), &["rm", &large]);
    assert_code(&again, 1);
    assert!(stderr(&again).contains(&large));
    assert_code(&cacheness(dir.path(), &["get", &large]), 1);

    assert_code(&cacheness(dir.path(), &["clear"]), 2);
    assert_code(&cacheness(dir.path(), &["clear", "--yes"]), 0);
    assert!(stdout(&cacheness(dir.path(), &["ls"])).contains("0 entries"));
}

#[test]
fn verify_finds_a_damaged_blob_and_repair_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    let large = populated(dir.path());
    assert_code(&cacheness(dir.path(), &["verify"]), 0);
    let shard = dir.path().join("blobs").join(&large[..2]);
    let blob = fs::read_dir(&shard)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&blob, bytes).unwrap();

    let damaged = cacheness(dir.path(), &["verify"]);
    assert_code(&damaged, 3);
    assert!(
        stdout(&damaged).contains(&format!("corrupted {large}")),
        "{}",
        stdout(&damaged)
    );
    assert_code(&cacheness(dir.path(), &["verify", "--repair"]), 0);
    let clean = cacheness(dir.path(), &["verify"]);
    assert_code(&clean, 0);
    assert!(
        stdout(&clean).contains("0 corrupted, 0 missing, 0 orphaned"),
        "{}",
        stdout(&clean)
    );
}

#[test]
fn gc_rebuild_and_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let large = populated(dir.path());
    assert_code(&cacheness(dir.path(), &["gc"]), 0);

    let migrated = cacheness(dir.path(), &["migrate", "--to", "json"]);
    assert_code(&migrated, 0);
    assert!(
        stdout(&migrated).contains(
            // json holds small values inline too: none moves to a blob file.
            "4 entries: 4 copied from sqlite to json, 0 already there, 0 moved to blob files"
        ),
        "{}",
        stdout(&migrated)
    );
    let json_ls = cacheness(dir.path(), &["--backend", "json", "ls", "--json"]);
    assert_eq!(stdout(&json_ls).lines().count(), 4);

    // Lose the sqlite metadata: the cache is json's now, so nothing changes, and
    // opening it with sqlite is an error, not a migration back.
    let remove_sqlite = || {
        for name in [
            "cache_metadata.db",
            "cache_metadata.db-wal",
            "cache_metadata.db-shm",
        ] {
            let _ = fs::remove_file(dir.path().join(name));
        }
    };
    remove_sqlite();
    assert_eq!(
        stdout(&cacheness(dir.path(), &["ls", "--json"]))
            .lines()
            .count(),
        4
    );
    let with_sqlite = cacheness(dir.path(), &["--backend", "sqlite", "ls", "--json"]);
    assert_code(&with_sqlite, 1);
    assert!(
        stderr(&with_sqlite).contains("uses the json backend"),
        "{}",
        stderr(&with_sqlite)
    );
    assert!(!dir.path().join("cache_metadata.db").exists());

    // Lose all metadata: rebuild brings back what lives in blob files, the
    // large value; the three small ones lived inline in the lost metadata.
    remove_sqlite();
    for name in ["metadata.json", "metadata.journal"] {
        let _ = fs::remove_file(dir.path().join(name));
    }
    let rebuilt = cacheness(dir.path(), &["--backend", "sqlite", "rebuild"]);
    assert_code(&rebuilt, 0);
    assert!(
        stdout(&rebuilt).contains("1 entries restored"),
        "{}",
        stdout(&rebuilt)
    );
    assert!(
        stdout(&rebuilt)
            .contains("stored inline in the lost metadata, if there were any, cannot be recovered"),
        "the rebuild says what it could not bring back: {}",
        stdout(&rebuilt)
    );
    let small = cacheness(
        dir.path(),
        &[
            "--backend",
            "sqlite",
            "get",
            &key!(name = "a").key().to_string(),
        ],
    );
    assert_code(&small, 1);
    let get = cacheness(dir.path(), &["--backend", "sqlite", "get", &large]);
    assert_code(&get, 0);
    assert_eq!(get.stdout.len(), 20_000);
}

#[test]
fn bad_input_gives_clear_errors_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does-not-exist");
    let output = cacheness(&missing, &["ls"]);
    assert_code(&output, 1);
    assert!(
        stderr(&output).contains("does-not-exist"),
        "{}",
        stderr(&output)
    );

    let empty = cacheness(dir.path(), &["ls"]);
    assert_code(&empty, 1);
    assert!(
        stderr(&empty).contains("no cache metadata"),
        "{}",
        stderr(&empty)
    );

    populated(dir.path());
    let unknown = cacheness(dir.path(), &["--backend", "redis", "ls"]);
    assert_code(&unknown, 1);
    assert!(
        stderr(&unknown).contains("unknown backend `redis`"),
        "{}",
        stderr(&unknown)
    );

    let malformed = cacheness(dir.path(), &["get", "not-a-key"]);
    assert_code(&malformed, 2);
    assert!(
        stderr(&malformed).contains("not-a-key"),
        "{}",
        stderr(&malformed)
    );

    assert_code(&cacheness(dir.path(), &["no-such-command"]), 2);
    let corrupt_db = tempfile::tempdir().unwrap();
    fs::write(
        corrupt_db.path().join("cache_metadata.db"),
        b"this is not a database at all, not even close",
    )
    .unwrap();
    let corrupt = cacheness(corrupt_db.path(), &["ls"]);
    assert_code(&corrupt, 1);
    assert!(
        stderr(&corrupt).contains("cache_metadata.db"),
        "{}",
        stderr(&corrupt)
    );
}

/// Every file under `dir` (relative paths), for checking a command left the dir
/// as it was.
fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for item in fs::read_dir(&next).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            files.push(
                path.strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    files.sort();
    files
}

fn blob_count(dir: &Path) -> usize {
    files_under(dir)
        .iter()
        .filter(|name| name.starts_with("blobs/") && name.matches('/').count() == 2)
        .count()
}

#[test]
fn backends_without_a_dir_are_refused_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let large = populated(dir.path());
    let blobs = blob_count(dir.path());
    assert_eq!(blobs, 1);
    let commands: [&[&str]; 10] = [
        &["ls"],
        &["stats"],
        &["get", &large],
        &["rm", &large],
        &["clear", "--yes"],
        &["verify"],
        &["verify", "--repair"],
        &["gc"],
        &["rebuild"],
        &["migrate", "--to", "json"],
    ];
    for backend in [
        "memory",
        "sqlite-memory",
        "memlayer+memory",
        "memlayer+sqlite-memory",
    ] {
        for command in commands {
            let output = cacheness(dir.path(), &[&["--backend", backend], command].concat());
            assert_code(&output, 1);
            assert!(
                stderr(&output).contains("cannot hold a cache dir's entries"),
                "{backend} {command:?}: {}",
                stderr(&output)
            );
        }
        let migrated = cacheness(dir.path(), &["migrate", "--to", backend]);
        assert_code(&migrated, 1);
        assert!(
            stderr(&migrated).contains(&format!("`{backend}`")),
            "{}",
            stderr(&migrated)
        );
    }
    assert_eq!(blob_count(dir.path()), blobs, "no blob file was removed");
    assert!(stdout(&cacheness(dir.path(), &["ls"])).contains("4 entries"));
    assert!(!dir.path().join("metadata.json").exists());
}

/// Moves every expiry in the cache's metadata a year later, as a hand edit
/// would; returns how many it moved.
fn edit_expiries(backend: &str, dir: &Path) -> usize {
    const YEAR_MS: u64 = 365 * 86_400_000;
    if backend == "sqlite" {
        let db = rusqlite::Connection::open(dir.join("cache_metadata.db")).unwrap();
        return db
            .execute(
                "UPDATE entries SET expires_at = expires_at + ?1 WHERE expires_at IS NOT NULL",
                [YEAR_MS as i64],
            )
            .unwrap();
    }
    let mut edited = 0;
    for name in ["metadata.json", "metadata.journal"] {
        let path = dir.join(name);
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let mut changed = String::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("\"expires_at\":") {
            let (before, after) = rest.split_at(at + "\"expires_at\":".len());
            changed.push_str(before);
            let digits = after.find(|c: char| !c.is_ascii_digit()).unwrap();
            if digits > 0 {
                let expires_at: u64 = after[..digits].parse().unwrap();
                changed.push_str(&(expires_at + YEAR_MS).to_string());
                edited += 1;
            }
            rest = &after[digits..];
        }
        changed.push_str(rest);
        fs::write(&path, changed).unwrap();
    }
    edited
}

/// A signed cache with an entry whose expiry was moved by hand in the metadata
/// (json's files, sqlite's row): verify reports it and get does not serve it.
#[test]
fn signed_caches_are_checked_with_their_key() {
    for backend in ["json", "sqlite"] {
        let dir = tempfile::tempdir().unwrap();
        let config = CacheConfig::new()
            .dir(dir.path())
            .backend(backend)
            .sign_entries(true);
        let cache = config.open().unwrap();
        cache.put(&key!(name = "honest"), &"kept").unwrap();
        cache
            .put_with(
                &key!(name = "edited"),
                &"expires soon",
                &PutOptions::new().ttl(std::time::Duration::from_secs(60)),
            )
            .unwrap();
        cache.flush().unwrap();
        drop(cache);
        assert!(dir.path().join("signing.key").exists());
        assert!(
            edit_expiries(backend, dir.path()) > 0,
            "{backend}: the expiry was found in the metadata"
        );

        let edited_key = key!(name = "edited").key().to_string();
        let verify = cacheness(dir.path(), &["verify"]);
        assert_code(&verify, 3);
        assert!(
            stdout(&verify).contains(&format!("corrupted {edited_key}")),
            "{backend}: {}",
            stdout(&verify)
        );
        let get = cacheness(dir.path(), &["get", &edited_key]);
        assert_code(&get, 1);
        assert!(get.stdout.is_empty(), "{backend}: served {}", stdout(&get));
        let honest = cacheness(
            dir.path(),
            &["get", &key!(name = "honest").key().to_string()],
        );
        assert_code(&honest, 0);
        assert_eq!(stdout(&honest), "\"kept\"", "{backend}");
    }
}

/// `sign` creates the key (the only command that does) and signs the entries
/// an unsigned cache holds; later unsigned puts are signed by the next run,
/// and an entry edited by hand is refused, not signed.
#[test]
fn sign_signs_unsigned_entries_in_place() {
    for backend in ["json", "sqlite"] {
        let dir = tempfile::tempdir().unwrap();
        let unsigned = |dir: &Path| CacheConfig::new().dir(dir).backend(backend).open().unwrap();
        let cache = unsigned(dir.path());
        cache.put(&key!(name = "a"), &"alpha").unwrap();
        let large: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        cache.put_bytes(&key!(name = "large"), &large).unwrap();
        cache.flush().unwrap();
        drop(cache);

        let signed = cacheness(dir.path(), &["sign"]);
        assert_code(&signed, 0);
        assert!(
            stdout(&signed).contains("created ")
                && stdout(&signed).contains("2 entries: 2 signed now, 0 already signed, 0 refused"),
            "{backend}: {}",
            stdout(&signed)
        );
        let key_file = dir.path().join("signing.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{backend}");
        }
        assert_code(&cacheness(dir.path(), &["verify"]), 0);
        let get = cacheness(
            dir.path(),
            &["get", &key!(name = "large").key().to_string()],
        );
        assert_code(&get, 0);
        assert_eq!(get.stdout, large, "{backend}");

        // An unsigned writer is refused on a signed dir now; an old program
        // that ignored the key files (played by moving them aside) could still
        // write: verify reports its entries, sign signs them.
        let error = CacheConfig::new()
            .dir(dir.path())
            .backend(backend)
            .open()
            .unwrap_err();
        assert!(
            error.to_string().contains("signing.key"),
            "{backend}: {error}"
        );
        for name in ["signing.key", "signing.id"] {
            let _ = fs::rename(
                dir.path().join(name),
                dir.path().join(format!("{name}.aside")),
            );
        }
        let cache = unsigned(dir.path());
        cache.put(&key!(name = "b"), &"beta").unwrap();
        cache
            .put_with(
                &key!(name = "edited"),
                &"expires soon",
                &PutOptions::new().ttl(std::time::Duration::from_secs(60)),
            )
            .unwrap();
        cache.flush().unwrap();
        drop(cache);
        for name in ["signing.key", "signing.id"] {
            let _ = fs::rename(
                dir.path().join(format!("{name}.aside")),
                dir.path().join(name),
            );
        }
        let b_key = key!(name = "b").key().to_string();
        let verify = cacheness(dir.path(), &["verify"]);
        assert_code(&verify, 3);
        assert!(
            stdout(&verify).contains(&format!("corrupted {b_key}")),
            "{backend}: {}",
            stdout(&verify)
        );
        assert_code(&cacheness(dir.path(), &["sign"]), 0);
        assert_code(&cacheness(dir.path(), &["verify"]), 0);
        assert_eq!(
            stdout(&cacheness(dir.path(), &["get", &b_key])),
            "\"beta\"",
            "{backend}"
        );

        // Signed, then edited by hand: sign refuses it and says why.
        assert!(edit_expiries(backend, dir.path()) > 0);
        let edited_key = key!(name = "edited").key().to_string();
        let again = cacheness(dir.path(), &["sign"]);
        assert_code(&again, 3);
        assert!(
            stdout(&again).contains("0 signed now, 3 already signed, 1 refused")
                && stdout(&again).contains(&format!("refused   {edited_key}: ")),
            "{backend}: {}",
            stdout(&again)
        );
        let verify = cacheness(dir.path(), &["verify"]);
        assert_code(&verify, 3);
        assert!(
            stdout(&verify).contains(&format!("corrupted {edited_key}")),
            "{backend}: {}",
            stdout(&verify)
        );
    }
}

#[test]
fn the_cli_never_creates_a_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let large = populated(dir.path());
    for command in [
        &["ls"][..],
        &["stats"],
        &["get", &large],
        &["verify"],
        &["verify", "--repair"],
        &["gc"],
        &["rebuild"],
    ] {
        assert_code(&cacheness(dir.path(), command), 0);
    }
    assert!(!dir.path().join("signing.key").exists());
}

#[cfg(unix)]
#[test]
fn a_signing_key_that_is_a_symlink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("key");
    fs::write(&target, [7u8; 32]).unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("signing.key")).unwrap();
    let ls = cacheness(dir.path(), &["ls"]);
    assert_code(&ls, 1);
    assert!(
        stderr(&ls).contains("signing.key: is not a regular file"),
        "{}",
        stderr(&ls)
    );
}

#[test]
fn text_from_the_cache_is_printed_with_control_characters_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CacheConfig::new()
        .dir(dir.path())
        .backend("sqlite")
        .open()
        .unwrap();
    let prefix = "p\u{1b}[31m";
    let description =
        "x\n0123456789abcdef0123456789abcdef  fake\u{1b}]0;title\u{7}\u{202e}\u{9b}2J";
    cache
        .put_with(
            &key!(name = "hostile"),
            &1,
            &PutOptions::new().prefix(prefix).description(description),
        )
        .unwrap();
    drop(cache);

    let table = cacheness(dir.path(), &["ls"]);
    assert_code(&table, 0);
    let text = stdout(&table);
    for raw in ['\u{1b}', '\u{7}', '\u{202e}', '\u{9b}'] {
        assert!(!text.contains(raw), "{raw:?} printed raw: {text:?}");
    }
    assert_eq!(
        text.lines().count(),
        3,
        "a header, one row, the count: {text}"
    );
    assert!(text.contains("p\\u{1b}[31m"), "{text}");
    assert!(text.contains("x\\n0123"), "{text}");

    let json = cacheness(dir.path(), &["ls", "--json"]);
    assert_code(&json, 0);
    assert_eq!(stdout(&json).lines().count(), 1);
    let entry: serde_json::Value = serde_json::from_str(stdout(&json).trim()).unwrap();
    assert_eq!(entry["prefix"], prefix, "JSON carries the text as it is");
    assert_eq!(entry["description"], description);
    assert!(!stdout(&json).contains('\u{1b}'), "serde escapes controls");

    let planted = dir.path().join("no\u{1b}[2Jsuch");
    let missing = cacheness(&planted, &["ls"]);
    assert_code(&missing, 1);
    assert!(!stderr(&missing).contains('\u{1b}'), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("no\\u{1b}[2Jsuch: no such directory"),
        "{}",
        stderr(&missing)
    );
}

#[cfg(unix)]
#[test]
fn get_output_is_private_whole_and_never_through_a_symlink() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let dir = tempfile::tempdir().unwrap();
    let large = populated(dir.path());
    let out_dir = tempfile::tempdir().unwrap();
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;

    let fresh = out_dir.path().join("fresh.bin");
    assert_code(
        &cacheness(dir.path(), &["get", &large, "-o", fresh.to_str().unwrap()]),
        0,
    );
    assert_eq!(fs::read(&fresh).unwrap().len(), 20_000);
    assert_eq!(mode(&fresh), 0o600);

    let existing = out_dir.path().join("existing.bin");
    fs::write(&existing, b"old").unwrap();
    fs::set_permissions(&existing, fs::Permissions::from_mode(0o644)).unwrap();
    assert_code(
        &cacheness(
            dir.path(),
            &["get", &large, "-o", existing.to_str().unwrap()],
        ),
        0,
    );
    assert_eq!(fs::read(&existing).unwrap().len(), 20_000);
    assert_eq!(mode(&existing), 0o600, "replaced by a private file");

    let target = out_dir.path().join("target");
    fs::write(&target, b"untouched").unwrap();
    let link = out_dir.path().join("link.bin");
    symlink(&target, &link).unwrap();
    let through = cacheness(dir.path(), &["get", &large, "-o", link.to_str().unwrap()]);
    assert_code(&through, 1);
    assert!(
        stderr(&through).contains("symbolic link"),
        "{}",
        stderr(&through)
    );
    assert_eq!(fs::read(&target).unwrap(), b"untouched");
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // A write that fails half-way (the file size limit, with SIGXFSZ ignored so
    // the write returns EFBIG) leaves neither a partial file nor a temp file. A
    // json cache: SQLite's shared-memory file is larger than the limit.
    let json_dir = tempfile::tempdir().unwrap();
    let value: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    CacheConfig::new()
        .dir(json_dir.path())
        .backend("json")
        .open()
        .unwrap()
        .put_bytes(&key!(name = "large"), &value)
        .unwrap();
    let partial = out_dir.path().join("partial.bin");
    let limited = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 8; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_cacheness"))
        .arg("--dir")
        .arg(json_dir.path())
        .args(["get", &large, "-o"])
        .arg(&partial)
        .output()
        .unwrap();
    assert_code(&limited, 1);
    assert!(
        stderr(&limited).contains("partial.bin: File too large"),
        "{}",
        stderr(&limited)
    );
    assert!(!partial.exists(), "no partial output file");
    let left: Vec<_> = fs::read_dir(out_dir.path())
        .unwrap()
        .map(|item| item.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 4, "no temp file left: {left:?}");
}

#[test]
fn a_backend_other_than_the_dirs_is_an_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let before = files_under(dir.path());
    let json = cacheness(dir.path(), &["--backend", "json", "ls"]);
    assert_code(&json, 1);
    assert!(
        stderr(&json).contains("sqlite") && stderr(&json).contains("cacheness migrate --to json"),
        "{}",
        stderr(&json)
    );
    for command in [&["gc"][..], &["verify", "--repair"], &["rebuild"]] {
        let output = cacheness(dir.path(), &[&["--backend", "json"], command].concat());
        assert_code(&output, 1);
    }
    assert_eq!(files_under(dir.path()), before, "no json metadata appeared");
    assert_code(&cacheness(dir.path(), &["--backend", "memory", "ls"]), 1);
    assert_code(&cacheness(dir.path(), &["--backend", "sqlite", "ls"]), 0);
    assert_code(
        &cacheness(dir.path(), &["--backend", "memlayer+sqlite", "ls"]),
        0,
    );

    let same = cacheness(dir.path(), &["migrate", "--to", "sqlite"]);
    assert_code(&same, 1);
    assert!(stderr(&same).contains("already"), "{}", stderr(&same));

    assert_code(&cacheness(dir.path(), &["migrate", "--to", "json"]), 0);
    let listed = cacheness(dir.path(), &["ls", "--json"]);
    assert_code(&listed, 0);
    assert_eq!(stdout(&listed).lines().count(), 4, "ls now reads json");
    let sqlite = cacheness(dir.path(), &["--backend", "sqlite", "ls"]);
    assert_code(&sqlite, 1);
    assert!(stderr(&sqlite).contains("json"), "{}", stderr(&sqlite));
    assert_code(&cacheness(dir.path(), &["migrate", "--to", "json"]), 1);
}

#[test]
fn dir_errors_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, b"not a dir").unwrap();
    let output = cacheness(&file, &["ls"]);
    assert_code(&output, 1);
    assert!(
        stderr(&output).contains("a-file: is not a directory"),
        "{}",
        stderr(&output)
    );
    let missing = cacheness(&dir.path().join("gone"), &["ls"]);
    assert_code(&missing, 1);
    assert!(
        stderr(&missing).contains("gone: no such directory"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn rebuild_recovers_a_dir_that_has_only_blob_files() {
    for backend in [None, Some("sqlite"), Some("json")] {
        let dir = tempfile::tempdir().unwrap();
        let large = populated(dir.path());
        for name in [
            "cache_metadata.db",
            "cache_metadata.db-wal",
            "cache_metadata.db-shm",
        ] {
            let _ = fs::remove_file(dir.path().join(name));
        }
        assert_eq!(blob_count(dir.path()), 1);
        // Nothing but rebuild works on it: gc would take every blob for an orphan.
        let gc = cacheness(dir.path(), &["gc"]);
        assert_code(&gc, 1);
        assert!(
            stderr(&gc).contains("no cache metadata found"),
            "{}",
            stderr(&gc)
        );
        assert_eq!(blob_count(dir.path()), 1, "gc removed no blob");

        let mut args = Vec::new();
        if let Some(backend) = backend {
            args.extend(["--backend", backend]);
        }
        args.push("rebuild");
        let rebuilt = cacheness(dir.path(), &args);
        assert_code(&rebuilt, 0);
        assert!(
            stdout(&rebuilt).contains("1 entries restored, 0 already present"),
            "{backend:?}: {}",
            stdout(&rebuilt)
        );
        let expected = if backend == Some("json") {
            "metadata.json"
        } else {
            "cache_metadata.db"
        };
        assert!(
            dir.path().join(expected).exists() || backend == Some("json"),
            "{backend:?}: {expected}"
        );
        let get = cacheness(dir.path(), &["get", &large]);
        assert_code(&get, 0);
        assert_eq!(get.stdout.len(), 20_000, "{backend:?}");
    }
}

/// Every file under `dir` with its length and content hash.
fn snapshot(dir: &Path) -> Vec<(String, u64, String)> {
    files_under(dir)
        .into_iter()
        .filter(|name| dir.join(name).is_file())
        .map(|name| {
            let bytes = fs::read(dir.join(&name)).unwrap();
            let hash = blake3::hash(&bytes).to_hex().to_string();
            (name, bytes.len() as u64, hash)
        })
        .collect()
}

#[test]
fn read_commands_leave_the_dir_as_it_was() {
    for backend in ["json", "sqlite"] {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheConfig::new()
            .dir(dir.path())
            .backend(backend)
            .open()
            .unwrap();
        cache.put(&key!(name = "small"), &"small").unwrap();
        let large: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        cache.put_bytes(&key!(name = "large"), &large).unwrap();
        cache.flush().unwrap();
        drop(cache);
        let before = snapshot(dir.path());
        let large_key = key!(name = "large").key().to_string();
        let small_key = key!(name = "small").key().to_string();
        for command in [
            &["ls"][..],
            &["ls", "--json"],
            &["stats"],
            &["get", &large_key],
            &["get", &small_key],
            &["get", &key!(name = "absent").key().to_string()],
            &["verify"],
        ] {
            let output = cacheness(dir.path(), command);
            assert!(
                output.status.code() != Some(2),
                "{backend} {command:?}: {}",
                stderr(&output)
            );
            assert_eq!(
                snapshot(dir.path()),
                before,
                "{backend}: `cacheness {}` changed the dir",
                command.join(" ")
            );
        }
    }
}

/// A migration from sqlite to json killed after it created json's metadata:
/// the in-progress marker names it. A maintenance command run then must leave
/// a dir that still opens, with every entry, and that `migrate` can finish.
#[test]
fn a_command_after_an_interrupted_migration_keeps_the_dir_usable() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    drop(cacheness::backend::open_backend("json", Some(dir.path())).unwrap());
    fs::write(dir.path().join(".cacheness-migrating"), "sqlite -> json\n").unwrap();
    assert!(
        dir.path().join("metadata.journal").exists() || dir.path().join("metadata.json").exists()
    );

    let listed = cacheness(dir.path(), &["ls", "--json"]);
    assert_code(&listed, 0);
    assert_eq!(
        stdout(&listed).lines().count(),
        4,
        "read from sqlite, still current"
    );

    let gc = cacheness(dir.path(), &["gc"]);
    assert!(
        gc.status.success() || stderr(&gc).contains("migrat"),
        "gc either runs or names the unfinished migration: {}",
        stderr(&gc)
    );
    let after = cacheness(dir.path(), &["ls", "--json"]);
    assert_code(&after, 0);
    assert_eq!(stdout(&after).lines().count(), 4);

    let migrated = cacheness(dir.path(), &["migrate", "--to", "json"]);
    assert_code(&migrated, 0);
    let json = cacheness(dir.path(), &["--backend", "json", "ls", "--json"]);
    assert_code(&json, 0);
    assert_eq!(stdout(&json).lines().count(), 4);
}

/// A blob file no entry refers to: kept while younger than the grace period
/// (it may be a put in progress), reported and removed with `--grace 0`.
#[test]
fn gc_and_verify_spare_young_unreferenced_blobs_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let large = populated(dir.path());
    let shard = dir.path().join("blobs").join(&large[..2]);
    let blob = fs::read_dir(&shard)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let stray = shard.join(format!("{large}-00000000000000ff"));
    fs::copy(&blob, &stray).unwrap();

    let verify = cacheness(dir.path(), &["verify"]);
    assert_code(&verify, 0);
    let gc = cacheness(dir.path(), &["gc"]);
    assert_code(&gc, 0);
    assert!(stdout(&gc).contains(" 0 orphaned blobs"), "{}", stdout(&gc));
    assert!(stray.exists(), "young: maybe a put in progress");

    let verify = cacheness(dir.path(), &["verify", "--grace", "0"]);
    assert_code(&verify, 3);
    assert!(
        stdout(&verify).contains("1 orphaned files"),
        "{}",
        stdout(&verify)
    );
    assert_code(&cacheness(dir.path(), &["gc", "--grace", "1h"]), 0);
    assert!(stray.exists());
    let gc = cacheness(dir.path(), &["gc", "--grace", "0s"]);
    assert_code(&gc, 0);
    assert!(stdout(&gc).contains(" 1 orphaned blobs"), "{}", stdout(&gc));
    assert!(!stray.exists());
    assert!(blob.exists(), "the entry's own blob stays");
    assert_code(&cacheness(dir.path(), &["gc", "--grace", "soon"]), 2);
}

/// An entry the backend cannot decode (json: its journal line; sqlite: its
/// row): verify lists it with the reason, `--repair` removes it, and the rest
/// of the cache is served throughout.
#[test]
fn verify_reports_unreadable_entries_and_repair_removes_them() {
    for backend in ["json", "sqlite"] {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheConfig::new()
            .dir(dir.path())
            .backend(backend)
            .open()
            .unwrap();
        for name in ["a", "b", "c"] {
            cache.put(&key!(name = name), &name).unwrap();
        }
        cache.flush().unwrap();
        drop(cache);
        let bad = key!(name = "a").key();
        if backend == "sqlite" {
            let db = rusqlite::Connection::open(dir.path().join("cache_metadata.db")).unwrap();
            let changed = db
                .execute(
                    "UPDATE entries SET compression = 'bogus\u{1b}[2J' WHERE key = ?1",
                    [bad.as_bytes().to_vec()],
                )
                .unwrap();
            assert_eq!(changed, 1);
        } else {
            let journal = dir.path().join("metadata.journal");
            let text = fs::read_to_string(&journal).unwrap();
            let needle = format!("\"key\":\"{bad}\"");
            let edited: Vec<String> = text
                .lines()
                .map(|line| {
                    if line.contains(&needle) {
                        line.replace("\"compression\":\"", "\"compression\":\"bogus\\u001b[2J")
                    } else {
                        line.to_owned()
                    }
                })
                .collect();
            assert_ne!(
                edited.join("\n"),
                text.trim_end(),
                "the entry's line was found"
            );
            fs::write(&journal, edited.join("\n") + "\n").unwrap();
        }

        let verify = cacheness(dir.path(), &["verify"]);
        assert_code(&verify, 3);
        assert!(
            stdout(&verify).contains("1 unreadable entries")
                && stdout(&verify).contains(&format!("unreadable {bad}: ")),
            "{backend}: {}",
            stdout(&verify)
        );
        assert!(!stdout(&verify).contains('\u{1b}'), "{}", stdout(&verify));
        let b = cacheness(dir.path(), &["get", &key!(name = "b").key().to_string()]);
        assert_eq!(stdout(&b), "\"b\"", "{backend}: {}", stderr(&b));
        assert_code(&cacheness(dir.path(), &["verify", "--repair"]), 0);
        let clean = cacheness(dir.path(), &["verify"]);
        assert_code(&clean, 0);
        assert!(
            stdout(&clean).contains("2 entries"),
            "{backend}: {}",
            stdout(&clean)
        );
    }
}

/// A cache signed with a key its program passes keeps only a fingerprint
/// (`signing.id`): the CLI says it cannot check signatures, and `sign` refuses
/// to make a key of its own that would disagree with the record.
#[test]
fn a_cache_signed_with_a_programs_key_is_not_given_another() {
    let dir = tempfile::tempdir().unwrap();
    let backend = cacheness::backend::SqliteBackend::open(dir.path()).unwrap();
    let cache = cacheness::Cache::builder()
        .dir(dir.path())
        .signing_key([7; 32])
        .open(backend)
        .unwrap();
    cache.put(&key!(name = "a"), &"alpha").unwrap();
    drop(cache);
    assert!(dir.path().join("signing.id").exists());

    let ls = cacheness(dir.path(), &["ls"]);
    assert_code(&ls, 0);
    assert!(
        stderr(&ls).contains("signing.id") && stderr(&ls).contains("not checked"),
        "{}",
        stderr(&ls)
    );
    let sign = cacheness(dir.path(), &["sign"]);
    assert_code(&sign, 1);
    assert!(stderr(&sign).contains("signing.id"), "{}", stderr(&sign));
    assert!(!dir.path().join("signing.key").exists());
    // Commands that write would write unsigned entries: refused, naming why.
    for command in [&["gc"][..], &["verify", "--repair"], &["clear", "--yes"]] {
        let refused = cacheness(dir.path(), command);
        assert_code(&refused, 1);
        assert!(
            stderr(&refused).contains("must run in that program"),
            "{command:?}: {}",
            stderr(&refused)
        );
    }
    assert_eq!(
        stdout(&cacheness(dir.path(), &["ls", "--json"]))
            .lines()
            .count(),
        1
    );
}

/// While a rebuild marker says the metadata is being filled, verify leaves
/// orphans alone and says so, and does not call the cache clean.
#[test]
fn verify_says_when_it_left_orphans_unchecked() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    fs::write(dir.path().join(".cacheness-rebuilding"), "").unwrap();
    let verify = cacheness(dir.path(), &["verify"]);
    assert_code(&verify, 3);
    assert!(
        stdout(&verify).contains("orphaned files not checked"),
        "{}",
        stdout(&verify)
    );
    assert!(
        stdout(&verify).contains(".cacheness-rebuilding"),
        "{}",
        stdout(&verify)
    );
    // A command that opens the cache for writing finishes the rebuild first
    // (the marker was left by a killed one), so gc then checks everything.
    let gc = cacheness(dir.path(), &["gc", "--grace", "0"]);
    assert_code(&gc, 0);
    assert!(!stdout(&gc).contains("not checked"), "{}", stdout(&gc));
    assert!(!dir.path().join(".cacheness-rebuilding").exists());
    assert_code(&cacheness(dir.path(), &["verify"]), 0);
}

/// `gc --max-size` evicts in the order `--eviction` names: `a`, stored first and
/// read three times (`b` and `c` once), goes first under lrs and stays under lfu.
#[test]
fn gc_evicts_in_the_order_eviction_names() {
    for (policy, evicted) in [("lrs", "a"), ("lfu", "b")] {
        let dir = tempfile::tempdir().unwrap();
        // Each put and read a second apart: entries stored or read within one
        // millisecond tie, and a tie is ordered by key, not by arrival.
        let clock = std::sync::Arc::new(cacheness::ManualClock::new(1_000_000));
        let cache = CacheConfig::new()
            .dir(dir.path())
            .backend("sqlite")
            .access_granularity(std::time::Duration::ZERO)
            .open_with_clock(clock.clone())
            .unwrap();
        for (name, seed) in [("a", 1u8), ("b", 2), ("c", 3)] {
            clock.advance(std::time::Duration::from_secs(1));
            let value: Vec<u8> = (0..10_000u32)
                .flat_map(|i| *blake3::hash(&[&i.to_le_bytes()[..], &[seed]].concat()).as_bytes())
                .take(10_000)
                .collect();
            cache.put_bytes(&key!(name = name), &value).unwrap();
        }
        for name in ["a", "a", "a", "b", "c"] {
            clock.advance(std::time::Duration::from_secs(1));
            assert!(cache.get_bytes(&key!(name = name)).unwrap().is_some());
        }
        drop(cache);
        let args = ["gc", "--max-size", "25000", "--eviction", policy];
        assert_code(&cacheness(dir.path(), &args), 0);
        let cache = CacheConfig::new()
            .dir(dir.path())
            .backend("sqlite")
            .open()
            .unwrap();
        for name in ["a", "b", "c"] {
            assert_eq!(
                cache.contains(&key!(name = name)).unwrap(),
                name != evicted,
                "{policy}: {name}"
            );
        }
    }
}

/// `settings` shows and changes the settings stored in the dir, and `gc`
/// without `--max-size` applies the stored limit.
#[test]
fn settings_are_shown_changed_and_applied_by_gc() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CacheConfig::new()
        .dir(dir.path())
        .backend("sqlite")
        .open()
        .unwrap();
    for index in 0..4u32 {
        // Incompressible: each value stores 10 000 bytes.
        let value: Vec<u8> = (0..10_000u32)
            .flat_map(|i| *blake3::hash(&(i + index * 10_000).to_le_bytes()).as_bytes())
            .take(10_000)
            .collect();
        cache.put_bytes(&key!(index = index), &value).unwrap();
    }
    drop(cache);
    // A dir from before settings were stored: gc's one-run limit is not kept.
    fs::remove_file(dir.path().join("settings.json")).unwrap();
    let gc = cacheness(
        dir.path(),
        &["gc", "--max-size", "1000000", "--eviction", "lfu"],
    );
    assert_code(&gc, 0);
    let shown = cacheness(dir.path(), &["settings"]);
    assert_code(&shown, 0);
    assert!(
        stdout(&shown).contains("max size     none"),
        "{}",
        stdout(&shown)
    );
    assert!(
        stdout(&shown).contains("eviction     lru"),
        "{}",
        stdout(&shown)
    );

    let changed = cacheness(
        dir.path(),
        &[
            "settings",
            "--max-size",
            "25000",
            "--eviction",
            "lrs",
            "--default-ttl",
            "24h",
        ],
    );
    assert_code(&changed, 0);
    let text = stdout(&changed);
    assert!(text.contains("max size     25000 bytes"), "{text}");
    assert!(text.contains("eviction     lrs"), "{text}");
    assert!(text.contains("default ttl  1d"), "{text}");

    assert_code(&cacheness(dir.path(), &["gc"]), 0);
    let cache = CacheConfig::new()
        .dir(dir.path())
        .backend("sqlite")
        .open()
        .unwrap();
    let stats = cache.stats().unwrap();
    assert!(
        stats.total_size <= 25_000,
        "gc applied the stored limit: {stats:?}"
    );
    assert_eq!(stats.max_size, Some(25_000));

    for bad in ["lots", "0"] {
        let refused = cacheness(dir.path(), &["settings", "--max-size", bad]);
        assert_code(&refused, 2);
    }
}
