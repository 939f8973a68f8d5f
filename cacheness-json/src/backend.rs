//! [`JsonBackend`]: the in-memory index, kept in step with the files on disk.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Bound;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cacheness_core::EvictionPolicy;
use cacheness_core::files::open_regular_read;
use cacheness_core::ops::InlineLoss;
use cacheness_core::{
    AccessBatch, BackendStats, CacheKey, Capabilities, Counters, Durability, Entry, ListedEntry,
    MetadataBackend, ScanFilter, SharedEntry,
};

use crate::by_entry::{
    InlineNamed, Parser, READ_CHUNK, inline_named_in_damaged, parse_by_entry_from, parse_snapshot,
};
use crate::error::JsonError;
use crate::files::{
    HeldDir, Identity, LockGuard, LockKind, create_dir, identity, open_append,
    remove_stale_temp_files, replace_file,
};
use crate::format::{
    Entries, FORMAT_VERSION, Record, Refusal, Snapshot, StoredTouch, UnreadableEntries,
    check_entry, check_version, complete_lines, encode_record, encode_snapshot, parse_record,
    parse_snapshot_tolerant,
};
use crate::options::JsonOptions;
use crate::rebuild::rebuild_from_blobs;

/// The snapshot's file name in the cache dir.
pub const SNAPSHOT_FILE: &str = "metadata.json";
/// The journal's file name in the cache dir.
pub const JOURNAL_FILE: &str = "metadata.journal";
/// The lock file's name in the cache dir.
pub const LOCK_FILE: &str = "metadata.lock";
/// Where a snapshot that could not be parsed is moved before a rebuild.
const CORRUPT_SNAPSHOT_FILE: &str = "metadata.json.corrupt";
/// Scans take entries out of the index this many at a time, so the index is not
/// locked while the caller's visitor runs.
const SCAN_CHUNK: usize = 256;

/// Metadata in `metadata.json` (a pretty-printed snapshot) plus
/// `metadata.journal` (one JSON record per line), shared safely by threads and
/// processes. See the [crate docs](crate) for the design.
pub struct JsonBackend {
    dir: PathBuf,
    snapshot_path: PathBuf,
    journal_path: PathBuf,
    lock_path: PathBuf,
    options: JsonOptions,
    /// `None` only for a read-only handle on a dir without a lock file it can
    /// open: it then reads without locking (see [`JsonBackend::open_read_only`]).
    lock_file: Option<File>,
    read_only: bool,
    state: Mutex<State>,
}

impl std::fmt::Debug for JsonBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonBackend")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// This process's view of the metadata.
#[derive(Debug, Default)]
struct State {
    entries: Entries,
    /// Entries on disk that cannot be decoded, kept as written; never also in
    /// `entries`.
    unreadable: UnreadableEntries,
    total_size: u64,
    counters: Counters,
    /// The generation of the snapshot the view starts from.
    generation: u64,
    snapshot_len: u64,
    /// The journal continuing that snapshot, as far as applied; `None` when there
    /// is none on disk yet.
    journal: Option<Journal>,
    /// Bumped whenever writes of another handle were applied.
    foreign_changes: u64,
    /// What the repairs of lost or damaged metadata this handle made could
    /// not recover.
    inline_lost: InlineLoss,
    /// Where the journal is looked up before each operation.
    dir: HeldDir,
}

#[derive(Debug)]
struct Journal {
    file: File,
    identity: Identity,
    /// Bytes applied: the end of the last complete line.
    consumed: u64,
    /// Its generation is older than the snapshot's (a compaction died between
    /// its two renames): its records are in the snapshot, and it is replaced
    /// before anything is appended.
    stale: bool,
}

/// What reading a snapshot found.
enum SnapshotRead {
    Found(Snapshot, u64),
    Missing,
    Corrupt(String),
}

/// A parsed snapshot and its length in bytes, or why it was refused.
type ParsedSnapshot = Result<(Snapshot, u64), Refusal>;

/// What reading a journal found.
struct JournalRead {
    file: File,
    identity: Identity,
    consumed: u64,
    /// `None` when the first line is not a header.
    generation: Option<u64>,
    records: Vec<Record>,
}

impl State {
    fn from_entries(entries: Entries, counters: Counters) -> State {
        let total_size = entries
            .values()
            .fold(0u64, |total, entry| total.saturating_add(entry.stored_size));
        State {
            entries,
            total_size,
            counters,
            ..State::default()
        }
    }

    /// Applies one record, returning the entries it replaced or removed.
    fn apply(&mut self, record: Record) -> Vec<Entry> {
        match record {
            Record::Header { .. } => Vec::new(),
            Record::Put(entry) => {
                self.unreadable.remove(&entry.key);
                self.total_size = self.total_size.saturating_add(entry.stored_size);
                let blob = entry.blob_name().map(str::to_owned);
                let replaced = self
                    .entries
                    .insert(entry.key, Arc::new(SharedEntry::new(*entry)));
                self.forget_sizes(replaced.iter().map(|shared| shared.entry()));
                // An entry naming the put's own blob is that put, rebuilt from its
                // blob before it committed: not something it displaced (the
                // engine deletes what a put displaced).
                replaced
                    .filter(|old| blob.is_none() || old.blob_name() != blob.as_deref())
                    .into_iter()
                    .map(SharedEntry::into_entry)
                    .collect()
            }
            Record::Remove { key } => {
                self.unreadable.remove(&key);
                let removed = self.entries.remove(&key);
                self.forget_sizes(removed.iter().map(|shared| shared.entry()));
                removed.into_iter().map(SharedEntry::into_entry).collect()
            }
            Record::Touch { touches, counters } => {
                for touch in touches {
                    if let Some(shared) = self.entries.get_mut(&touch.key) {
                        // Readers holding the entry keep the version they read.
                        let entry = SharedEntry::make_mut(shared);
                        entry.accessed_at = entry.accessed_at.max(touch.accessed_at);
                        entry.access_count = entry.access_count.saturating_add(touch.count);
                    }
                }
                self.counters.add(counters.into());
                Vec::new()
            }
            Record::Clear {} => {
                self.unreadable.clear();
                self.total_size = 0;
                std::mem::take(&mut self.entries)
                    .into_values()
                    .map(SharedEntry::into_entry)
                    .collect()
            }
            Record::Unreadable { key, entry } => {
                // The newest write of the key: the older entry is not served.
                let shadowed = self.entries.remove(&key);
                self.forget_sizes(shadowed.iter().map(|shared| shared.entry()));
                self.unreadable.insert(key, entry);
                Vec::new()
            }
        }
    }

    fn forget_sizes<'a>(&mut self, gone: impl Iterator<Item = &'a Entry>) {
        for entry in gone {
            self.total_size = self.total_size.saturating_sub(entry.stored_size);
        }
    }
}

impl JsonBackend {
    /// Opens (creating if needed) the metadata of the cache dir `dir` with the
    /// default [`JsonOptions`].
    pub fn open(dir: &Path) -> Result<JsonBackend, JsonError> {
        JsonBackend::open_with(dir, &JsonOptions::default())
    }

    /// A handle on `dir`'s metadata with nothing loaded yet.
    fn handle(
        dir: &Path,
        options: &JsonOptions,
        lock_path: PathBuf,
        lock_file: Option<File>,
        read_only: bool,
    ) -> JsonBackend {
        JsonBackend {
            dir: dir.to_path_buf(),
            snapshot_path: dir.join(SNAPSHOT_FILE),
            journal_path: dir.join(JOURNAL_FILE),
            lock_path,
            options: options.clone(),
            lock_file,
            read_only,
            state: Mutex::new(State::default()),
        }
    }

    /// Opens (creating if needed) the metadata of the cache dir `dir`.
    ///
    /// Many processes may open one fresh dir at the same instant. Lost or
    /// damaged metadata is rebuilt from the blob files (with a warning); metadata
    /// of a newer format version is an error.
    pub fn open_with(dir: &Path, options: &JsonOptions) -> Result<JsonBackend, JsonError> {
        options.validate()?;
        create_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = open_append(&lock_path, true)
            .map_err(|source| JsonError::io("open lock file", &lock_path, source))?;
        let backend = JsonBackend::handle(dir, options, lock_path, Some(lock_file), false);
        {
            let mut state = backend.lock_state();
            let _lock = backend.lock(LockKind::Exclusive)?;
            let removed = remove_stale_temp_files(dir, &[SNAPSHOT_FILE, JOURNAL_FILE]);
            if removed > 0 {
                tracing::debug!(removed, dir = %dir.display(), "removed stale metadata temp files");
            }
            backend.load(&mut state)?;
        }
        Ok(backend)
    }

    /// Opens the metadata of the existing cache dir `dir` for reading only: on a
    /// read-only mount, or to look at a cache without changing it.
    ///
    /// It creates, changes and deletes no file: no lock file, journal, snapshot
    /// or temp file, and no stale temp file is collected. It takes the shared
    /// lock while it reads when `metadata.lock` exists and can be opened for
    /// reading; without it, it reads the journal before the snapshot, so a
    /// compaction by a writer meanwhile is seen as a journal older than its
    /// snapshot (ignored, then reloaded), never as lost entries. Other
    /// processes' writes are followed as by a writable handle. Lost or damaged
    /// metadata is rebuilt from the blob files in memory only. Every write
    /// ([`put`](MetadataBackend::put), `remove`, `remove_if_unchanged`, `clear`,
    /// `remove_unreadable`, [`compact`](Self::compact)) is
    /// [`JsonError::ReadOnly`]; [`touch`](MetadataBackend::touch), which only
    /// records reads, does nothing. The options' write settings do not apply.
    ///
    /// A missing `dir` is an error (nothing is created), and so is a symbolic
    /// link or FIFO at any metadata file's name.
    ///
    /// ```
    /// use cacheness_core::{MetadataBackend, conformance::{key_of, sample_entry}};
    /// use cacheness_json::{JsonBackend, JsonOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// JsonBackend::open(dir.path())?.put(sample_entry(key_of(1), 1))?;
    /// let reader = JsonBackend::open_read_only(dir.path(), &JsonOptions::default())?;
    /// assert_eq!(reader.len()?, 1);
    /// assert!(reader.put(sample_entry(key_of(2), 2)).unwrap_err().to_string().contains("opened read-only"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_read_only(dir: &Path, options: &JsonOptions) -> Result<JsonBackend, JsonError> {
        options.validate()?;
        match fs::metadata(dir) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(JsonError::io(
                    "open read-only",
                    dir,
                    io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
                ));
            }
            Err(source) => return Err(JsonError::io("open read-only", dir, source)),
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = match open_regular_read(&lock_path) {
            Ok(file) => Some(file),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                ) =>
            {
                None
            }
            Err(source) => return Err(JsonError::io("open lock file", &lock_path, source)),
        };
        let backend = JsonBackend::handle(dir, options, lock_path, lock_file, true);
        {
            let mut state = backend.lock_state();
            let _lock = backend.lock(LockKind::Shared)?;
            backend.load(&mut state)?;
        }
        Ok(backend)
    }

    /// Whether the handle was opened with [`open_read_only`](Self::open_read_only).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The refusal of a write by a read-only handle.
    fn refuse_if_read_only(&self) -> Result<(), JsonError> {
        match self.read_only {
            true => Err(JsonError::ReadOnly {
                dir: self.dir.clone(),
            }),
            false => Ok(()),
        }
    }

    /// The options the backend was opened with.
    pub fn options(&self) -> &JsonOptions {
        &self.options
    }

    /// The snapshot file, `metadata.json` in the cache dir.
    pub fn snapshot_path(&self) -> &Path {
        &self.snapshot_path
    }

    /// The journal file, `metadata.journal` in the cache dir.
    pub fn journal_path(&self) -> &Path {
        &self.journal_path
    }

    /// Folds the journal into a new snapshot now, whatever its size.
    pub fn compact(&self) -> Result<(), JsonError> {
        self.refuse_if_read_only()?;
        let mut state = self.lock_state();
        let _lock = self.lock(LockKind::Exclusive)?;
        self.refresh(&mut state, true)?;
        self.compact_locked(&mut state)
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the state half-updated: records are
        // applied only after they are written, by code that does not panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the cross-process lock; a read-only handle takes the shared lock
    /// whatever is asked (it never writes), or none if it has no lock file.
    fn lock(&self, kind: LockKind) -> Result<Option<LockGuard<'_>>, JsonError> {
        let kind = if self.read_only {
            LockKind::Shared
        } else {
            kind
        };
        self.lock_file
            .as_ref()
            .map(|file| LockGuard::acquire(file, kind, &self.lock_path))
            .transpose()
    }

    /// Runs `read` on a view that includes every write other processes finished.
    fn read<T>(&self, read: impl FnOnce(&State) -> T) -> Result<T, JsonError> {
        let mut state = self.lock_state();
        self.refresh(&mut state, false)?;
        Ok(read(&state))
    }

    /// The entry under `key`; an error naming it if it is there but cannot be
    /// read.
    fn get_shared_or_unreadable(
        &self,
        key: &CacheKey,
    ) -> Result<Option<Arc<SharedEntry>>, JsonError> {
        self.read(|state| match state.unreadable.get(key) {
            Some(unreadable) => Err(JsonError::Unreadable {
                key: key.to_string(),
                dir: self.dir.clone(),
                reason: unreadable.reason.clone(),
            }),
            None => Ok(state.entries.get(key).cloned()),
        })?
    }

    /// Writes the record `decide` chooses (if any) under the exclusive lock, on a
    /// view that is up to date, and applies it; returns the entries it displaced.
    fn commit(
        &self,
        decide: impl FnOnce(&State) -> Result<Option<Record>, JsonError>,
    ) -> Result<Vec<Entry>, JsonError> {
        self.refuse_if_read_only()?;
        let mut state = self.lock_state();
        let _lock = self.lock(LockKind::Exclusive)?;
        self.refresh(&mut state, true)?;
        let Some(record) = decide(&state)? else {
            return Ok(Vec::new());
        };
        let line = encode_record(&record).map_err(|source| JsonError::Serialize {
            key: record_key(&record),
            source,
        })?;
        self.append(&mut state, &line)?;
        let displaced = state.apply(record);
        let journal_len = state.journal.as_ref().map_or(0, |journal| journal.consumed);
        if self.options.compaction_due(journal_len, state.snapshot_len) {
            // The record is safe in the journal; a failed compaction is retried
            // on a later write.
            if let Err(error) = self.compact_locked(&mut state) {
                tracing::warn!(%error, dir = %self.dir.display(), "json metadata compaction failed");
            }
        }
        Ok(displaced)
    }

    /// Brings the view up to date with one `stat` of the journal when nothing
    /// changed; replays new lines when it grew, reloads when it was replaced.
    fn refresh(&self, state: &mut State, exclusive: bool) -> Result<(), JsonError> {
        let on_disk = state
            .dir
            .stat(&self.dir, JOURNAL_FILE)
            .map_err(|source| JsonError::io("inspect", &self.journal_path, source))?;
        match (&state.journal, on_disk) {
            (Some(journal), Some((id, len))) if journal.identity == id => {
                if len == journal.consumed {
                    Ok(())
                } else if len > journal.consumed {
                    self.read_tail(state, exclusive)
                } else {
                    self.reload(state, exclusive)
                }
            }
            (None, None) => Ok(()),
            _ => self.reload(state, exclusive),
        }
    }

    fn reload(&self, state: &mut State, exclusive: bool) -> Result<(), JsonError> {
        let _lock = match exclusive {
            true => None,
            false => self.lock(LockKind::Exclusive)?,
        };
        self.load(state)?;
        state.foreign_changes += 1;
        Ok(())
    }

    /// Applies the lines appended since the view was last brought up to date.
    /// A torn last line is left alone by readers and cut off by writers.
    fn read_tail(&self, state: &mut State, exclusive: bool) -> Result<(), JsonError> {
        let _lock = match exclusive {
            true => None,
            false => self.lock(LockKind::Shared)?,
        };
        let Some(journal) = state.journal.as_mut() else {
            return Ok(());
        };
        let mut tail = Vec::new();
        (&journal.file)
            .seek(SeekFrom::Start(journal.consumed))
            .and_then(|_| (&journal.file).read_to_end(&mut tail))
            .map_err(|source| JsonError::io("read", &self.journal_path, source))?;
        let (lines, complete) = complete_lines(&tail);
        let records: Vec<Record> = lines.filter_map(|line| self.parse_line(line)).collect();
        journal.consumed += complete as u64;
        if exclusive && complete < tail.len() {
            tracing::warn!(
                journal = %self.journal_path.display(),
                bytes = tail.len() - complete,
                "cutting off a torn last journal line"
            );
            journal
                .file
                .set_len(journal.consumed)
                .map_err(|source| JsonError::io("truncate", &self.journal_path, source))?;
        }
        if !records.is_empty() {
            state.foreign_changes += 1;
            for record in records {
                state.apply(record);
            }
        }
        Ok(())
    }

    fn parse_line(&self, line: &[u8]) -> Option<Record> {
        match parse_record(line) {
            Ok(Record::Header { .. }) => None,
            Ok(Record::Unreadable { key, mut entry }) => {
                entry.reason = format!("{JOURNAL_FILE}: {}", entry.reason);
                tracing::warn!(
                    journal = %self.journal_path.display(),
                    %key,
                    reason = %entry.reason,
                    "an entry cannot be read; kept as written until removed"
                );
                Some(Record::Unreadable { key, entry })
            }
            Ok(record) => Some(record),
            Err(refusal) => {
                tracing::warn!(
                    journal = %self.journal_path.display(),
                    ?refusal,
                    "skipping an unusable journal line"
                );
                None
            }
        }
    }

    /// Reads the snapshot and the journal afresh; repairs what is lost or damaged.
    /// The caller holds the exclusive lock.
    fn load(&self, state: &mut State) -> Result<(), JsonError> {
        // Found again by path: the dir may have been removed and made again.
        state.dir = HeldDir::default();
        // The journal first: a handle without the lock (read-only) that meets a
        // compaction then finds a journal older than the snapshot (ignored until
        // the next reload), never one newer than the snapshot (a repair).
        let journal = self.read_journal()?;
        let snapshot = self.read_snapshot()?;
        let foreign_changes = state.foreign_changes;
        let mut inline_lost = state.inline_lost;
        let lost = match (snapshot, journal) {
            (SnapshotRead::Found(snapshot, len), journal) => {
                let snapshot_generation = snapshot.generation;
                match journal {
                    Some(journal)
                        if journal
                            .generation
                            .is_none_or(|generation| generation > snapshot_generation) =>
                    {
                        let (reason, named) = match journal.generation {
                            None => (
                                "the journal has no valid header",
                                InlineNamed::of_snapshot(&snapshot),
                            ),
                            // What the generations in between held is gone.
                            Some(_) => (
                                "the snapshot is older than the journal",
                                InlineNamed::unread(),
                            ),
                        };
                        self.repair(
                            state,
                            reason,
                            Some(journal),
                            snapshot_generation,
                            Some(named),
                        )?
                    }
                    journal => {
                        *state = self.install(snapshot, len);
                        if let Some(journal) = journal {
                            let stale = journal.generation != Some(snapshot_generation);
                            if !stale {
                                for record in journal.records {
                                    state.apply(record);
                                }
                            }
                            state.journal = Some(Journal {
                                file: journal.file,
                                identity: journal.identity,
                                consumed: journal.consumed,
                                stale,
                            });
                        }
                        InlineLoss::default()
                    }
                }
            }
            (SnapshotRead::Missing, None) => {
                self.repair(state, "no metadata file", None, 0, None)?
            }
            (SnapshotRead::Missing, Some(journal)) => {
                let generation = journal.generation.unwrap_or(0);
                self.repair(
                    state,
                    "the snapshot is missing",
                    Some(journal),
                    generation,
                    Some(InlineNamed::unread()),
                )?
            }
            (SnapshotRead::Corrupt(reason), journal) => {
                let aside = self.dir.join(CORRUPT_SNAPSHOT_FILE);
                let named = self.inline_named_in_damaged_snapshot();
                if self.read_only {
                    // Left where it is; the repair below stays in memory.
                } else if let Err(error) = fs::rename(&self.snapshot_path, &aside) {
                    tracing::warn!(%error, "cannot move the corrupted snapshot aside");
                }
                let generation = journal
                    .as_ref()
                    .and_then(|journal| journal.generation)
                    .unwrap_or(0);
                let reason = format!(
                    "the snapshot is corrupted ({reason}); kept as {}",
                    aside.display()
                );
                self.repair(state, &reason, journal, generation, Some(named))?
            }
        };
        inline_lost.add(lost);
        state.inline_lost = inline_lost;
        state.foreign_changes = foreign_changes;
        Ok(())
    }

    fn install(&self, snapshot: Snapshot, len: u64) -> State {
        for reason in &snapshot.entries.rejected {
            tracing::warn!(snapshot = %self.snapshot_path.display(), %reason, "rejecting an entry");
        }
        let mut state = State::from_entries(snapshot.entries.by_key, snapshot.counters.into());
        state.unreadable = snapshot.entries.unreadable;
        for (key, entry) in &mut state.unreadable {
            entry.reason = format!("{SNAPSHOT_FILE}: {}", entry.reason);
            tracing::warn!(
                snapshot = %self.snapshot_path.display(),
                %key,
                reason = %entry.reason,
                "an entry cannot be read; kept as written until removed"
            );
        }
        state.generation = snapshot.generation;
        state.snapshot_len = len;
        state
    }

    /// Reads the snapshot a chunk at a time, parsing it entry by entry as it
    /// comes; anything the streaming parse does not accept is read whole and
    /// parsed as before, for the same result or error.
    fn read_snapshot(&self) -> Result<SnapshotRead, JsonError> {
        let streamed = match open_regular_read(&self.snapshot_path) {
            Ok(file) => parse_by_entry_from(&file, READ_CHUNK)
                .map_err(|source| JsonError::io("read", &self.snapshot_path, source))?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Ok(SnapshotRead::Missing);
            }
            Err(source) => return Err(JsonError::io("read", &self.snapshot_path, source)),
        };
        let parsed = match streamed {
            Some((snapshot, len)) => check_version(snapshot).map(|snapshot| (snapshot, len)),
            None => match self.read_whole_snapshot()? {
                Some(read) => read,
                None => return Ok(SnapshotRead::Missing),
            },
        };
        match parsed {
            Ok((snapshot, len)) => Ok(SnapshotRead::Found(snapshot, len)),
            Err(Refusal::Newer(found)) => Err(JsonError::NewerFormat {
                path: self.snapshot_path.clone(),
                found,
                supported: FORMAT_VERSION,
            }),
            Err(Refusal::Malformed(reason)) => Ok(SnapshotRead::Corrupt(reason)),
        }
    }

    /// The whole snapshot file, parsed; `None` if it is gone.
    fn read_whole_snapshot(&self) -> Result<Option<ParsedSnapshot>, JsonError> {
        let mut bytes = Vec::new();
        match open_regular_read(&self.snapshot_path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
        {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(JsonError::io("read", &self.snapshot_path, source)),
        }
        let len = bytes.len() as u64;
        // simd-json uses the bytes as scratch space; a refused snapshot is
        // parsed again, tolerating entries that cannot be decoded.
        let pristine = bytes.clone();
        let parsed = match parse_snapshot(&mut bytes, Parser::SimdJson) {
            Err(Refusal::Malformed(reason)) => {
                parse_snapshot_tolerant(&pristine).map_err(|tolerant| match tolerant {
                    Refusal::Newer(found) => Refusal::Newer(found),
                    Refusal::Malformed(_) => Refusal::Malformed(reason),
                })
            }
            parsed => parsed,
        };
        Ok(Some(parsed.map(|snapshot| (snapshot, len))))
    }

    fn read_journal(&self) -> Result<Option<JournalRead>, JsonError> {
        let path = &self.journal_path;
        let opened = match self.read_only {
            true => open_regular_read(path),
            false => open_append(path, false),
        };
        let file = match opened {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(JsonError::io("open", path, source)),
        };
        let mut bytes = Vec::new();
        let identity = (&file)
            .read_to_end(&mut bytes)
            .and_then(|_| file.metadata())
            .map(|metadata| identity(&metadata))
            .map_err(|source| JsonError::io("read", path, source))?;
        let (mut lines, complete) = complete_lines(&bytes);
        let generation = match lines.next().map(parse_record) {
            Some(Ok(Record::Header {
                format_version: _,
                generation,
            })) => Some(generation),
            Some(Err(Refusal::Newer(found))) => {
                return Err(JsonError::NewerFormat {
                    path: path.clone(),
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            _ => None,
        };
        let records = lines.filter_map(|line| self.parse_line(line)).collect();
        Ok(Some(JournalRead {
            file,
            identity,
            consumed: complete as u64,
            generation,
            records,
        }))
    }

    /// What the snapshot that could not be parsed still names of the entries
    /// it held inline (nothing, if it cannot be read again).
    fn inline_named_in_damaged_snapshot(&self) -> InlineNamed {
        let mut bytes = Vec::new();
        match open_regular_read(&self.snapshot_path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
        {
            Ok(_) => inline_named_in_damaged(&bytes),
            Err(error) => {
                tracing::warn!(%error, snapshot = %self.snapshot_path.display(), "cannot read the damaged snapshot again");
                InlineNamed::unread()
            }
        }
    }

    /// Rebuilds the view from the blob files' headers, replays `journal` over it,
    /// and writes it as a new snapshot (with a fresh journal). Returns what it
    /// could not recover: the entries `lost` (what the lost or damaged
    /// metadata still names of its inline entries; `None` when there was no
    /// metadata at all) names that are gone, since no blob file held them.
    fn repair(
        &self,
        state: &mut State,
        reason: &str,
        journal: Option<JournalRead>,
        generation: u64,
        lost: Option<InlineNamed>,
    ) -> Result<InlineLoss, JsonError> {
        let rebuilt = rebuild_from_blobs(&self.dir)?;
        let fresh = rebuilt.blobs == 0 && journal.is_none();
        // No metadata, no journal and no blob file: a new cache, nothing lost.
        let lost = lost.unwrap_or(InlineNamed {
            keys: BTreeSet::new(),
            read_whole: fresh,
        });
        let mut repaired = State::from_entries(rebuilt.entries, Counters::default());
        repaired.generation = generation;
        let mut replayed = 0;
        let followed = journal.map(|mut journal| {
            let records = std::mem::take(&mut journal.records);
            replayed = records.len();
            for record in records {
                repaired.apply(record);
            }
            Journal {
                file: journal.file,
                identity: journal.identity,
                consumed: journal.consumed,
                stale: false,
            }
        });
        // Inline values live only in the metadata: those it named are gone
        // unless the journal put them again.
        let gone = lost
            .keys
            .iter()
            .filter(|key| {
                !repaired.entries.contains_key(key) && !repaired.unreadable.contains_key(key)
            })
            .count();
        let inline_lost = InlineLoss::new(gone as u64, !lost.read_whole);
        if !fresh || !inline_lost.is_none() {
            tracing::warn!(
                dir = %self.dir.display(),
                reason,
                blobs = rebuilt.blobs,
                unreadable_blobs = rebuilt.unreadable,
                journal_records = replayed,
                entries = repaired.entries.len(),
                inline_lost = inline_lost.counted,
                inline_uncounted = inline_lost.uncounted,
                read_only = self.read_only,
                "rebuilt the json metadata from the blob files"
            );
        }
        if !inline_lost.is_none() {
            tracing::warn!(dir = %self.dir.display(), "{inline_lost}");
        }
        if self.read_only {
            // Nothing is written: the rebuilt view lives in memory and follows
            // the journal as found.
            repaired.journal = followed;
        } else {
            self.compact_locked(&mut repaired)?;
        }
        *state = repaired;
        Ok(inline_lost)
    }

    /// Visits the entries `filter` selects, in key order, as the index's shared
    /// handles. The index is locked only while a chunk of handles is taken.
    fn scan_shared(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(Arc<SharedEntry>) -> ControlFlow<()>,
    ) -> Result<(), JsonError> {
        let mut remaining = filter.limit.unwrap_or(usize::MAX);
        let mut after = filter.after;
        // One buffer for every chunk of the scan.
        let mut chunk: Vec<Arc<SharedEntry>> = Vec::new();
        while remaining > 0 {
            let wanted = remaining.min(SCAN_CHUNK);
            self.read(|state| {
                let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
                let in_range = state
                    .entries
                    .range((lower, Bound::Unbounded))
                    .map(|(_, shared)| shared);
                chunk.reserve(wanted.min(state.entries.len()));
                match filter.prefix.as_deref() {
                    None => chunk.extend(in_range.take(wanted).cloned()),
                    Some(prefix) => chunk.extend(
                        in_range
                            .filter(|shared| shared.prefix == prefix)
                            .take(wanted)
                            .cloned(),
                    ),
                }
            })?;
            let full = chunk.len() == wanted;
            after = chunk.last().map(|shared| shared.key);
            for shared in chunk.drain(..) {
                remaining -= 1;
                if visit(shared).is_break() {
                    return Ok(());
                }
            }
            if !full {
                break;
            }
        }
        Ok(())
    }

    /// Writes the view as the next generation's snapshot and starts its journal.
    /// The caller holds the exclusive lock and an up-to-date view.
    fn compact_locked(&self, state: &mut State) -> Result<(), JsonError> {
        let generation = state.generation + 1;
        let bytes = encode_snapshot(
            &state.entries,
            &state.unreadable,
            state.counters,
            generation,
        )
        .map_err(|source| JsonError::Serialize {
            key: "snapshot".into(),
            source,
        })?;
        replace_file(&self.snapshot_path, &bytes)?;
        // From here the old journal is stale: everything in it is in the snapshot.
        state.generation = generation;
        state.snapshot_len = bytes.len() as u64;
        state.journal = None;
        self.start_journal(state)
    }

    /// Replaces the journal by an empty one continuing the view's snapshot.
    fn start_journal(&self, state: &mut State) -> Result<(), JsonError> {
        let header = encode_record(&Record::Header {
            format_version: FORMAT_VERSION,
            generation: state.generation,
        })
        .map_err(|source| JsonError::Serialize {
            key: "journal header".into(),
            source,
        })?;
        replace_file(&self.journal_path, &header)?;
        let file = open_append(&self.journal_path, false)
            .map_err(|source| JsonError::io("open", &self.journal_path, source))?;
        let identity = file
            .metadata()
            .map(|metadata| identity(&metadata))
            .map_err(|source| JsonError::io("inspect", &self.journal_path, source))?;
        state.journal = Some(Journal {
            file,
            identity,
            consumed: header.len() as u64,
            stale: false,
        });
        Ok(())
    }

    /// Appends one line to the journal; the caller holds the exclusive lock.
    fn append(&self, state: &mut State, line: &[u8]) -> Result<(), JsonError> {
        if state.journal.as_ref().is_none_or(|journal| journal.stale) {
            self.start_journal(state)?;
        }
        let Some(journal) = state.journal.as_mut() else {
            unreachable!("start_journal sets the journal")
        };
        let written =
            (&journal.file)
                .write_all(line)
                .and_then(|()| match self.options.durability {
                    Durability::Flush => Ok(()),
                    // Sync, and any stronger mode added later.
                    _ => journal.file.sync_data(),
                });
        if let Err(source) = written {
            // Leave no partial line behind for others to trip on.
            let _ = journal.file.set_len(journal.consumed);
            return Err(JsonError::io("append to", &self.journal_path, source));
        }
        journal.consumed += line.len() as u64;
        Ok(())
    }
}

fn record_key(record: &Record) -> String {
    match record {
        Record::Put(entry) => entry.key.to_string(),
        Record::Remove { key } | Record::Unreadable { key, .. } => key.to_string(),
        _ => "batch".into(),
    }
}

impl MetadataBackend for JsonBackend {
    fn name(&self) -> &str {
        "json"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .persistent(true)
            .multi_process(true)
            .inline_values(self.options.inline_values)
            .counters(true)
    }

    fn get(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        Ok(self
            .get_shared_or_unreadable(key)?
            .map(|shared| shared.entry().clone()))
    }

    fn get_shared(&self, key: &CacheKey) -> cacheness_core::Result<Option<Arc<SharedEntry>>> {
        Ok(self.get_shared_or_unreadable(key)?)
    }

    fn put(&self, entry: Entry) -> cacheness_core::Result<Option<Entry>> {
        check_entry(&entry).map_err(|reason| JsonError::InvalidEntry {
            key: entry.key.to_string(),
            reason,
        })?;
        let mut displaced = self.commit(|_| Ok(Some(Record::Put(Box::new(entry)))))?;
        Ok(displaced.pop())
    }

    /// Removes the entry under `key`, or the unreadable one (then returning
    /// `None`: there is no entry to return).
    fn remove(&self, key: &CacheKey) -> cacheness_core::Result<Option<Entry>> {
        let mut displaced = self.commit(|state| {
            Ok(
                (state.entries.contains_key(key) || state.unreadable.contains_key(key))
                    .then_some(Record::Remove { key: *key }),
            )
        })?;
        Ok(displaced.pop())
    }

    /// Records reads; a read-only handle drops them (reads through a cache on
    /// a read-only handle stay reads).
    fn touch(&self, batch: &AccessBatch) -> cacheness_core::Result<()> {
        if batch.is_empty() || self.read_only {
            return Ok(());
        }
        self.commit(|state| {
            let touches: Vec<StoredTouch> = batch
                .touches
                .iter()
                .filter(|touch| state.entries.contains_key(&touch.key))
                .map(|touch| StoredTouch {
                    key: touch.key,
                    accessed_at: touch.accessed_at,
                    count: touch.count,
                })
                .collect();
            if touches.is_empty() && batch.counters.is_zero() {
                return Ok(None);
            }
            Ok(Some(Record::Touch {
                touches,
                counters: batch.counters.into(),
            }))
        })?;
        Ok(())
    }

    fn scan(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
    ) -> cacheness_core::Result<()> {
        Ok(self.scan_shared(filter, &mut |shared| visit(shared.entry().clone()))?)
    }

    fn scan_listed(
        &self,
        filter: &ScanFilter,
        visit: &mut dyn FnMut(ListedEntry) -> ControlFlow<()>,
    ) -> cacheness_core::Result<()> {
        Ok(self.scan_shared(filter, &mut |shared| visit(ListedEntry::from(shared)))?)
    }

    fn len(&self) -> cacheness_core::Result<u64> {
        Ok(self.read(|state| state.entries.len() as u64)?)
    }

    fn is_empty(&self) -> cacheness_core::Result<bool> {
        Ok(self.read(|state| state.entries.is_empty())?)
    }

    fn total_size(&self) -> cacheness_core::Result<u64> {
        Ok(self.read(|state| state.total_size)?)
    }

    fn stats(&self) -> cacheness_core::Result<BackendStats> {
        Ok(self.read(|state| BackendStats {
            entries: state.entries.len() as u64,
            total_size: state.total_size,
            counters: state.counters,
        })?)
    }

    fn expired(&self, now_ms: u64, limit: usize) -> cacheness_core::Result<Vec<Entry>> {
        Ok(self.read(|state| {
            state
                .entries
                .values()
                .filter(|entry| entry.is_expired(now_ms))
                .take(limit)
                .map(|shared| shared.entry().clone())
                .collect()
        })?)
    }

    fn eviction_candidates(
        &self,
        policy: EvictionPolicy,
        now_ms: u64,
        limit: usize,
    ) -> cacheness_core::Result<Vec<Entry>> {
        Ok(self.read(|state| {
            let all: Vec<&Entry> = state
                .entries
                .values()
                .map(|shared| shared.entry())
                .collect();
            policy
                .select(now_ms, limit, all, |entry| *entry)
                .into_iter()
                .cloned()
                .collect()
        })?)
    }

    fn remove_if_unchanged(&self, expected: &Entry) -> cacheness_core::Result<Option<Entry>> {
        let mut displaced = self.commit(|state| {
            Ok(match state.entries.get(&expected.key) {
                Some(current) if current.same_version(expected) => {
                    Some(Record::Remove { key: expected.key })
                }
                _ => None,
            })
        })?;
        Ok(displaced.pop())
    }

    fn clear(&self) -> cacheness_core::Result<Vec<Entry>> {
        Ok(self.commit(|state| {
            Ok((!state.entries.is_empty() || !state.unreadable.is_empty())
                .then_some(Record::Clear {}))
        })?)
    }

    fn unreadable(&self, visit: &mut dyn FnMut(CacheKey, String)) -> cacheness_core::Result<()> {
        let found: Vec<(CacheKey, String)> = self.read(|state| {
            state
                .unreadable
                .iter()
                .map(|(key, entry)| (*key, entry.reason.clone()))
                .collect()
        })?;
        for (key, reason) in found {
            visit(key, reason);
        }
        Ok(())
    }

    fn remove_unreadable(&self, key: &CacheKey) -> cacheness_core::Result<bool> {
        let mut found = false;
        self.commit(|state| {
            found = state.unreadable.contains_key(key);
            Ok(found.then_some(Record::Remove { key: *key }))
        })?;
        Ok(found)
    }

    fn data_version(&self) -> cacheness_core::Result<Option<u64>> {
        Ok(Some(self.read(|state| state.foreign_changes)?))
    }

    /// What the repairs this handle made of lost or damaged metadata (at
    /// open, or at a reload that found it so) could not recover: values
    /// stored inline there, which no blob file holds.
    fn inline_lost(&self) -> InlineLoss {
        self.lock_state().inline_lost
    }
}
