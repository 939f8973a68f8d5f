//! WAL checkpoints on a thread of their own, so puts do not wait for the disk.
//!
//! In WAL mode every commit appends the pages it changed to `<db>-wal`, and a
//! *checkpoint* copies them back into the database file. SQLite's automatic
//! checkpoint runs in the connection that commits once the log holds
//! `wal_autocheckpoint` pages, and with `synchronous = NORMAL` it is also the
//! moment the log reaches the disk: it syncs the log (~40 MB with the 10 000
//! pages that were the default until the log got a size limit), copies, and
//! syncs the database file. That put then took ~100 ms on this project's
//! machines, and puts into a cache of 10 000 entries or more ran at ~60 % of
//! the rate of the first 1 000.
//!
//! Here the committing connection only notices (SQLite's WAL hook, called after
//! each commit with the log's length) and wakes the backend's checkpoint thread,
//! which does the copying and syncing with `PASSIVE` checkpoints: they take no
//! lock a writer or reader needs, so puts and gets go on meanwhile. Puts keep
//! appending while it works, so it repeats until a pass finds only a short tail.
//!
//! One thing it cannot do: a log only starts over from its beginning when a
//! writer finds *every* frame copied. So once the thread is done, the next
//! commit copies that short tail itself (a passive checkpoint, as SQLite's own
//! would, but of a few hundred pages instead of thousands), and the commit after
//! it restarts the log. Should the log reach [`HARD_LIMIT_FACTOR`] times the
//! threshold while the thread is still at work (a starved thread, a disk slower
//! than the writers), committing connections wait for it, which bounds the log
//! as SQLite's own checkpoint does. The threshold is
//! [`SqliteOptions::checkpoint_pages`], a quarter of `wal_limit_bytes` at most,
//! so that wait keeps the log within the limit; `journal_size_limit` (set with
//! the other pragmas) then truncates the file to the limit when it starts over.

use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rusqlite::Connection;
use rusqlite::wal::CheckpointMode;

use crate::options::SqliteOptions;
use crate::schema::open_configured;

/// The checkpoint thread's name (Linux shows the first 15 bytes).
const THREAD_NAME: &str = "cacheness-ckpt";

/// Passes of the thread per round, at most.
const MAX_PASSES: u32 = 8;

/// A pass that left fewer than `threshold / TAIL_DIVISOR` frames behind ends the
/// round: the committing connection copies the rest.
const TAIL_DIVISOR: u32 = 16;

/// Committing connections wait for the thread once the log holds this many
/// times the threshold.
const HARD_LIMIT_FACTOR: u32 = 4;

/// The backend's checkpoint thread (started at the first checkpoint it is asked
/// for), stopped and joined on drop.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the thread (a round was asked for, or shutdown).
    wake: Condvar,
    /// Wakes committing connections waiting at the hard limit.
    finished: Condvar,
    /// The database, and how to open the thread's own connection to it.
    path: PathBuf,
    options: SqliteOptions,
    /// [`SqliteOptions::checkpoint_pages`], computed once.
    threshold: u32,
    /// The thread, once started (by a commit's hook, hence here).
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct State {
    phase: Phase,
    shutdown: bool,
    thread: ThreadState,
}

/// The thread is started by the first commit that needs it, at most once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ThreadState {
    #[default]
    NotStarted,
    Started,
    /// The system refused a thread: commits checkpoint themselves.
    Refused,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The log is short, or nobody has asked yet.
    #[default]
    Idle,
    /// The thread is copying.
    Running,
    /// The thread finished a round: the next commit copies the tail.
    Done,
}

impl Checkpointer {
    /// A checkpointer for the database at `path`, checkpointing every
    /// [`SqliteOptions::checkpoint_pages`] pages. `None` when that is 0 (checkpoints
    /// off: nothing to do) or the options turn the thread off (SQLite's own
    /// automatic checkpoint stays).
    pub(crate) fn new(path: PathBuf, options: &SqliteOptions) -> Option<Checkpointer> {
        let wanted = options.checkpoint_thread && options.checkpoint_pages() > 0;
        wanted.then(|| Checkpointer {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                finished: Condvar::new(),
                path,
                options: options.clone(),
                threshold: options.checkpoint_pages(),
                thread: Mutex::new(None),
            }),
        })
    }

    /// Makes `conn`'s commits hand their checkpoints to this checkpointer. It
    /// replaces SQLite's automatic checkpoint on `conn` (both are the WAL hook),
    /// so call it after the pragmas.
    pub(crate) fn attach(&self, conn: &mut Connection) -> rusqlite::Result<()> {
        let shared = Arc::clone(&self.shared);
        conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: c_int| {
            let pages = u32::try_from(pages).unwrap_or(0);
            if pages >= shared.threshold() && shared.after_commit(pages) {
                // The thread has copied all but the tail: copy it here, so the
                // next commit finds the whole log copied and starts it over.
                // Failing (busy: another process is checkpointing) is harmless;
                // the next commit asks again.
                if let Err(error) = wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                    tracing::debug!(%error, "sqlite: checkpoint of the log's tail did not run");
                }
            }
            Ok(())
        }))
    }
}

impl Shared {
    /// Where checkpoints start, in pages ([`SqliteOptions::checkpoint_pages`]).
    fn threshold(&self) -> u32 {
        self.threshold
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is three plain fields, each valid alone.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Called by a commit that left `pages` (at least the threshold) in the
    /// log. Returns whether this commit should copy the tail itself.
    fn after_commit(self: &Arc<Self>, pages: u32) -> bool {
        let mut state = self.lock();
        if state.shutdown {
            return false;
        }
        match state.phase {
            Phase::Idle => {
                if state.thread == ThreadState::NotStarted {
                    state.thread = if self.spawn() {
                        ThreadState::Started
                    } else {
                        ThreadState::Refused
                    };
                }
                if state.thread == ThreadState::Refused {
                    // Checkpoint here, as SQLite itself would have.
                    return true;
                }
                state.phase = Phase::Running;
                self.wake.notify_one();
                false
            }
            Phase::Running => {
                if pages < self.threshold().saturating_mul(HARD_LIMIT_FACTOR) {
                    return false;
                }
                while state.phase == Phase::Running && !state.shutdown {
                    state = self
                        .finished
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                state.phase = Phase::Idle;
                true
            }
            Phase::Done => {
                state.phase = Phase::Idle;
                true
            }
        }
    }

    /// The thread's loop: a round per wake-up, until shutdown.
    fn run(&self) {
        let mut conn = None;
        loop {
            {
                let mut state = self.lock();
                while state.phase != Phase::Running && !state.shutdown {
                    state = self
                        .wake
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                if state.shutdown {
                    return;
                }
            }
            if conn.is_none() {
                conn = open_configured(&self.path, &self.options).map_err(|error| {
                    tracing::warn!(%error, path = %self.path.display(),
                        "sqlite: checkpoint thread could not open the database; commits checkpoint themselves");
                }).ok();
            }
            if let Some(conn) = &conn {
                self.round(conn);
            }
            let mut state = self.lock();
            if state.phase == Phase::Running {
                state.phase = Phase::Done;
            }
            self.finished.notify_all();
        }
    }

    /// Starts the thread; `false` if the system refused.
    fn spawn(self: &Arc<Self>) -> bool {
        let shared = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || shared.run());
        match spawned {
            Ok(handle) => {
                *self.thread_slot() = Some(handle);
                true
            }
            Err(error) => {
                tracing::warn!(%error,
                    "sqlite: could not start the checkpoint thread; commits checkpoint themselves");
                false
            }
        }
    }

    fn thread_slot(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Passive checkpoints until one copies only a short tail (so that few
    /// frames were committed while it ran), or none (a reader holds an old
    /// snapshot, or another process is checkpointing), or [`MAX_PASSES`].
    fn round(&self, conn: &Connection) {
        let tail = c_int::try_from(self.threshold() / TAIL_DIVISOR)
            .unwrap_or(c_int::MAX)
            .max(1);
        let mut copied_before = 0;
        for _ in 0..MAX_PASSES {
            match conn.wal_checkpoint_v2(Some(c"main"), CheckpointMode::PASSIVE) {
                Ok((_log, copied)) => {
                    // Writers went on while this pass copied: about as many
                    // frames as it copied are new. Few copied, few are left.
                    if copied - copied_before < tail {
                        return;
                    }
                    copied_before = copied;
                }
                Err(error) => {
                    tracing::debug!(%error, "sqlite: background checkpoint did not run");
                    return;
                }
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        self.shared.finished.notify_all();
        let thread = self.shared.thread_slot().take();
        if let Some(handle) = thread {
            // A round in progress finishes its pass first; a panic in the
            // thread has nothing left to report here.
            let _ = handle.join();
        }
    }
}
