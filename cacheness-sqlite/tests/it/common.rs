//! Helpers shared by the integration tests.

use std::time::{Duration, Instant};

/// The name of the backend's checkpoint thread.
const THREAD_NAME: &str = "cacheness-ckpt";

/// Threads of this process named like the checkpoint thread (Linux only; 0
/// elsewhere).
fn checkpoint_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim_end() == THREAD_NAME)
        })
        .count()
}

/// [`checkpoint_threads`] once it equals `expected`, or whatever it is after 10
/// seconds. A joined thread can linger in `/proc` for a moment after `join`
/// returns (the kernel wakes the joiner before it releases the task), so a
/// count that must drop to 0 is watched, not read once.
pub(crate) fn checkpoint_threads_become(expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = checkpoint_threads();
        if count == expected || Instant::now() >= deadline {
            return count;
        }
        std::thread::yield_now();
    }
}
