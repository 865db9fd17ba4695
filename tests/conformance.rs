//! Golden tests: every case in `tests/conformance/` (copied from `shared/conformance`, results
//! computed by Apache Flink 2.2) must produce exactly Flink's rows.

use crate::common::*;

async fn run_case(name: &str) {
    let dir = root().join("tests/conformance").join(name);
    let sql = job_in_dir(&dir);
    let actual = run_query(&sql, 8192).await;
    let expected = read_jsonl(&dir.join("expected.jsonl"));
    assert_same_rows(name, &actual, &expected);
}

#[test]
fn every_case_has_a_test() {
    let names: Vec<String> = conformance_cases()
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
