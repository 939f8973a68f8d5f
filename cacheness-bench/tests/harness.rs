//! The harness end to end: a `--smoke` run whose JSON parses into the report's
//! types, and `report --from` on a fixture against expected files.
//!
//! Set `UPDATE_EXPECT=1` to rewrite `tests/fixtures/expected/` after an intended
//! change of the report, and review the diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cacheness_bench::report::{PERFORMANCE_BLOCKS, PLOTS};
use cacheness_bench::results::{Results, RowKind};

const BENCH: &str = env!("CARGO_BIN_EXE_cacheness-bench");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn bench(args: &[&str]) -> Output {
    Command::new(BENCH)
        .args(args)
        .output()
        .expect("the cacheness-bench binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A copy of the fixture documents in a fresh directory.
fn documents() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let performance = dir.path().join("PERFORMANCE.md");
    let readme = dir.path().join("README.md");
    std::fs::copy(fixtures().join("PERFORMANCE.md"), &performance).unwrap();
    std::fs::copy(fixtures().join("README.md"), &readme).unwrap();
    let img = dir.path().join("img");
    (dir, performance, readme, img)
}

fn report(from: &Path, performance: &Path, readme: &Path, img: &Path) -> Output {
    bench(&[
        "report",
        "--from",
        from.to_str().unwrap(),
        "--performance",
        performance.to_str().unwrap(),
        "--readme",
        readme.to_str().unwrap(),
        "--img",
        img.to_str().unwrap(),
    ])
}

#[test]
fn smoke_run_writes_results_the_report_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.json");
    let caches = dir.path().join("caches");
    let output = bench(&[
        "--smoke",
        "--reps",
        "1",
        "--python",
        "/nonexistent/python3",
        "--out",
        out.to_str().unwrap(),
        "--dir",
        caches.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));

    let results = Results::load(&out).unwrap();
    assert_eq!(results.mode, "smoke");
    assert_eq!(results.repetitions, 1);
    assert_ne!(results.machine.filesystem, "");
    assert_eq!(results.date.len(), "2026-01-02T03:04:05Z".len());
    for workload in ["w1", "w3", "w4", "w5", "w5p", "w6", "w7", "w8"] {
        assert!(
            results.cells.iter().any(|cell| cell.workload == workload),
            "no {workload} cells"
        );
    }
    for cell in &results.cells {
        match &cell.not_run {
            Some(reason) => {
                assert!(!reason.is_empty());
                assert!(cell.metrics.is_empty(), "{cell:?}");
            }
            None => {
                assert!(!cell.metrics.is_empty(), "{cell:?}");
                for metric in cell.metrics.values() {
                    assert!(metric.min <= metric.median && metric.median <= metric.max);
                    assert_eq!(metric.samples.len(), 1);
                }
            }
        }
    }
    // The in-process backend always runs, with latency percentiles.
    let memory = results.find("w1", "memory", &[("n", 20.into())]).unwrap();
    for metric in [
        "put_ops_s",
        "get_ops_s",
        "list_ms",
        "put_p99_us",
        "get_p50_us",
    ] {
        assert!(memory.median(metric).unwrap() > 0.0, "{metric}");
    }
    assert!(
        results
            .cells("w1", "raw-sqlite")
            .all(|cell| cell.kind == RowKind::Floor && cell.not_run.is_none())
    );
    let diskcache = results.cells("w1", "diskcache").next().unwrap();
    assert!(diskcache.not_run.is_some(), "{diskcache:?}");
    // Processes never lose or garble entries.
    for cell in results.cells.iter().filter(|cell| cell.workload == "w5p") {
        if cell.not_run.is_none() {
            assert_eq!(cell.median("lost_count"), Some(0.0), "{cell:?}");
            assert_eq!(cell.median("wrong_count"), Some(0.0), "{cell:?}");
        }
    }
    assert!(
        results
            .cells("w7", "memory")
            .all(|cell| cell.median("peak_rss_bytes").is_some_and(|peak| peak > 0.0))
    );

    // W8: every figure and its baseline, for both of its backends.
    for (_, baseline, measured) in cacheness_bench::run::W8_FIGURES {
        for row in cacheness_bench::run::W8_BACKENDS {
            let cell = results.cells("w8", row).next().unwrap();
            assert!(cell.median(baseline).unwrap() > 0.0, "{row} {baseline}");
            assert!(cell.median(measured).unwrap() > 0.0, "{row} {measured}");
        }
    }

    let (_docs, performance, readme, img) = documents();
    let output = report(&out, &performance, &readme, &img);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(&performance).unwrap();
    assert!(text.contains("| `memory` |"), "{text}");
    assert!(!text.contains("stale content"));
}

#[test]
fn report_from_fixture_matches_expected_and_is_idempotent() {
    let from = fixtures().join("results.json");
    let (_docs, performance, readme, img) = documents();
    let output = report(&from, &performance, &readme, &img);
    assert!(output.status.success(), "{}", stderr(&output));

    let expected = fixtures().join("expected");
    let mut generated = vec![
        (performance.clone(), "PERFORMANCE.md".to_owned()),
        (readme.clone(), "README.md".to_owned()),
    ];
    generated.extend(
        PLOTS
            .iter()
            .map(|name| (img.join(name), (*name).to_owned())),
    );
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    for (path, name) in &generated {
        let actual = std::fs::read_to_string(path).unwrap();
        let expected_path = expected.join(name);
        if update {
            std::fs::create_dir_all(&expected).unwrap();
            std::fs::write(&expected_path, &actual).unwrap();
        }
        let wanted = std::fs::read_to_string(&expected_path).unwrap();
        assert!(
            actual == wanted,
            "{name} differs from {}; rerun with UPDATE_EXPECT=1 and review the diff",
            expected_path.display()
        );
    }

    // What the fixture says is in the tables, with ratios beside the figures.
    let text = std::fs::read_to_string(&performance).unwrap();
    assert!(text.starts_with("# Fixture performance page\n\nHand-written text"));
    assert!(text.ends_with("Closing text, untouched.\n"));
    for block in PERFORMANCE_BLOCKS {
        assert!(text.contains(&format!("Prose about {block}.")));
    }
    assert!(text.contains("commit `0123456789`"));
    assert!(text.contains("Fixture CPU"));
    assert!(text.contains("diskcache (peer)"));
    assert!(text.contains("not run: not in this build of cacheness"));
    assert!(text.contains("Static reference, **not measured here**"));
    assert!(text.contains("PUT / GET vs diskcache"));
    let readme_text = std::fs::read_to_string(&readme).unwrap();
    assert!(readme_text.contains("| `sqlite` |"), "{readme_text}");
    assert!(readme_text.ends_with("See docs/PERFORMANCE.md.\n"));
    let w2 = std::fs::read_to_string(img.join("w2-scaling.svg")).unwrap();
    assert!(w2.starts_with("<svg") && w2.contains("sqlite") && w2.contains("cacache (peer)"));
    let w4 = std::fs::read_to_string(img.join("w4-hit-ratio.svg")).unwrap();
    assert!(w4.contains("memlayer+sqlite 80/20"), "{w4}");

    // Twice on the same results: nothing changes.
    let before: Vec<String> = generated
        .iter()
        .map(|(path, _)| std::fs::read_to_string(path).unwrap())
        .collect();
    let again = report(&from, &performance, &readme, &img);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("nothing changed"),
        "{}",
        stderr(&again)
    );
    let after: Vec<String> = generated
        .iter()
        .map(|(path, _)| std::fs::read_to_string(path).unwrap())
        .collect();
    assert_eq!(before, after);
}

/// Breaks a document's markers.
type Damage = dyn Fn(&str) -> String;

#[test]
fn broken_or_missing_markers_are_errors_that_touch_nothing() {
    let from = fixtures().join("results.json");
    let cases: [(&str, &Damage, &str); 4] = [
        (
            "PERFORMANCE.md",
            &|text| text.replace("<!-- bench:w3:end -->", ""),
            "inside block `bench:w3`, which has no end marker",
        ),
        (
            "PERFORMANCE.md",
            &|text| format!("{text}<!-- bench:w1:start -->\n<!-- bench:w1:end -->\n"),
            "block `bench:w1` appears twice",
        ),
        (
            "PERFORMANCE.md",
            &|text| {
                text.replace("<!-- bench:w6:start -->", "")
                    .replace("<!-- bench:w6:end -->", "")
            },
            "missing block `bench:w6`",
        ),
        (
            "README.md",
            &|text| {
                text.replace("<!-- bench:summary:start -->", "")
                    .replace("<!-- bench:summary:end -->", "")
            },
            "missing block `bench:summary`",
        ),
    ];
    for (file, damage, message) in cases {
        let (_docs, performance, readme, img) = documents();
        let target = if file == "README.md" {
            &readme
        } else {
            &performance
        };
        let damaged = damage(&std::fs::read_to_string(target).unwrap());
        std::fs::write(target, &damaged).unwrap();
        let untouched = std::fs::read_to_string(&performance).unwrap();
        let output = report(&from, &performance, &readme, &img);
        assert!(!output.status.success());
        let error = stderr(&output);
        assert!(error.contains(message), "{error}");
        assert!(error.contains(file), "{error}");
        assert_eq!(std::fs::read_to_string(target).unwrap(), damaged);
        assert_eq!(std::fs::read_to_string(&performance).unwrap(), untouched);
        assert!(!img.exists(), "plots written despite the error");
    }
}
