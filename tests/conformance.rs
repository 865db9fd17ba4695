//! Golden tests: every case in `tests/conformance/` (copied from `shared/conformance`, results
//! computed by Apache Flink 2.2) must produce exactly Flink's rows. Updating cases (`updating_*`)
//! run through `weir run --format json`, whose changelog (with its `op` field) is applied and
//! must give Flink's final table. Every case runs at parallelism 1, 2 and 4 (its input files
//! read in segments of 32 KB shared by the source subtasks), in batches of 1, 7 and 4096 rows,
//! and gives the same rows each time.

use std::process::Command;

use crate::common::*;

/// Batch sizes every case runs with; its results must not differ.
const BATCH_SIZES: [usize; 3] = [1, 7, 4096];

/// Parallelisms every case runs with; its results must not differ.
const PARALLELISMS: [usize; 3] = [1, 2, 4];

async fn run_case(name: &str) {
    let dir = root().join("tests/conformance").join(name);
    let sql = job_in_dir(&dir);
    let expected = read_jsonl(&dir.join("expected.jsonl"));
    // Above parallelism 1 the input files are cut into segments that the source subtasks
    // share, so lateness must come out as one reader's.
    let split = in_segments(&sql, "32kb");
    for p in PARALLELISMS {
        let sql = if p == 1 { &sql } else { &split };
        for batch in BATCH_SIZES {
            let actual = run_query_parallel(sql, batch, p).await;
            let run = format!("{name} at parallelism {p} in batches of {batch}");
            assert_same_rows(&run, &actual, &expected);
        }
    }
}

/// `weir run --format json job.sql` in the case's folder at each parallelism; its changelog
/// applied.
fn run_updating_case(name: &str) {
    for p in PARALLELISMS {
        run_updating_case_at(name, p);
    }
}

fn run_updating_case_at(name: &str, p: usize) {
    let dir = root().join("tests/conformance").join(name);
    let out = Command::new(weir_bin())
        .args(["run", "--format", "json", "-p", &p.to_string(), "job.sql"])
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
    let run = format!("{name} at parallelism {p}");
    assert_same_rows(&run, &materialize(&changelog), &expected);
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
