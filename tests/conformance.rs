//! Golden tests: every case in `tests/conformance/` (copied from `shared/conformance`, results
//! computed by Apache Flink 2.2) must produce exactly Flink's rows. Updating cases (`updating_*`)
//! run through `weir run --format json`, whose changelog (with its `op` field) is applied and
//! must give Flink's final table. Join and OVER cases run in batches of 1, 7 and 4096 rows.

use std::process::Command;

use crate::common::*;

/// Batch sizes a case runs with: joins and OVER aggregates (`join_*`, `over_*`) with 1, 7 and
/// 4096 rows per batch, whose results must not differ; the other cases with one.
fn batch_sizes(name: &str) -> &'static [usize] {
    if name.starts_with("join_") || name.starts_with("over_") {
        &[1, 7, 4096]
    } else {
        &[8192]
    }
}

async fn run_case(name: &str) {
    let dir = root().join("tests/conformance").join(name);
    let sql = job_in_dir(&dir);
    let expected = read_jsonl(&dir.join("expected.jsonl"));
    for batch in batch_sizes(name) {
        let actual = run_query(&sql, *batch).await;
        assert_same_rows(&format!("{name} in batches of {batch}"), &actual, &expected);
    }
}

/// `weir run --format json job.sql` in the case's folder; its changelog applied.
fn run_updating_case(name: &str) {
    let dir = root().join("tests/conformance").join(name);
    let out = Command::new(weir_bin())
        .args(["run", "--format", "json", "job.sql"])
        .current_dir(&dir)
        .output()
        .expect("weir runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}: weir run failed: {stderr}");
    let changelog: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}")))
        .collect();
    assert!(is_changelog(&changelog), "{name}: rows carry no op field");
    let expected = read_jsonl(&dir.join("expected.jsonl"));
    assert_same_rows(name, &materialize(&changelog), &expected);
}

/// Every folder of `tests/conformance/` is a case (adding a case is adding a folder); the
/// updating ones (`updating_*`) through `weir run`. Every failing case is reported.
#[tokio::test]
async fn every_conformance_case_gives_flinks_rows() {
    let mut failed = Vec::new();
    let names: Vec<String> = all_conformance_cases()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert!(names.len() >= 12, "conformance cases: {names:?}");
    for name in names {
        let updating = name.starts_with("updating_");
        let result = tokio::spawn(async move {
            match updating {
                true => run_updating_case(&name),
                false => run_case(&name).await,
            }
            name
        })
        .await;
        if let Err(e) = result {
            failed.push(e.to_string());
        }
    }
    assert!(failed.is_empty(), "failed cases: {failed:#?}");
}
