//! Determinism: results never depend on how rows were grouped into batches.

use crate::common::*;
use serde_json::Value;

#[tokio::test]
async fn batch_size_does_not_change_results() {
    // Updating results are compared as final tables: how many intermediate updates there are
    // depends on batching (as with Flink's mini-batches), the table they lead to does not.
    for case in all_conformance_cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let sql = job_in_dir(&case);
        let reference = final_table(&run_query(&sql, 4096).await);
        assert!(!reference.is_empty(), "{name}: no rows");
        for size in [1, 7] {
            let rows = final_table(&run_query(&sql, size).await);
            assert_same_rows(&format!("{name} (batch size {size})"), &rows, &reference);
        }
    }
}

/// A session job over `rows` (`(key, seconds)`), gap 5 s, watermark `ts - 1 s`, written to a
/// file of its own; the query's rows at `batch_size`, sorted.
async fn sessions(name: &str, rows: &[(&str, f64)], batch_size: usize) -> Vec<Value> {
    let dir = std::env::temp_dir().join(format!("weir-sessions-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.jsonl");
    let lines: String = rows
        .iter()
        .map(|(k, s)| {
            let ms = (s * 1000.0).round() as i64;
            let ts = chrono::DateTime::from_timestamp_millis(1_704_067_200_000 + ms).unwrap();
            format!(
                "{{\"k\":\"{k}\",\"ts\":\"{}\"}}\n",
                ts.format("%Y-%m-%d %H:%M:%S%.3f")
            )
        })
        .collect();
    std::fs::write(&input, lines).unwrap();
    let sql = format!(
        "CREATE TABLE t (k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         SELECT k, SESSION_START(ts, INTERVAL '5' SECOND) AS ws,
           SESSION_END(ts, INTERVAL '5' SECOND) AS we, COUNT(*) AS cnt
         FROM t GROUP BY k, SESSION(ts, INTERVAL '5' SECOND);",
        input.display()
    );
    let mut out = run_query(&sql, batch_size).await;
    out.sort_by_key(|v| v.to_string());
    out
}

#[tokio::test]
async fn a_row_after_its_neighbouring_session_fired_starts_a_new_session() {
    // The row at 9.5 s raises the watermark to 8.5 s, which fires [0 s, 8 s); the row at 7 s
    // then opens a session that merges with [9.5 s, 14.5 s). Flink: two sessions of 2 rows.
    let rows = [("a", 0.0), ("a", 3.0), ("a", 9.5), ("a", 7.0)];
    let expected: Vec<Value> = [
        r#"{"k":"a","ws":"2024-01-01 00:00:00.000","we":"2024-01-01 00:00:08.000","cnt":2}"#,
        r#"{"k":"a","ws":"2024-01-01 00:00:07.000","we":"2024-01-01 00:00:14.500","cnt":2}"#,
    ]
    .iter()
    .map(|s| serde_json::from_str(s).unwrap())
    .collect();
    for size in [1, 2, 4, 4096] {
        let got = sessions("neighbour", &rows, size).await;
        assert_same_rows(&format!("batch size {size}"), &got, &expected);
    }
}

#[tokio::test]
async fn sessions_do_not_depend_on_batching_when_rows_arrive_after_a_neighbour_fired() {
    // Three keys, rows out of order by up to 3 s (more than the 1 s watermark delay), so rows
    // keep arriving just after a neighbouring session of their key fired, or as late rows.
    let mut rows = Vec::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut t = 0.0;
    for _ in 0..600 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t += (x % 2000) as f64 / 1000.0;
        let jitter = ((x >> 20) % 3000) as f64 / 1000.0;
        let key = ["a", "b", "c"][(x >> 40) as usize % 3];
        rows.push((key, (t - jitter).max(0.0)));
    }
    let reference = sessions("random", &rows, 1).await;
    assert!(reference.len() > 20, "{} sessions", reference.len());
    for size in [7, 4096] {
        let got = sessions("random", &rows, size).await;
        assert_same_rows(&format!("batch size {size}"), &got, &reference);
    }
}
