//! Golden tests: every case in `tests/conformance/` (copied from `shared/conformance`, results
//! computed by Apache Flink 2.2) must produce exactly Flink's rows. Updating cases (`updating_*`)
//! run through `weir run --format json`, whose changelog (with its `op` field) is applied and
//! must give Flink's final table.

use std::process::Command;

use crate::common::*;

async fn run_case(name: &str) {
    let dir = root().join("tests/conformance").join(name);
    let sql = job_in_dir(&dir);
    let actual = run_query(&sql, 8192).await;
    let expected = read_jsonl(&dir.join("expected.jsonl"));
    assert_same_rows(name, &actual, &expected);
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

#[test]
fn every_case_has_a_test() {
    let names: Vec<String> = all_conformance_cases()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    let known = [
        "cumulate_tvf",
        "filter_project_no_window",
        "hop_group",
        "hop_tvf",
        "late_rows_dropped",
        "session_group",
        "session_tvf",
        "tumble_group",
        "tumble_offset_tvf",
        "tumble_tvf",
        "updating_count_per_sensor",
        "updating_dedup_keep_last",
    ];
    for n in &names {
        assert!(
            known.contains(&n.as_str()),
            "conformance case {n} has no test"
        );
    }
}

macro_rules! case {
    ($name:ident) => {
        #[tokio::test]
        async fn $name() {
            run_case(stringify!($name)).await;
        }
    };
}

case!(cumulate_tvf);
case!(filter_project_no_window);
case!(hop_group);
case!(hop_tvf);
case!(late_rows_dropped);
case!(session_group);
case!(session_tvf);
case!(tumble_group);
case!(tumble_offset_tvf);
case!(tumble_tvf);

macro_rules! updating_case {
    ($name:ident) => {
        #[test]
        fn $name() {
            run_updating_case(stringify!($name));
        }
    };
}

updating_case!(updating_count_per_sensor);
updating_case!(updating_dedup_keep_last);
