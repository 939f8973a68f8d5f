//! [`WriteTx`]: the backend's write transaction, begun and ended by cached
//! statements.

use std::cell::Cell;
use std::ops::Deref;

use rusqlite::Connection;

/// A `BEGIN IMMEDIATE` transaction on `conn`, rolled back when dropped unless
/// [`commit`](Self::commit) succeeded (as rusqlite's `Transaction`).
///
/// Unlike rusqlite's `Transaction`, which runs `BEGIN` and `COMMIT` through
/// `execute_batch` (each parsed and planned anew, then finalized: ~5 500
/// instructions of every put, `callgrind`), the three statements are prepared
/// once per connection and kept in its statement cache.
///
/// It also remembers whether the transaction already added itself to
/// `stats.writes` (see [`counted`](Self::counted)), so that a write that updates
/// the `stats` row anyway does so in one statement.
pub(crate) struct WriteTx<'conn> {
    conn: &'conn Connection,
    /// Whether `stats.writes` was incremented for this transaction.
    counted: Cell<bool>,
    /// Still to be committed or rolled back.
    open: bool,
}

impl<'conn> WriteTx<'conn> {
    /// Takes the write lock: `BEGIN IMMEDIATE`.
    pub(crate) fn begin(conn: &'conn Connection) -> rusqlite::Result<WriteTx<'conn>> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(WriteTx {
            conn,
            counted: Cell::new(false),
            open: true,
        })
    }

    /// `COMMIT`. On failure (a `SQLITE_BUSY` that outlived the busy handler, a
    /// full disk) the transaction is rolled back as the value drops.
    pub(crate) fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.open = false;
        Ok(())
    }

    /// The increment of `stats.writes` a statement of this transaction should
    /// add: 1 the first time, 0 after; the transaction is counted from then on.
    pub(crate) fn count_once(&self) -> i64 {
        i64::from(!self.counted.replace(true))
    }

    /// Whether `stats.writes` was incremented for this transaction.
    pub(crate) fn counted(&self) -> bool {
        self.counted.get()
    }
}

impl Deref for WriteTx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        // A failed statement may already have ended the transaction (SQLite
        // rolls back by itself on some errors): only an open one is rolled back.
        if self.open && !self.conn.is_autocommit() {
            let rolled_back = self
                .conn
                .prepare_cached("ROLLBACK")
                .and_then(|mut statement| statement.execute([]));
            if let Err(error) = rolled_back {
                tracing::warn!(%error, "sqlite: could not roll back a failed write");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        conn
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_committed_transaction_stays_and_a_dropped_one_is_rolled_back() {
        let conn = table();
        let tx = WriteTx::begin(&conn).unwrap();
        assert!(!conn.is_autocommit(), "inside a transaction");
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        tx.commit().unwrap();
        assert!(conn.is_autocommit());
        assert_eq!(count(&conn), 1);

        let tx = WriteTx::begin(&conn).unwrap();
        tx.execute("INSERT INTO t VALUES (2)", []).unwrap();
        drop(tx);
        assert!(conn.is_autocommit(), "rolled back");
        assert_eq!(count(&conn), 1);

        // The cached statements serve the next transactions as well.
        for value in 3..6 {
            let tx = WriteTx::begin(&conn).unwrap();
            tx.execute("INSERT INTO t VALUES (?1)", [value]).unwrap();
            tx.commit().unwrap();
        }
        assert_eq!(count(&conn), 4);
    }

    #[test]
    fn a_failed_commit_is_rolled_back() {
        let conn = table();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        let tx = WriteTx::begin(&conn).unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        // Checked at COMMIT, which fails and leaves the transaction open.
        tx.execute("INSERT INTO child VALUES (7)", []).unwrap();
        assert!(tx.commit().is_err());
        assert!(conn.is_autocommit(), "rolled back");
        assert_eq!(count(&conn), 0);
    }

    #[test]
    fn a_transaction_counts_itself_once() {
        let conn = table();
        let tx = WriteTx::begin(&conn).unwrap();
        assert!(!tx.counted());
        assert_eq!(tx.count_once(), 1);
        assert!(tx.counted());
        assert_eq!(tx.count_once(), 0);
    }
}
