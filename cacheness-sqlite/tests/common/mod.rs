//! Helpers shared by the integration tests.

/// The name of the backend's checkpoint thread.
const THREAD_NAME: &str = "cacheness-ckpt";

/// Threads of this process named like the checkpoint thread (Linux only; 0
/// elsewhere).
pub fn checkpoint_threads() -> usize {
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
