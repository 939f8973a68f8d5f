//! The threads [`AsyncCache`](super::AsyncCache) runs its disk work on.
//!
//! Tokio's `spawn_blocking` costs two thread wake-ups per call (about 20 µs
//! here), four times a SQLite read and twenty times an in-memory one, so an
//! async get through it ran at a fifth of the sync API's speed. This pool is
//! made for short calls: its threads, after a job, watch the queue for a
//! moment before they sleep, and a caller whose job is first in line watches
//! for the result for a moment before its future yields. A stream of calls
//! from one task then passes from thread to thread without a system call,
//! and calls from many tasks queue up and are taken without one too. Both
//! moments are bounded (tens of microseconds), so no runtime thread is ever
//! held longer than that: anything slower completes through the waker.
//!
//! Work that can wait without bound (a lock file another process holds) does
//! not go here: it would hold a pool thread while calls queue behind it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

/// How long a pool thread watches an empty queue before it sleeps.
const WORKER_WATCH: Duration = Duration::from_micros(100);
/// How long a caller whose job is first in line watches for its result
/// before its future yields.
const CALLER_WATCH: Duration = Duration::from_micros(50);

/// A job: runs, and returns the waker of the task waiting for its result
/// (woken once the thread's batch is done).
type Job = Box<dyn FnOnce() -> Option<Waker> + Send>;

/// The most jobs a thread takes from the queue at once.
const BATCH: usize = 16;

/// The process's pool, started on first use.
pub(super) fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(Pool::start)
}

pub(super) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<VecDeque<Job>>,
    /// Signalled when a job is queued and some thread sleeps.
    queued: Condvar,
    /// Threads asleep on `queued`.
    sleeping: AtomicUsize,
    /// Threads watching the queue (awake, no job).
    watching: AtomicUsize,
    /// How many threads take jobs.
    threads: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Jobs run outside every lock here; a panic cannot leave one held.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    fn start() -> Pool {
        let threads = thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            queued: Condvar::new(),
            sleeping: AtomicUsize::new(0),
            watching: AtomicUsize::new(0),
            threads,
        });
        for index in 0..threads {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("cacheness-io-{index}"))
                .spawn(move || shared.work())
                .expect("the cache's I/O threads start");
        }
        Pool { shared }
    }

    /// Runs `job` on a pool thread; its result, as a future. A job that
    /// panics resumes the panic in the future's caller.
    pub(super) fn run<R, J>(&self, job: J) -> Pending<R>
    where
        R: Send + 'static,
        J: FnOnce() -> R + Send + 'static,
    {
        let result = Arc::new(Completion {
            done: AtomicBool::new(false),
            slot: Mutex::new(Slot {
                value: None,
                waker: None,
            }),
        });
        let completion = Arc::clone(&result);
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            completion.complete(outcome)
        });
        let first_in_line = {
            let mut queue = lock(&self.shared.queue);
            queue.push_back(job);
            queue.len() == 1
        };
        let watched = self.shared.watching.load(Ordering::SeqCst) > 0;
        if !watched && self.shared.sleeping.load(Ordering::SeqCst) > 0 {
            self.shared.queued.notify_one();
        }
        Pending {
            completion: result,
            // Worth watching only when a thread is on it at once.
            watch: first_in_line && watched,
        }
    }
}

impl Shared {
    fn work(&self) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut wakers = Vec::with_capacity(BATCH);
        loop {
            self.next_jobs(&mut batch);
            // The tasks of a batch are woken together: a runtime thread
            // asleep is woken once for all of them, not once per job.
            wakers.extend(batch.drain(..).filter_map(|job| job()));
            wakers.drain(..).for_each(Waker::wake);
        }
    }

    /// The next jobs, taken at once, found while watching, or after a sleep:
    /// at least one, and when many wait, a share of them (at most
    /// [`BATCH`]), so that the other threads get theirs.
    fn next_jobs(&self, batch: &mut Vec<Job>) {
        if self.take(&mut lock(&self.queue), batch) {
            return;
        }
        self.watching.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let mut spins = 0_u32;
        while started.elapsed() < WORKER_WATCH {
            if self.take(&mut lock(&self.queue), batch) {
                self.watching.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            spins = backoff(spins);
        }
        self.watching.fetch_sub(1, Ordering::SeqCst);
        let mut queue = lock(&self.queue);
        while !self.take(&mut queue, batch) {
            self.sleeping.fetch_add(1, Ordering::SeqCst);
            queue = self
                .queued
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
            self.sleeping.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Moves this thread's share of `queue` into `batch`; whether any.
    fn take(&self, queue: &mut VecDeque<Job>, batch: &mut Vec<Job>) -> bool {
        let share = queue.len().div_ceil(self.threads).min(BATCH);
        batch.extend(queue.drain(..share));
        share > 0
    }
}

/// Spins briefly, yielding the CPU now and then so a watcher on a busy
/// machine does not starve the thread it waits for.
fn backoff(spins: u32) -> u32 {
    if spins % 64 == 63 {
        thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
    spins.wrapping_add(1)
}

type Outcome<R> = thread::Result<R>;

struct Completion<R> {
    done: AtomicBool,
    slot: Mutex<Slot<R>>,
}

struct Slot<R> {
    value: Option<Outcome<R>>,
    waker: Option<Waker>,
}

impl<R> Completion<R> {
    /// Stores the outcome; the waker of the task to wake, if it waits.
    fn complete(&self, outcome: Outcome<R>) -> Option<Waker> {
        let mut slot = lock(&self.slot);
        slot.value = Some(outcome);
        self.done.store(true, Ordering::Release);
        slot.waker.take()
    }
}

/// The result of a job on the pool.
pub(super) struct Pending<R> {
    completion: Arc<Completion<R>>,
    watch: bool,
}

impl<R> Future for Pending<R> {
    type Output = R;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<R> {
        if std::mem::take(&mut self.watch) {
            let started = Instant::now();
            let mut spins = 0_u32;
            while !self.completion.done.load(Ordering::Acquire) && started.elapsed() < CALLER_WATCH
            {
                spins = backoff(spins);
            }
        }
        let mut slot = lock(&self.completion.slot);
        if let Some(outcome) = slot.value.take() {
            drop(slot);
            return match outcome {
                Ok(value) => Poll::Ready(value),
                Err(panic) => std::panic::resume_unwind(panic),
            };
        }
        match &mut slot.waker {
            Some(waker) if waker.will_wake(context.waker()) => {}
            waker => *waker = Some(context.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `future` to its end on this thread.
    fn block_on<F: Future>(future: F) -> F::Output {
        struct Unpark(thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(thread::current())));
        let mut context = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
            thread::park();
        }
    }

    #[test]
    fn jobs_return_their_results_whether_watched_or_woken() {
        assert_eq!(block_on(pool().run(|| 7)), 7);
        // A job longer than any watch completes through the waker.
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let pending = pool().run(move || wait.recv().map(|()| "released"));
        let releaser = thread::spawn(move || release.send(()));
        assert_eq!(block_on(pending), Ok("released"));
        releaser.join().unwrap().unwrap();
    }

    #[test]
    fn a_job_that_panics_resumes_its_panic_in_the_caller() {
        let caught = std::panic::catch_unwind(|| block_on(pool().run(|| panic!("in the job"))));
        let panic = caught.unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"in the job"));
        // The pool's threads survive it.
        assert_eq!(block_on(pool().run(|| 1 + 1)), 2);
    }
}
