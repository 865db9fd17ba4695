//! OVER aggregates through the engine: RANGE and ROWS frames with every row of the same time
//! in a RANGE frame, sliding MIN, STDDEV, FIRST_VALUE, LAST_VALUE and FILTER, late rows dropped and counted, and the
//! OVER windows that cannot run as a stream refused with a hint.

use serde_json::{json, Value};

use crate::common::*;

/// Table `t (k STRING, v BIGINT, ts TIMESTAMP(3))`, watermark `ts - 1 s`, over `rows`
/// (`(key, second, value)`), then `query`.
fn script(name: &str, rows: &[(&str, u32, i64)], query: &str) -> String {
    let dir = std::env::temp_dir().join(format!("weir-over-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text: String = rows
        .iter()
        .map(|(k, s, v)| {
            format!("{{\"k\":\"{k}\",\"v\":{v},\"ts\":\"2024-01-01 00:00:{s:02}.000\"}}\n")
        })
        .collect();
    let path = dir.join("t.jsonl");
    std::fs::write(&path, text).unwrap();
    format!(
        "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json'); {query}",
        path.display()
    )
}

/// `a` at 0, 10, 20 (twice) and 40 s, `b` at 5 s, then a late `a` at 30 s.
const ROWS: &[(&str, u32, i64)] = &[
    ("a", 0, 1),
    ("b", 5, 10),
    ("a", 10, 2),
    ("a", 20, 3),
    ("a", 20, 5),
    ("a", 40, 4),
    ("a", 30, 100),
];

fn at(s: u32) -> String {
    format!("2024-01-01 00:00:{s:02}.000")
}

async fn rows_of(name: &str, query: &str) -> Vec<Value> {
    let sql = script(name, ROWS, query);
    let mut first = None;
    for batch in [1, 7, 4096] {
        let (rows, job) = query_to_end(&sql, batch).await;
        assert_eq!(
            job.late_rows(),
            1,
            "{name}: the row at 30 s after 40 s is late"
        );
        match &first {
            None => first = Some(rows),
            Some(f) => assert_same_rows(name, &rows, f),
        }
    }
    first.unwrap()
}

#[tokio::test]
async fn a_range_frame_holds_every_row_of_the_same_time() {
    let rows = rows_of(
        "range",
        "SELECT k, ts, v, COUNT(*) OVER w AS n, SUM(v) OVER w AS s, MIN(v) OVER w AS lo
         FROM t WINDOW w AS (PARTITION BY k ORDER BY ts
           RANGE BETWEEN INTERVAL '15' SECOND PRECEDING AND CURRENT ROW);",
    )
    .await;
    let r = |k: &str, s: u32, v: i64, n: i64, sum: i64, lo: i64| json!({"k": k, "ts": at(s), "v": v, "n": n, "s": sum, "lo": lo});
    let want = [
        r("a", 0, 1, 1, 1, 1),
        r("a", 10, 2, 2, 3, 1),
        r("a", 20, 3, 3, 10, 2),
        r("a", 20, 5, 3, 10, 2),
        r("a", 40, 4, 1, 4, 4),
        r("b", 5, 10, 1, 10, 10),
    ];
    assert_same_rows("range", &rows, &want);
}

#[tokio::test]
async fn first_and_last_value_are_the_frames_first_and_last_rows() {
    let rows = rows_of(
        "first-last",
        "SELECT k, ts, v, FIRST_VALUE(v) OVER w AS f, LAST_VALUE(v) OVER w AS l
         FROM t WINDOW w AS (PARTITION BY k ORDER BY ts
           RANGE BETWEEN INTERVAL '15' SECOND PRECEDING AND CURRENT ROW);",
    )
    .await;
    let r = |k: &str, s: u32, v: i64, f: i64, l: i64| json!({"k": k, "ts": at(s), "v": v, "f": f, "l": l});
    // Both rows at 20 s see the whole time's rows: the last is the one that came last (5).
    let want = [
        r("a", 0, 1, 1, 1),
        r("a", 10, 2, 1, 2),
        r("a", 20, 3, 2, 5),
        r("a", 20, 5, 2, 5),
        r("a", 40, 4, 4, 4),
        r("b", 5, 10, 10, 10),
    ];
    assert_same_rows("first and last", &rows, &want);
}

#[tokio::test]
async fn a_rows_frame_counts_rows_in_arrival_order_within_a_time() {
    let rows = rows_of(
        "rows",
        "SELECT k, ts, v, SUM(v) OVER w AS s, STDDEV_POP(v) OVER w AS sd,
           COUNT(*) FILTER (WHERE v > 2) OVER w AS big
         FROM t WINDOW w AS (PARTITION BY k ORDER BY ts ROWS BETWEEN 1 PRECEDING AND CURRENT ROW);",
    )
    .await;
    let r = |k: &str, s: u32, v: i64, sum: i64, sd: f64, big: i64| json!({"k": k, "ts": at(s), "v": v, "s": sum, "sd": sd, "big": big});
    let want = [
        r("a", 0, 1, 1, 0.0, 0),
        r("a", 10, 2, 3, 0.5, 0),
        r("a", 20, 3, 5, 0.5, 1),
        r("a", 20, 5, 8, 1.0, 2),
        r("a", 40, 4, 9, 0.5, 2),
        r("b", 5, 10, 10, 0.0, 1),
    ];
    assert_same_rows("rows", &rows, &want);
}

#[tokio::test]
async fn over_windows_that_cannot_run_as_a_stream_say_why() {
    let cases = [
        (
            "SELECT SUM(v) OVER (PARTITION BY k ORDER BY ts) FROM t;",
            "UNBOUNDED PRECEDING",
        ),
        (
            "SELECT SUM(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) FROM t;",
            "ends after the current row",
        ),
        (
            "SELECT SUM(v) OVER (PARTITION BY k ORDER BY v ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t;",
            "not ordered by the input's event time",
        ),
        (
            "SELECT LAG(v) OVER (PARTITION BY k ORDER BY ts) FROM t;",
            "lag() OVER (..) on a stream",
        ),
        (
            "SELECT SUM(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 1 PRECEDING AND CURRENT ROW),
                    SUM(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM t;",
            "different windows",
        ),
    ];
    for (query, want) in cases {
        let sql = script("refused", ROWS, query);
        let err = planning_error(&sql).await;
        assert!(err.contains(want), "{query}: {err}");
    }
}

#[tokio::test]
async fn collecting_aggregates_in_over_frames_and_windows() {
    let rows = rows_of(
        "collect",
        "SELECT k, ts, ARRAY_AGG(v) OVER w AS vs, COUNT(DISTINCT v) FILTER (WHERE v > 1) OVER w AS d
         FROM t WINDOW w AS (PARTITION BY k ORDER BY ts ROWS BETWEEN 1 PRECEDING AND CURRENT ROW);",
    )
    .await;
    let r = |k: &str, s: u32, vs: &[i64], d: i64| json!({"k": k, "ts": at(s), "vs": vs, "d": d});
    let want = [
        r("a", 0, &[1], 0),
        r("a", 10, &[1, 2], 1),
        r("a", 20, &[2, 3], 2),
        r("a", 20, &[3, 5], 2),
        r("a", 40, &[5, 4], 2),
        r("b", 5, &[10], 1),
    ];
    assert_same_rows("collect over", &rows, &want);
    // In a window the row at 30 s is not late: its minute has not fired yet.
    let sql = script(
        "collect-window",
        ROWS,
        "SELECT LISTAGG(k, ';') AS ks, LISTAGG(k) AS kc, ARRAY_AGG(v ORDER BY v DESC) AS vs
         FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY window_start, window_end;",
    );
    let want =
        [json!({"ks": "a;b;a;a;a;a;a", "kc": "a,b,a,a,a,a,a", "vs": [100, 10, 5, 4, 3, 2, 1]})];
    for batch in [1, 4096] {
        assert_same_rows("collect window", &run_query(&sql, batch).await, &want);
    }
}
