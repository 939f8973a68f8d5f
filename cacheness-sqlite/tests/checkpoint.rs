//! Checkpoints run on the backend's own thread (`cacheness-ckpt`): the log stays
//! bounded under a stream of puts, nothing is lost, and the thread ends with
//! the backend. The tests of this file take turns (they count that thread in
//! the whole process).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use cacheness_core::{Cache, key};
use cacheness_sqlite::{DB_FILE_NAME, SqliteBackend, SqliteOptions};

#[path = "it/common.rs"]
mod common;
use common::checkpoint_threads_become;

static TURNS: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn wal_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(format!("{DB_FILE_NAME}-wal"))).map_or(0, |meta| meta.len())
}

fn open(dir: &Path, pages: u32) -> Cache {
    open_with(
        dir,
        &SqliteOptions {
            wal_autocheckpoint: pages,
            ..SqliteOptions::default()
        },
    )
}

fn open_with(dir: &Path, options: &SqliteOptions) -> Cache {
    Cache::builder()
        .dir(dir)
        .open(SqliteBackend::open_with(dir, options).unwrap())
        .unwrap()
}

/// The bytes of one log frame: a 24-byte header and a page.
fn frame_bytes() -> u64 {
    24 + u64::from(SqliteOptions::default().page_size)
}

fn value(index: u64) -> Vec<u64> {
    (0..20).map(|j| index * 1_000 + j).collect()
}

#[test]
fn the_log_stays_bounded_under_a_stream_of_puts_and_the_thread_ends_with_the_backend() {
    let _turn = turn();
    let temp = tempfile::tempdir().unwrap();
    let pages = 64;
    let cache = open(temp.path(), pages);
    // Each put commits ~5 pages, so 3 000 puts write ~230 times the threshold.
    let mut longest = 0;
    for index in 0..3_000 {
        cache.put(&key!(idx = index), &value(index)).unwrap();
        longest = longest.max(wal_len(temp.path()));
    }
    // At 4 times the threshold a put waits for the thread and copies the rest,
    // and the next one starts the log over: one put's frames over that at most.
    let frame = frame_bytes();
    let bound = 32 + (4 * u64::from(pages) + 16) * frame;
    assert!(
        longest <= bound,
        "the log reached {longest} bytes, over {bound}"
    );
    assert!(
        longest >= u64::from(pages) * frame,
        "the log reached the threshold ({longest} bytes)"
    );
    if cfg!(target_os = "linux") {
        assert_eq!(
            checkpoint_threads_become(1),
            1,
            "the thread did the copying"
        );
    }
    for index in 0..3_000 {
        assert_eq!(
            cache.get::<Vec<u64>>(&key!(idx = index)).unwrap(),
            Some(value(index)),
            "entry {index}"
        );
    }
    drop(cache);
    assert_eq!(
        checkpoint_threads_become(0),
        0,
        "the thread ends with the backend"
    );

    let cache = open(temp.path(), pages);
    assert_eq!(cache.stats().unwrap().entries, 3_000, "all there on reopen");
}

#[test]
fn checkpoints_off_start_no_thread_and_let_the_log_grow() {
    let _turn = turn();
    let temp = tempfile::tempdir().unwrap();
    let cache = open(temp.path(), 0);
    for index in 0..1_000 {
        cache.put(&key!(idx = index), &value(index)).unwrap();
    }
    assert_eq!(checkpoint_threads_become(0), 0);
    let frame = frame_bytes();
    assert!(
        wal_len(temp.path()) > 2_000 * frame,
        "every put's pages are still in the log"
    );
}

#[test]
fn without_the_thread_the_put_that_fills_the_log_copies_it() {
    let _turn = turn();
    let temp = tempfile::tempdir().unwrap();
    let pages = 64;
    let cache = open_with(
        temp.path(),
        &SqliteOptions {
            wal_autocheckpoint: pages,
            checkpoint_thread: false,
            ..SqliteOptions::default()
        },
    );
    let mut longest = 0;
    for index in 0..1_000 {
        cache.put(&key!(idx = index), &value(index)).unwrap();
        longest = longest.max(wal_len(temp.path()));
    }
    assert_eq!(checkpoint_threads_become(0), 0, "no thread when turned off");
    // SQLite's own checkpoint: the threshold and one put's frames over it.
    let frame = frame_bytes();
    let bound = 32 + (u64::from(pages) + 16) * frame;
    assert!(
        longest <= bound,
        "the log reached {longest} bytes, over {bound}"
    );
}

#[test]
fn threads_writing_and_reading_through_frequent_checkpoints_lose_nothing() {
    let _turn = turn();
    let temp = tempfile::tempdir().unwrap();
    let cache = open(temp.path(), 16);
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let cache = &cache;
            scope.spawn(move || {
                for index in 0..400 {
                    let at = thread * 1_000 + index;
                    cache.put(&key!(idx = at), &value(at)).unwrap();
                    // Another thread's entry too, written or not yet.
                    let other = ((thread + 1) % 4) * 1_000 + index;
                    if let Some(back) = cache.get::<Vec<u64>>(&key!(idx = other)).unwrap() {
                        assert_eq!(back, value(other), "entry {other}");
                    }
                }
            });
        }
    });
    drop(cache);
    let cache = open(temp.path(), 16);
    assert_eq!(cache.stats().unwrap().entries, 1_600);
    for thread in 0..4u64 {
        for index in 0..400 {
            let at = thread * 1_000 + index;
            assert_eq!(
                cache.get::<Vec<u64>>(&key!(idx = at)).unwrap(),
                Some(value(at)),
                "entry {at}"
            );
        }
    }
}
