//! `cacheness`: inspect, verify, clean up and migrate a cache directory.
//!
//! ```text
//! cacheness --dir DIR [--backend NAME] <command>
//! ```
//!
//! Commands that only read (`ls`, `stats`, `get`, `verify` without `--repair`)
//! open the cache read-only. No command migrates a cache between backends except
//! `migrate`: a `--backend` that disagrees with the metadata in the dir is an
//! error. A backend that keeps its metadata in memory (`memory`,
//! `sqlite-memory`) is refused: it cannot hold the dir's entries. When the dir
//! holds `signing.key`, entries are checked against it; only `sign` creates one.
//! `gc` and `verify` spare unreferenced files younger than `--grace` (1 h), which
//! may be puts in progress in other processes. Text from the cache (prefixes,
//! descriptions, names, paths) is printed with control characters escaped.
//!
//! Exit codes: 0 success; 1 an error (named on stderr with its path and cause,
//! including a `--backend` the dir cannot be opened with); 2 bad usage (unknown
//! command or option, malformed key, missing confirmation); 3 `verify` found
//! damage (without `--repair`), or `sign` left entries it could not sign.

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cacheness::{
    CacheConfig, CacheKey, Codec, Entry, EvictionPolicy, ListOptions, ListedEntry, NamedCodec,
    Stats,
    ops::{CacheSettings, GcOptions, Progress, VerifyOptions, read_settings, write_settings},
};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

/// Inspect and operate a cacheness cache directory.
#[derive(Debug, Parser)]
#[command(name = "cacheness", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// The cache directory (it must exist).
    #[arg(long, short = 'd', global = true, env = "CACHENESS_DIR")]
    dir: Option<PathBuf>,
    /// The metadata backend, `json` or `sqlite`; by default the dir's.
    ///
    /// A backend other than the one whose metadata is in the dir is an error
    /// (switch with `migrate`); `memlayer+NAME` means NAME; memory backends are
    /// refused. `rebuild` in a dir without metadata uses it, or sqlite.
    #[arg(long, short = 'b', global = true)]
    backend: Option<String>,
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 ok; 1 error (including a --backend that is not the dir's \
     or cannot hold its entries: memory, sqlite-memory); 2 usage; 3 verify found damage, or sign \
     left entries unsigned.";

#[derive(Debug, Subcommand)]
enum Command {
    /// List entries.
    Ls {
        /// Only entries with this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Order of the listing (default: by key).
        #[arg(long, value_enum)]
        sort: Option<SortBy>,
    },
    /// Show entry count, size and hit/miss counters.
    Stats {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write an entry's stored value to stdout or a file: as encoded
    /// (decompressed), except that a value of a binary codec (msgpack) is
    /// shown on stdout as JSON.
    Get {
        /// The key: 32 hex characters.
        #[arg(value_parser = parse_key)]
        key: CacheKey,
        /// Write to this file instead of stdout.
        ///
        /// Written private (0600) to a temp file beside it, then renamed into
        /// place; a symlink there is refused.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Show the settings stored in the cache dir (size limit, default TTL,
    /// eviction policy, codec, signing), or change them. Every process that
    /// opens the cache without its own value for a setting uses the stored one,
    /// and so do `gc` and the other commands.
    Settings {
        /// The size limit in bytes, or `none`.
        #[arg(long, value_parser = parse_optional_u64)]
        max_size: Option<OrNone<u64>>,
        /// The TTL of entries put without their own (90s, 15m, 24h, 7d), or `none`.
        #[arg(long, value_parser = parse_optional_duration)]
        default_ttl: Option<OrNone<Duration>>,
        /// Which entries the size limit evicts first: lru, lrs or lfu.
        #[arg(long)]
        eviction: Option<EvictionPolicy>,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove entries.
    Rm {
        /// Keys: 32 hex characters each.
        #[arg(required = true, value_parser = parse_key)]
        keys: Vec<CacheKey>,
    },
    /// Remove every entry.
    Clear {
        /// Confirm.
        #[arg(long)]
        yes: bool,
    },
    /// Check every entry's bytes; report corrupted, missing and orphaned files.
    Verify {
        /// Remove damaged entries and orphaned files.
        #[arg(long)]
        repair: bool,
        /// How old a blob file no entry refers to must be to count as orphaned
        /// (default 1h): a younger one may be a put in progress.
        ///
        /// A number of seconds or a duration such as 90s, 15m, 24h. 0 counts
        /// every unreferenced file: only when nothing else writes to the cache.
        #[arg(long, value_parser = parse_duration)]
        grace: Option<Duration>,
    },
    /// Remove expired entries, orphaned blobs and stray temp files; enforce the size limit.
    Gc {
        /// The size limit to enforce, in bytes (default: the cache's stored
        /// one, see `settings`).
        #[arg(long)]
        max_size: Option<u64>,
        /// Which entries the size limit evicts first once the expired ones are
        /// gone: lru (least recently read), lrs (least recently stored) or lfu
        /// (least frequently read). Default: the cache's stored policy.
        #[arg(long)]
        eviction: Option<EvictionPolicy>,
        /// How old an unreferenced blob or a temp file must be to be removed
        /// (default 1h): a younger one may be a put in progress.
        ///
        /// A number of seconds or a duration such as 90s, 15m, 24h. 0 removes
        /// them whatever their age: only when nothing else writes to the cache.
        #[arg(long, value_parser = parse_duration)]
        grace: Option<Duration>,
    },
    /// Recreate metadata from the blob files' headers.
    ///
    /// Also in a dir whose metadata was lost: with --backend, or sqlite.
    Rebuild,
    /// Sign the entries that have no signature yet, with the dir's signing key.
    ///
    /// Creates `signing.key` (0600, random) if the dir has none: the only
    /// command that does. Entries whose signature does not match, or whose
    /// bytes fail their checks, are left as they are and listed (exit code 3).
    Sign,
    /// Switch the cache to another disk backend.
    ///
    /// Copies every entry's metadata to it, in the same directory, under the
    /// lock and markers an open's migration uses; afterwards the dir opens with
    /// it. The old metadata stays in place.
    Migrate {
        /// The target backend: `json` or `sqlite`, not the current one.
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SortBy {
    Accessed,
    Size,
    Created,
}

fn parse_key(text: &str) -> Result<CacheKey, String> {
    text.parse::<CacheKey>().map_err(|error| error.to_string())
}

/// `90`, `90s`, `250ms`, `15m`, `24h`, `7d`.
/// A setting's value, or `none` to have none.
#[derive(Debug, Clone, Copy)]
struct OrNone<T>(Option<T>);

fn parse_optional_u64(text: &str) -> Result<OrNone<u64>, String> {
    match text.trim() {
        "none" => Ok(OrNone(None)),
        number => match number.parse::<u64>() {
            Ok(0) => Err("0 would hold nothing; give a positive size or `none`".into()),
            Ok(bytes) => Ok(OrNone(Some(bytes))),
            Err(_) => Err(format!("`{text}` is not a number of bytes or `none`")),
        },
    }
}

fn parse_optional_duration(text: &str) -> Result<OrNone<Duration>, String> {
    match text.trim() {
        "none" => Ok(OrNone(None)),
        duration => parse_duration(duration).map(|ttl| OrNone(Some(ttl))),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 90s, 15m or 24h"))?;
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => return Err(format!("unknown unit `{other}` (use ms, s, m, h or d)")),
    };
    Duration::try_from_secs_f64(number * scale)
        .map_err(|_| format!("`{text}` is not a duration of zero or more"))
}

/// An error to report: the message, and the exit code.
struct Failure(String, u8);

impl<E: std::error::Error> From<E> for Failure {
    /// The error and its causes on one line, each cause once.
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !message.contains(&cause_text) {
                message.push_str(": ");
                message.push_str(&cause_text);
            }
            source = cause.source();
        }
        Failure(message, 1)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(Failure(message, code)) => {
            eprintln!("cacheness: {}", shown(&message));
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let dir = cli.dir.ok_or_else(|| {
        Failure(
            "no cache directory: pass --dir DIR or set CACHENESS_DIR".into(),
            2,
        )
    })?;
    check_dir(&dir)?;
    let requested = cli.backend.as_deref().map(disk_backend).transpose()?;
    let current = current_backend(&dir)?;
    if let Command::Migrate { to } = &cli.command {
        return migrate(&dir, requested, current, to);
    }
    if let Command::Settings {
        max_size,
        default_ttl,
        eviction,
        json,
    } = &cli.command
    {
        return settings(&dir, *max_size, *default_ttl, *eviction, *json);
    }
    let backend = match (current, requested) {
        (Some(current), Some(requested)) if current != requested => {
            return Err(Failure(
                format!(
                    "{}: the cache uses the {current} backend, not {requested}; \
                     leave out --backend, or switch the cache with `cacheness migrate --to {requested}`",
                    shown_path(&dir)
                ),
                1,
            ));
        }
        (Some(current), _) => current,
        // Only rebuild may create metadata: it is the command for a dir whose
        // metadata was lost. Any other command on such a dir would see no
        // entries, and gc would delete every blob file as an orphan.
        (None, requested) if matches!(cli.command, Command::Rebuild) => {
            requested.unwrap_or("sqlite")
        }
        (None, _) => {
            return Err(Failure(
                format!(
                    "{}: no cache metadata found (run `cacheness rebuild` to recover \
                     entries from the blob files)",
                    shown_path(&dir)
                ),
                1,
            ));
        }
    };
    let (max_size, eviction) = match &cli.command {
        Command::Gc {
            max_size, eviction, ..
        } => (*max_size, *eviction),
        _ => (None, None),
    };
    let read_only = match &cli.command {
        Command::Ls { .. } | Command::Stats { .. } | Command::Get { .. } => true,
        Command::Verify { repair, .. } => !repair,
        _ => false,
    };
    let key_present = signing_key_present(&dir)?;
    let key_id = dir.join("signing.id");
    if !key_present && std::fs::symlink_metadata(&key_id).is_ok() {
        // Signed with a key its program passes (the dir keeps only a
        // fingerprint): the CLI has no key to check signatures with, and
        // entries it wrote unsigned would be hidden from that program.
        if !read_only && !matches!(cli.command, Command::Sign) {
            return Err(Failure(
                format!(
                    "{}: the cache is signed with a key its program holds; commands that \
                     write must run in that program (ls, stats, get and verify work here)",
                    shown_path(&key_id)
                ),
                1,
            ));
        }
        eprintln!(
            "cacheness: warning: {} says the cache is signed with a key its program \
             holds; without that key, signatures are not checked here",
            shown_path(&key_id)
        );
    }
    let config = CacheConfig::new()
        .dir(dir.clone())
        .backend(backend.to_owned())
        .max_size(max_size)
        .eviction(eviction)
        // A signed cache is checked with its key; only `sign` creates one.
        .sign_entries(key_present || matches!(cli.command, Command::Sign))
        .read_only(read_only)
        // Only `migrate` switches a cache; another process may have switched it
        // since the backend was detected.
        .switch_backend_on_open(false);
    // gc's --max-size and --eviction are for this run: a dir that has no
    // settings yet gets them from an open without those (the defaults).
    if !read_only && (max_size.is_some() || eviction.is_some()) && read_settings(&dir)?.is_none() {
        drop(config.clone().max_size(None).eviction(None).open()?);
    }
    let cache = config.open()?;
    let mut out = io::stdout().lock();
    match cli.command {
        Command::Ls { prefix, json, sort } => {
            let mut options = ListOptions::new().include_expired(true);
            options.prefix = prefix;
            let mut entries = cache.list(&options)?;
            match sort {
                Some(SortBy::Accessed) => {
                    entries.sort_by_key(|entry| std::cmp::Reverse(entry.accessed_at))
                }
                Some(SortBy::Size) => {
                    entries.sort_by_key(|entry| std::cmp::Reverse(entry.stored_size))
                }
                Some(SortBy::Created) => {
                    entries.sort_by_key(|entry| std::cmp::Reverse(entry.created_at))
                }
                None => {}
            }
            let now = cache.now_ms();
            if json {
                for entry in &entries {
                    writeln!(out, "{}", entry_json(entry))?;
                }
            } else {
                print_table(&mut out, &entries, now)?;
            }
        }
        Command::Stats { json } => print_stats(&mut out, &cache.stats()?, json)?,
        Command::Get { key, output } => {
            let codec = cache.entry(&key)?.map(|entry| entry.codec);
            let bytes = cache
                .get_bytes(&key)?
                .ok_or_else(|| Failure(format!("no entry {key} in {}", shown_path(&dir)), 1))?;
            match output {
                Some(path) => write_output(&path, &bytes)?,
                None => out.write_all(&shown_value(codec.as_deref(), bytes))?,
            }
        }
        Command::Rm { keys } => {
            let mut missing = Vec::new();
            for key in keys {
                if !cache.remove(&key)? {
                    missing.push(key.to_string());
                }
            }
            if !missing.is_empty() {
                return Err(Failure(
                    format!("no such entries: {}", missing.join(", ")),
                    1,
                ));
            }
        }
        Command::Clear { yes } => {
            if !yes {
                return Err(Failure(
                    "clear removes every entry; pass --yes to confirm".into(),
                    2,
                ));
            }
            writeln!(out, "removed {} entries", cache.clear()?)?;
        }
        Command::Verify { repair, grace } => {
            let mut options = VerifyOptions::new().repair(repair);
            if let Some(grace) = grace {
                options = options.grace(grace);
            }
            let bar = progress_bar("verifying");
            let report = cache.verify_with(&options, &mut |progress| tick(&bar, progress))?;
            bar.finish_and_clear();
            writeln!(
                out,
                "{} entries, {} bytes checked in {:.2?}: {} corrupted, {} missing, {} orphaned files, {} unreadable entries",
                report.entries,
                report.bytes,
                report.elapsed,
                report.corrupted.len(),
                report.missing.len(),
                report.orphaned.len(),
                report.unreadable.len()
            )?;
            for key in &report.corrupted {
                writeln!(out, "corrupted {key}")?;
            }
            for key in &report.missing {
                writeln!(out, "missing   {key}")?;
            }
            for name in &report.orphaned {
                writeln!(
                    out,
                    "orphaned  {}",
                    shown_path(&dir.join("blobs").join(name))
                )?;
            }
            for (key, reason) in &report.unreadable {
                writeln!(out, "unreadable {key}: {}", shown(reason))?;
            }
            if report.orphans_skipped {
                writeln!(out, "{}", orphans_not_checked(&dir))?;
            }
            if report.is_clean() && !report.orphans_skipped {
                return Ok(0);
            }
            if repair {
                writeln!(
                    out,
                    "repaired: damaged and unreadable entries and orphaned files removed"
                )?;
                return Ok(0);
            }
            return Ok(3);
        }
        Command::Gc { grace, .. } => {
            let mut options = GcOptions::new();
            if let Some(grace) = grace {
                options = options.grace(grace);
            }
            let bar = progress_bar("collecting");
            let report = cache.gc_with(&options, &mut |progress| tick(&bar, progress))?;
            bar.finish_and_clear();
            writeln!(
                out,
                "removed {} expired entries, {} orphaned blobs, {} temp files; evicted {}; {} bytes left ({:.2?})",
                report.expired,
                report.orphaned_blobs,
                report.temp_files,
                report.evicted,
                report.total_size,
                report.elapsed
            )?;
            if report.orphans_skipped {
                writeln!(out, "{}", orphans_not_checked(&dir))?;
            }
        }
        Command::Rebuild => {
            let bar = progress_bar("rebuilding");
            let report = cache.rebuild(&mut |progress| tick(&bar, progress))?;
            bar.finish_and_clear();
            // In a dir that had no metadata, the open already restored what the
            // blob files hold (json and sqlite rebuild a lost index at open):
            // every entry there came from a blob file.
            let (restored, present) = match current {
                None => (report.restored + report.present, 0),
                Some(_) => (report.restored, report.present),
            };
            writeln!(
                out,
                "{} blobs read: {restored} entries restored, {present} already present, {} superseded, {} invalid ({:.2?})",
                report.blobs,
                report.superseded,
                report.invalid.len(),
                report.elapsed
            )?;
            for (name, reason) in &report.invalid {
                writeln!(
                    out,
                    "invalid   {}: {}",
                    shown_path(&dir.join("blobs").join(name)),
                    shown(reason)
                )?;
            }
            // Values held inline had no blob file: what the backend's repair of
            // damaged metadata counted, and, in a dir whose metadata was gone
            // entirely, whatever inline values it held.
            let mut inline_lost = report.inline_lost;
            inline_lost.uncounted |= current.is_none();
            if !inline_lost.is_none() {
                writeln!(out, "{inline_lost}")?;
            }
        }
        Command::Sign => {
            if !key_present {
                writeln!(
                    out,
                    "created {} (open the cache with sign_entries so new entries are signed)",
                    shown_path(&dir.join("signing.key"))
                )?;
            }
            let bar = progress_bar("signing");
            let report = cache.sign_unsigned(&mut |progress| tick(&bar, progress))?;
            bar.finish_and_clear();
            writeln!(
                out,
                "{} entries: {} signed now, {} already signed, {} refused ({:.2?})",
                report.entries,
                report.signed,
                report.already_signed,
                report.refused.len(),
                report.elapsed
            )?;
            for (key, reason) in &report.refused {
                writeln!(out, "refused   {key}: {}", shown(reason))?;
            }
            cache.flush()?;
            return Ok(if report.refused.is_empty() { 0 } else { 3 });
        }
        Command::Migrate { .. } | Command::Settings { .. } => {
            unreachable!("handled before the cache is opened")
        }
    }
    cache.flush()?;
    Ok(0)
}

fn migrate(
    dir: &Path,
    requested: Option<&'static str>,
    current: Option<&'static str>,
    to: &str,
) -> Result<u8, Failure> {
    let to = disk_backend(to)?;
    let Some(from) = current else {
        return Err(Failure(
            format!("{}: no cache metadata found to migrate", shown_path(dir)),
            1,
        ));
    };
    if let Some(requested) = requested.filter(|requested| *requested != from) {
        return Err(Failure(
            format!(
                "{}: the cache uses the {from} backend, not {requested}",
                shown_path(dir)
            ),
            1,
        ));
    }
    if to == from {
        return Err(Failure(
            format!(
                "{}: the cache already uses the {to} backend",
                shown_path(dir)
            ),
            1,
        ));
    }
    let bar = progress_bar("migrating");
    let report = cacheness::ops::migrate_dir(dir, to, &mut |progress| tick(&bar, progress))?;
    bar.finish_and_clear();
    println!(
        "{} entries: {} copied from {from} to {to}, {} already there, {} moved to blob files ({:.2?})",
        report.entries,
        report.copied,
        report.already_present,
        report.moved_to_blobs,
        report.elapsed
    );
    Ok(0)
}

/// Fails unless `dir` is a directory, saying what it is instead.
fn check_dir(dir: &Path) -> Result<(), Failure> {
    match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(Failure(
            format!("{}: is not a directory", shown_path(dir)),
            1,
        )),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(Failure(
            format!("{}: no such directory", shown_path(dir)),
            1,
        )),
        Err(error) => Err(Failure(format!("{}: {error}", shown_path(dir)), 1)),
    }
}

/// The disk backend a `--backend` or `--to` name stands for. A backend that keeps
/// its metadata in the process (`memory`, `sqlite-memory`) cannot hold a cache
/// dir's entries: it would see none of them, and gc would delete every blob file
/// as an orphan, so it is refused. `memlayer+NAME` is NAME: the memory layer
/// lives and dies with one process, so a command gains nothing from it.
fn disk_backend(name: &str) -> Result<&'static str, Failure> {
    let inner = name.strip_prefix("memlayer+").unwrap_or(name);
    let known = cacheness::backend::BACKENDS
        .iter()
        .find(|info| info.name == inner);
    match known {
        Some(info) if info.needs_dir => Ok(info.name),
        Some(_) => Err(Failure(
            format!(
                "backend `{}` keeps its metadata in this process's memory, so it cannot \
                 hold a cache dir's entries (it would see none, and gc would delete \
                 every blob file); use {}",
                shown(name),
                disk_backend_names()
            ),
            1,
        )),
        None => Err(Failure(
            format!(
                "unknown backend `{}`; a cache dir's backend is {}",
                shown(name),
                disk_backend_names()
            ),
            1,
        )),
    }
}

fn disk_backend_names() -> String {
    cacheness::backend::BACKENDS
        .iter()
        .filter(|info| info.needs_dir)
        .map(|info| info.name)
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The disk backend whose metadata is in `dir` now, if any.
fn current_backend(dir: &Path) -> Result<Option<&'static str>, Failure> {
    Ok(cacheness::ops::detect_backend(dir)?)
}

/// Whether the dir holds a signing key (`signing.key`): then entries are checked
/// against it. A key file that is not a regular file (a symlink, a FIFO) is
/// refused rather than followed.
fn signing_key_present(dir: &Path) -> Result<bool, Failure> {
    let path = dir.join("signing.key");
    match std::fs::symlink_metadata(&path) {
        Ok(metadata) if metadata.is_file() => Ok(true),
        Ok(_) => Err(Failure(
            format!(
                "{}: is not a regular file; refusing to use it as the signing key",
                shown_path(&path)
            ),
            1,
        )),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(Failure(format!("{}: {error}", shown_path(&path)), 1)),
    }
}

/// Writes `bytes` to `path` as a private file (mode 0600): into a new temp file
/// beside it, then renamed over it, so a failure leaves no partial file and an
/// existing `path` is replaced whole. A symlink at `path` is refused, never
/// written through.
fn write_output(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |reason: String| Failure(format!("{}: {reason}", shown_path(path)), 1);
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => {
            return Err(fail(
                "is a symbolic link; refusing to write through it".into(),
            ));
        }
        Ok(metadata) if !metadata.is_file() => {
            return Err(fail("exists and is not a regular file".into()));
        }
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(fail(error.to_string())),
    }
    let name = path
        .file_name()
        .ok_or_else(|| fail("is not a file name".into()))?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let (temp, mut file) = create_temp_beside(parent, name).map_err(|error| {
        Failure(
            format!("{}: create a temporary file: {error}", shown_path(parent)),
            1,
        )
    })?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            std::fs::rename(&temp, path)
        });
    written.map_err(|error| {
        let _ = std::fs::remove_file(&temp);
        fail(error.to_string())
    })
}

/// A new file (mode 0600, created exclusively, so never through a symlink) named
/// after `name` in `parent`.
fn create_temp_beside(
    parent: &Path,
    name: &std::ffi::OsStr,
) -> io::Result<(PathBuf, std::fs::File)> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut attempt = 0u32;
    loop {
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".cacheness-{}-{attempt}.tmp", std::process::id()));
        let temp = parent.join(temp_name);
        match options.open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// `text` safe to print to a terminal: control characters (C0, DEL, C1), bidi
/// overrides and isolates, and line and paragraph separators are escaped as
/// `\n`, `\t`, `\r` or `\u{..}`, so that a stored prefix or description cannot
/// move the cursor, recolour the terminal, or fake a row of the table.
fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if needs_escape(c) => escaped.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Bidi marks, embeddings, overrides and isolates; line and paragraph
            // separators; the zero-width space, word joiner and byte-order mark,
            // which hide text. (Zero-width joiners stay: emoji need them.)
            '\u{061c}'
                | '\u{200b}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// A path, lossily decoded and escaped like [`shown`].
fn shown_path(path: &Path) -> String {
    shown(&path.to_string_lossy()).into_owned()
}

/// Why gc or verify left orphaned files alone: a rebuild or backend switch is
/// filling the metadata (or was cut short), so a blob without an entry may
/// still get one.
fn orphans_not_checked(dir: &Path) -> String {
    let marker =
        cacheness_core::ops::incomplete_metadata_marker(dir).unwrap_or(".cacheness-rebuilding");
    format!(
        "orphaned files not checked: {} says the metadata is being filled (a rebuild or a \
         backend switch, running or cut short; opening the cache finishes it)",
        shown_path(&dir.join(marker))
    )
}

fn progress_bar(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(0).with_message(message);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Short runs finish before the bar would show; only long ones draw it.
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn tick(bar: &ProgressBar, progress: Progress) {
    if let Some(total) = progress.total {
        bar.set_length(total);
    }
    bar.set_position(progress.done);
}

fn entry_json(entry: &Entry) -> serde_json::Value {
    serde_json::json!({
        "key": entry.key.to_string(),
        "prefix": entry.prefix,
        "description": entry.description,
        "type": entry.type_tag,
        "codec": entry.codec,
        "params": entry.params,
        "created_at": entry.created_at,
        "accessed_at": entry.accessed_at,
        "expires_at": entry.expires_at,
        "access_count": entry.access_count,
        "stored_size": entry.stored_size,
        "raw_size": entry.raw_size,
        "compression": entry.compression,
        "blob": entry.blob_name(),
    })
}

fn print_table(out: &mut impl Write, entries: &[ListedEntry], now: u64) -> io::Result<()> {
    writeln!(
        out,
        "{:<32}  {:<12}  {:<24}  {:>10}  {:>8}  {:>9}  {:>6}",
        "KEY", "PREFIX", "DESCRIPTION", "SIZE", "AGE", "EXPIRES", "HITS"
    )?;
    for entry in entries {
        let expires = match entry.expires_at {
            None => "never".to_owned(),
            Some(at) if at <= now => "expired".to_owned(),
            Some(at) => human_duration(at - now),
        };
        writeln!(
            out,
            "{:<32}  {:<12}  {:<24}  {:>10}  {:>8}  {:>9}  {:>6}",
            entry.key,
            truncate(&shown(&entry.prefix), 12),
            truncate(&shown(&entry.description), 24),
            entry.stored_size,
            human_duration(now.saturating_sub(entry.created_at)),
            expires,
            entry.access_count
        )?;
    }
    writeln!(out, "{} entries", entries.len())
}

/// `cacheness settings`: shows the stored settings, after changing the ones given.
fn settings(
    dir: &Path,
    max_size: Option<OrNone<u64>>,
    default_ttl: Option<OrNone<Duration>>,
    eviction: Option<EvictionPolicy>,
    json: bool,
) -> Result<u8, Failure> {
    let Some(mut stored) = read_settings(dir)? else {
        return Err(Failure(
            format!(
                "{}: no settings stored yet (a program's first open stores them)",
                shown_path(dir)
            ),
            1,
        ));
    };
    if max_size.is_some() || default_ttl.is_some() || eviction.is_some() {
        stored = CacheSettings::new(
            stored.codec,
            max_size.map_or(stored.max_size, |set| set.0),
            default_ttl.map_or(stored.default_ttl(), |set| set.0),
            eviction.unwrap_or(stored.eviction),
            stored.sign_entries,
        );
        write_settings(dir, &stored)?;
    }
    let mut out = io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&stored).map_err(io::Error::other)?
        )?;
    } else {
        let or_none = |value: Option<String>| value.unwrap_or_else(|| "none".into());
        writeln!(out, "codec        {}", stored.codec)?;
        writeln!(
            out,
            "max size     {}",
            or_none(stored.max_size.map(|bytes| format!("{bytes} bytes")))
        )?;
        writeln!(
            out,
            "default ttl  {}",
            or_none(stored.default_ttl_ms.map(human_duration))
        )?;
        writeln!(out, "eviction     {}", stored.eviction)?;
        writeln!(out, "signed       {}", stored.sign_entries)?;
    }
    Ok(0)
}

fn print_stats(out: &mut impl Write, stats: &Stats, json: bool) -> io::Result<()> {
    if json {
        let value = serde_json::json!({
            "entries": stats.entries,
            "total_size": stats.total_size,
            "max_size": stats.max_size,
            "hits": stats.hits,
            "misses": stats.misses,
            "evictions": stats.evictions,
            "hit_ratio": stats.hit_ratio(),
        });
        writeln!(out, "{value}")
    } else {
        writeln!(out, "entries     {}", stats.entries)?;
        writeln!(out, "total size  {} bytes", stats.total_size)?;
        writeln!(out, "hits        {}", stats.hits)?;
        writeln!(out, "misses      {}", stats.misses)?;
        writeln!(out, "evictions   {}", stats.evictions)?;
        writeln!(out, "hit ratio   {:.3}", stats.hit_ratio())
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(width.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

fn human_duration(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86_400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// A stored value as `get` prints it: JSON and raw bytes as stored, a value of
/// a binary codec transcoded to JSON (as stored, if it does not decode).
fn shown_value(codec: Option<&str>, bytes: Vec<u8>) -> Vec<u8> {
    let binary = codec
        .and_then(|name| name.parse::<NamedCodec>().ok())
        .filter(|codec| *codec != NamedCodec::Json);
    binary
        .and_then(|codec| codec.decode_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|value| serde_json::to_vec(&value).ok())
        .unwrap_or(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_what_moves_or_hides_text_and_keeps_the_rest() {
        assert_eq!(shown("plain text"), "plain text");
        assert!(matches!(shown("grüße, 日本, 👨‍👩‍👧"), Cow::Borrowed(_)));
        assert_eq!(shown("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(shown("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(shown("\u{7f}\u{85}\u{9b}"), "\\u{7f}\\u{85}\\u{9b}");
        assert_eq!(
            shown("abc\u{202e}fed\u{2066}\u{2069}\u{200f}\u{61c}"),
            "abc\\u{202e}fed\\u{2066}\\u{2069}\\u{200f}\\u{61c}"
        );
        assert_eq!(
            shown("x\u{2028}y\u{200b}z\u{feff}"),
            "x\\u{2028}y\\u{200b}z\\u{feff}"
        );
        // Escaped text has nothing left to escape.
        let once = shown("\u{1b}\n\u{202e}").into_owned();
        assert_eq!(shown(&once), once);
    }

    #[test]
    fn durations_take_seconds_or_a_unit() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "soon", "-5s", "3 fortnights", "5y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
