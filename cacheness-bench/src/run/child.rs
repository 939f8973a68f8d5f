//! The child processes of a run: the roles this program plays when a run
//! starts it again, and the Python driver of diskcache.

use super::*;

pub(super) fn child_json(
    output: std::io::Result<std::process::Output>,
    role: &str,
) -> Result<serde_json::Value> {
    let output = output.map_err(|source| BenchError::Child {
        command: role.into(),
        reason: source.to_string(),
    })?;
    if !output.status.success() {
        return Err(BenchError::Child {
            command: role.into(),
            reason: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    serde_json::from_slice(&output.stdout).map_err(|source| BenchError::Child {
        command: role.into(),
        reason: format!("unreadable report: {source}"),
    })
}

pub(super) fn json_f64(value: &serde_json::Value, name: &str) -> f64 {
    value
        .get(name)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(f64::NAN)
}

/// Runs the diskcache driver with `request`; one sample per repetition.
/// The driver reads its keys from a file: the 32-hex cache keys of items
/// `0..count` of `workload`, the key strings the Rust rows use.
pub(super) fn python_samples(
    python: &Path,
    dir: &Path,
    mut request: serde_json::Value,
    workload: &'static str,
    count: u64,
) -> Result<Vec<Sample>> {
    let script = dir.join("diskcache_driver.py");
    std::fs::write(&script, DISKCACHE_DRIVER).map_err(|source| BenchError::io(&script, source))?;
    let keys_file = dir.join("keys.txt");
    let keys: String = (0..count)
        .map(|idx| stores::key_hex(workload, idx) + "\n")
        .collect();
    std::fs::write(&keys_file, keys).map_err(|source| BenchError::io(&keys_file, source))?;
    request["keys_file"] = serde_json::json!(keys_file);
    let output = Command::new(python)
        .arg(&script)
        .arg(request.to_string())
        .output();
    let report = child_json(output, "diskcache_driver.py")?;
    let samples = report
        .get("samples")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| BenchError::Child {
            command: "diskcache_driver.py".into(),
            reason: "no samples in its report".into(),
        })?;
    Ok(samples
        .iter()
        .filter_map(serde_json::Value::as_object)
        .map(|sample| {
            sample
                .iter()
                .filter_map(|(name, value)| Some((metric_name(name)?, value.as_f64()?)))
                .collect()
        })
        .collect())
}

/// The metric names the driver may report, as static names.
pub(super) fn metric_name(name: &str) -> Option<&'static str> {
    const NAMES: &[&str] = &[
        "put_ops_s",
        "get_ops_s",
        "list_ms",
        "put_p50_us",
        "put_p99_us",
        "get_p50_us",
        "get_p99_us",
        "ops_s",
        "lost_count",
        "wrong_count",
    ];
    NAMES.iter().copied().find(|known| *known == name)
}

/// Whether `python` can import diskcache.
pub fn python_has_diskcache(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import diskcache"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The roles this program plays as a child of a run: the hidden `child`
/// subcommand of the binary parses them as they are.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ChildRole {
    /// W5: write items `first..first + count` into the cache in `dir`.
    W5Writer {
        /// The backend.
        backend: String,
        /// The shared cache directory.
        dir: PathBuf,
        /// The first item.
        first: u64,
        /// How many items.
        count: u64,
    },
    /// W5: count the entries in `dir` and read every item back.
    W5Verify {
        /// The backend.
        backend: String,
        /// The shared cache directory.
        dir: PathBuf,
        /// How many items the writers wrote.
        expected: u64,
    },
    /// W7: the peak RSS of a process holding `n` entries.
    W7 {
        /// The backend.
        backend: String,
        /// A fresh cache directory.
        dir: PathBuf,
        /// How many entries.
        n: u64,
    },
}

/// Plays `role`; the JSON report the parent reads from stdout.
pub fn child(role: &ChildRole) -> Result<serde_json::Value> {
    match role {
        ChildRole::W5Writer {
            backend,
            dir,
            first,
            count,
        } => {
            let mut store = Facade::open(backend, dir, "w5p")?;
            let start_s = unix_seconds();
            for idx in *first..first + count {
                store.put_record(idx, &Record::new(idx))?;
            }
            let end_s = unix_seconds();
            store
                .cache
                .flush()
                .map_err(|source| store.fail(source.into()))?;
            Ok(serde_json::json!({ "start_s": start_s, "end_s": end_s }))
        }
        ChildRole::W5Verify {
            backend,
            dir,
            expected,
        } => {
            let mut store = Facade::open(backend, dir, "w5p")?;
            let listed = store.list()? as u64;
            let mut lost = 0_u64;
            let mut wrong = 0_u64;
            for idx in 0..*expected {
                match store.get_record(idx)? {
                    None => lost += 1,
                    Some(record) if record != Record::new(idx) => wrong += 1,
                    Some(_) => {}
                }
            }
            Ok(serde_json::json!({ "listed": listed, "lost": lost, "wrong": wrong }))
        }
        ChildRole::W7 { backend, dir, n } => {
            let baseline = crate::machine::peak_rss_bytes().unwrap_or(0);
            let mut store = Facade::open(backend, dir, "w7")?;
            for idx in 0..*n {
                store.put_record(idx, &Record::new(idx))?;
            }
            store
                .cache
                .flush()
                .map_err(|source| store.fail(source.into()))?;
            let peak = crate::machine::peak_rss_bytes().unwrap_or(0);
            Ok(serde_json::json!({ "baseline_rss": baseline, "peak_rss": peak }))
        }
    }
}

pub(super) fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}
