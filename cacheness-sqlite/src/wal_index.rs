//! A lock-free look at whether anyone has committed: the WAL-index header.
//!
//! In WAL mode SQLite keeps a shared index of the log in `<db>-shm`, which every
//! connection maps into memory, and every commit, by any connection of any
//! process, rewrites the 48-byte header at its start (inside the commit, under
//! the write lock): the change counter `iChange` goes up by one, and the last
//! frame, its checksum and the header checksum move with it; a restarted log gets
//! new salts. (The layout is documented at <https://sqlite.org/walformat.html>,
//! "The WAL-Index Header".) Reading those bytes where SQLite itself maps them
//! makes "has anything changed?" a compare of 96 bytes of memory, where `PRAGMA
//! data_version` takes and releases a shared lock (two `fcntl` system calls) and
//! runs a statement: the difference is most of the cost of a memory-layer hit.
//!
//! The header is only ever used to answer "nothing has changed": equal bytes mean
//! no commit happened in between. Anything unexpected (no WAL-index, an unknown
//! version, the two copies SQLite keeps disagreeing while a writer is mid-update)
//! reads as "unknown", and the caller falls back to the pragma. A format this code
//! does not know can therefore cost speed, never correctness.
//!
//! Why not open `<db>-shm` ourselves: POSIX record locks belong to the process,
//! and closing *any* descriptor of a file drops all of them, so a second
//! descriptor would silently release the locks SQLite holds on that file (and let
//! another process truncate it under the map). The pointer comes from SQLite's own
//! VFS instead (`xShmMap` on the connection's file), which opens nothing.
//!
//! This is the one module of cacheness that uses `unsafe`: the SQLite C API, and
//! reads of memory other processes write. Both are accounted for below.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};

use rusqlite::{Connection, ffi};

/// The size of one copy of the header; SQLite keeps two, back to back.
const HEADER_LEN: usize = 48;

/// The header as 32-bit words, both copies.
const WORDS: usize = 2 * HEADER_LEN / 4;

/// The size of one region of the WAL-index, as SQLite maps it (`WALINDEX_PGSZ`);
/// the header is at the start of region 0.
const REGION_SIZE: c_int = 32 * 1024;

/// `iVersion`, the first field of the header, for every WAL-index since SQLite
/// 3.7.0.
const WAL_INDEX_VERSION: u32 = 3_007_000;

/// The word whose first byte (byte 12 of the header) is `isInit`, 1 once the
/// header is written.
const IS_INIT_WORD: usize = 3;

/// One copy of the WAL-index header, as native-endian words.
pub(crate) type Header = [u32; HEADER_LEN / 4];

/// A connection that only reads, and the WAL-index header as its database file
/// maps it. Owning the connection is what keeps the pointer valid: SQLite unmaps
/// the WAL-index when the connection closes (or leaves WAL mode, which nothing
/// in this crate asks of it).
pub(crate) struct Watched {
    /// Region 0 of the WAL-index, in this process's memory; `None` when the
    /// database has none (not in WAL mode) or it could not be found.
    header: Option<NonNull<u32>>,
    conn: Connection,
}

// SAFETY: the pointer is only read, with atomic loads (see `header`), from
// memory that stays mapped while `conn` lives, whichever thread reads it;
// `Connection` itself is `Send`.
unsafe impl Send for Watched {}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("header", &self.header())
            .finish_non_exhaustive()
    }
}

impl Watched {
    /// Takes `conn`, which must already have read from its database (so that
    /// SQLite has mapped the WAL-index), and finds the WAL-index header.
    pub(crate) fn new(conn: Connection) -> Watched {
        let header = region_zero(&conn);
        Watched { header, conn }
    }

    /// The connection, for queries.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The current header, or `None` if it could not be read consistently.
    pub(crate) fn header(&self) -> Option<Header> {
        let words = self.header?.as_ptr();
        let mut both = [0u32; WORDS];
        for (index, word) in both.iter_mut().enumerate() {
            // SAFETY: `words` points at region 0 of the WAL-index, which is
            // `REGION_SIZE` bytes, page-aligned and mapped while `self.conn`
            // lives, so each of the `WORDS` words is in bounds and aligned. The
            // loads are atomic: another process's commit may tear the header
            // (SQLite writes it with plain stores between memory barriers),
            // which the comparison below detects, but never one word.
            *word = unsafe { AtomicU32::from_ptr(words.add(index)) }.load(Ordering::Acquire);
        }
        let (first, second) = both.split_at(WORDS / 2);
        if first != second
            || first[0] != WAL_INDEX_VERSION
            || first[IS_INIT_WORD].to_ne_bytes()[0] != 1
        {
            return None;
        }
        first.try_into().ok()
    }
}

/// Region 0 of the WAL-index of `conn`'s main database, if SQLite has one.
fn region_zero(conn: &Connection) -> Option<NonNull<u32>> {
    let mut file: *mut ffi::sqlite3_file = ptr::null_mut();
    // SAFETY: `handle` is the live connection; SQLITE_FCNTL_FILE_POINTER writes
    // the main database's `sqlite3_file` pointer into `file` and nothing else.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            ptr::from_mut(&mut file).cast::<c_void>(),
        )
    };
    if rc != ffi::SQLITE_OK || file.is_null() {
        return None;
    }
    // SAFETY: `file` is the open file of the connection, valid while it lives;
    // its methods table is SQLite's VFS.
    let methods = unsafe { (*file).pMethods };
    if methods.is_null() {
        return None;
    }
    // SAFETY: as above. Shared memory exists from version 2 of the io methods;
    // an older table has no `xShmMap` field to read.
    let map = unsafe {
        if (*methods).iVersion < 2 {
            return None;
        }
        (*methods).xShmMap?
    };
    let mut region: *mut c_void = ptr::null_mut();
    // SAFETY: xShmMap with `bExtend = 0` only returns the region SQLite has
    // already mapped for this connection (or NULL), taking the VFS's own mutex;
    // the connection is not in use elsewhere (we hold it by reference, and it is
    // not shared between threads while borrowed).
    let rc = unsafe {
        map(
            file,
            0,
            REGION_SIZE,
            0,
            ptr::from_mut(&mut region).cast::<*mut c_void>(),
        )
    };
    if rc != ffi::SQLITE_OK {
        return None;
    }
    NonNull::new(region.cast::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_once(conn: &Connection) {
        let _: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
    }

    #[test]
    fn the_header_moves_with_every_commit_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER);")
            .unwrap();
        let reader = Connection::open(&path).unwrap();
        read_once(&reader);
        let watched = Watched::new(reader);
        let before = watched.header().expect("a WAL database has a header");
        read_once(watched.conn());
        read_once(&writer);
        assert_eq!(watched.header(), Some(before), "reads leave it alone");
        writer.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let after = watched.header().unwrap();
        assert_ne!(after, before, "a commit moves it");
        watched
            .conn()
            .execute("INSERT INTO t VALUES (2)", [])
            .unwrap();
        assert_ne!(watched.header().unwrap(), after, "so does its own");
    }

    #[test]
    fn without_a_wal_index_there_is_no_fast_path() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("test.db")).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER);").unwrap();
        read_once(&conn);
        assert_eq!(Watched::new(conn).header(), None, "rollback journal");
        let memory = Connection::open_in_memory().unwrap();
        assert_eq!(Watched::new(memory).header(), None, "in memory");
    }
}
