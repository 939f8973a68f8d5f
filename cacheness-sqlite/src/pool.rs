//! A small pool of connections, so threads do not queue behind one mutex.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};

use rusqlite::Connection;

use crate::checkpoint::Checkpointer;
use crate::options::SqliteOptions;
use crate::schema::{open_configured, open_read_only_configured};

/// Idle connections to one database. A thread takes one for the length of an
/// operation and gives it back; with WAL, readers on different connections run
/// in parallel and only writers take turns (in SQLite, across processes too).
#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
    /// How to open more: the file and its options, or `None` for an in-memory
    /// database, which exists only in its one connection.
    opener: Option<(PathBuf, SqliteOptions)>,
    /// The `file:` URI of a read-only file pool (see `schema::read_only_uri`).
    read_only_uri: Option<String>,
    max_idle: usize,
    /// Takes the checkpoints off the committing connections (file, with
    /// automatic checkpoints on).
    checkpointer: Option<Checkpointer>,
}

impl Pool {
    /// A pool over a database file, starting with `first`. Every connection it
    /// hands out, `first` included, checkpoints through the pool's
    /// [`Checkpointer`] (unless `options` turn it off).
    /// A read-only pool (`read_only_uri` set) has no checkpointer.
    pub(crate) fn file(
        mut first: Connection,
        path: PathBuf,
        options: &SqliteOptions,
        read_only_uri: Option<String>,
    ) -> rusqlite::Result<Self> {
        let checkpointer = if read_only_uri.is_some() {
            None
        } else {
            Checkpointer::new(path.clone(), options)
        };
        if let Some(checkpointer) = &checkpointer {
            checkpointer.attach(&mut first)?;
        }
        Ok(Pool {
            idle: Mutex::new(vec![first]),
            returned: Condvar::new(),
            max_idle: options.max_idle_connections,
            opener: Some((path, options.clone())),
            read_only_uri,
            checkpointer,
        })
    }

    /// A pool holding the one connection of an in-memory database.
    pub(crate) fn single(only: Connection) -> Self {
        Pool {
            idle: Mutex::new(vec![only]),
            returned: Condvar::new(),
            max_idle: 1,
            opener: None,
            read_only_uri: None,
            checkpointer: None,
        }
    }

    /// An idle connection, a new one if none is idle (file), or the only one once
    /// it is given back (memory).
    pub(crate) fn get(&self) -> rusqlite::Result<Pooled<'_>> {
        let mut idle = self.lock();
        loop {
            if let Some(conn) = idle.pop() {
                return Ok(Pooled {
                    conn: Some(conn),
                    pool: self,
                });
            }
            match &self.opener {
                Some((path, options)) => {
                    drop(idle);
                    let mut conn = match &self.read_only_uri {
                        Some(uri) => open_read_only_configured(path, uri, options)?,
                        None => open_configured(path, options)?,
                    };
                    if let Some(checkpointer) = &self.checkpointer {
                        checkpointer.attach(&mut conn)?;
                    }
                    return Ok(Pooled {
                        conn: Some(conn),
                        pool: self,
                    });
                }
                None => {
                    idle = self
                        .returned
                        .wait(idle)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            }
        }
    }

    fn put_back(&self, conn: Connection) {
        if !conn.is_autocommit() {
            // Left inside a transaction (a panic mid-operation). A file connection
            // is simply dropped; the in-memory one holds the data, so roll back.
            if self.opener.is_some() {
                return;
            }
            let _ = conn.execute_batch("ROLLBACK");
        }
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(conn);
            drop(idle);
            // Only the in-memory pool waits for a connection; a file pool opens
            // another. A notification is a futex syscall even with no waiter,
            // which a file pool would pay on every operation for nothing.
            if self.opener.is_none() {
                self.returned.notify_one();
            }
        }
        // Otherwise the surplus connection closes as it drops, outside the lock.
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Connection>> {
        // The vector only holds connections, each valid on its own: a panic
        // elsewhere cannot leave it inconsistent.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A connection taken from the pool; it goes back when dropped.
pub(crate) struct Pooled<'pool> {
    conn: Option<Connection>,
    pool: &'pool Pool,
}

impl Deref for Pooled<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("a pooled connection is present until it is dropped")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn
            .as_mut()
            .expect("a pooled connection is present until it is dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put_back(conn);
        }
    }
}
