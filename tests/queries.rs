//! Query features end to end: time zones and DST, chained windows, aggregate functions, HAVING,
//! UNION ALL, CTEs, views over views, CSV input and computed event-time columns.

use crate::common::*;
use serde_json::json;

fn temp_file(name: &str, content: &str) -> String {
    let dir = std::env::temp_dir().join(format!("weir-queries-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_string_lossy().to_string()
}

/// Rows `(k, v, epoch ms)` as JSON lines with an epoch-millisecond field `ts_ms`.
fn epoch_rows(rows: &[(&str, f64, i64)]) -> String {
    rows.iter()
        .map(|(k, v, t)| format!("{{\"k\":\"{k}\",\"v\":{v},\"ts_ms\":{t}}}\n"))
        .collect()
}

#[tokio::test]
async fn ltz_day_windows_follow_local_midnight_across_dst() {
    // New York, 2024-03-10 has 23 hours: local midnight is 05:00Z, the next one 04:00Z.
    let rows = [
        ("a", 1.0, 1_710_046_800_000), // 2024-03-10 05:00Z = 00:00 local
        ("a", 2.0, 1_710_129_599_000), // 2024-03-11 03:59:59Z = 23:59:59 local (still the 10th)
        ("a", 4.0, 1_710_129_600_000), // 2024-03-11 04:00Z = 00:00 local on the 11th
    ];
    let path = temp_file("ltz.jsonl", &epoch_rows(&rows));
    let sql = format!(
        "SET 'table.local-time-zone' = 'America/New_York';
         CREATE TABLE e (k STRING, v DOUBLE, ts_ms BIGINT, ts AS TO_TIMESTAMP_LTZ(ts_ms, 3),
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
         SELECT window_start, window_end, window_time, SUM(v) AS s, COUNT(*) AS c
         FROM TABLE(TUMBLE(TABLE e, DESCRIPTOR(ts), INTERVAL '1' DAY))
         GROUP BY window_start, window_end, window_time;"
    );
    let mut got = run_query(&sql, 8192).await;
    got.sort_by_key(|r| r["window_start"].as_str().unwrap().to_string());
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["window_start"], "2024-03-10 00:00:00.000");
    assert_eq!(got[0]["window_end"], "2024-03-11 00:00:00.000");
    assert_eq!(got[0]["s"], 3.0);
    // window_time is an instant shown in the session zone: one millisecond before local midnight.
    assert_eq!(got[0]["window_time"], "2024-03-10 23:59:59.999");
    assert_eq!(got[1]["window_start"], "2024-03-11 00:00:00.000");
    assert_eq!(got[1]["c"], 1);
}

#[tokio::test]
async fn chained_windows_equal_a_direct_coarse_window() {
    let case = root().join("tests/conformance/tumble_tvf");
    let ddl = job_in_dir(&case);
    let ddl = &ddl[..ddl.find("SELECT").unwrap()];
    let chained = format!(
        "{ddl}
        CREATE VIEW per_minute AS
          SELECT sensor_id, window_time AS rt, COUNT(*) AS c, SUM(temperature) AS s
          FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
          GROUP BY sensor_id, window_start, window_end, window_time;
        SELECT sensor_id, window_start, SUM(c) AS c, SUM(s) AS s
        FROM TABLE(TUMBLE(TABLE per_minute, DESCRIPTOR(rt), INTERVAL '10' MINUTE))
        GROUP BY sensor_id, window_start, window_end;"
    );
    let direct = format!(
        "{ddl}
        SELECT sensor_id, TUMBLE_START(ts, INTERVAL '10' MINUTE) AS window_start, COUNT(*) AS c, SUM(temperature) AS s
        FROM t GROUP BY sensor_id, TUMBLE(ts, INTERVAL '10' MINUTE);"
    );
    let a = run_query(&chained, 8192).await;
    let b = run_query(&direct, 8192).await;
    assert!(!a.is_empty());
    assert_same_rows("chained", &a, &b);
}

#[tokio::test]
async fn aggregate_functions_and_having() {
    let rows = [
        ("a", 1.0, 0),
        ("a", 3.0, 1000),
        ("a", 3.0, 2000),
        ("b", 10.0, 3000),
        ("a", 5.0, 61_000),
    ];
    let path = temp_file("aggs.jsonl", &epoch_rows(&rows));
    let sql = format!(
        "CREATE TABLE e (k STRING, v DOUBLE, ts_ms BIGINT, ts AS TO_TIMESTAMP_LTZ(ts_ms, 3),
           WATERMARK FOR ts AS ts)
         WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
         SELECT k, COUNT(*) AS n, COUNT(DISTINCT v) AS d, SUM(v) AS s, AVG(v) AS a, MIN(v) AS lo,
                MAX(v) AS hi, STDDEV_POP(v) AS sp, VAR_SAMP(v) AS vs, FIRST_VALUE(v) AS f,
                LAST_VALUE(v) AS l
         FROM TABLE(TUMBLE(TABLE e, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY k, window_start, window_end HAVING COUNT(*) > 1;"
    );
    let got = run_query(&sql, 2).await;
    let sp = ((1.0f64 - 7.0 / 3.0).powi(2) + 2.0 * (3.0f64 - 7.0 / 3.0).powi(2)) / 3.0;
    let expected = vec![json!({
        "k": "a", "n": 3, "d": 2, "s": 7.0, "a": 7.0 / 3.0, "lo": 1.0, "hi": 3.0,
        "sp": sp.sqrt(), "vs": sp * 3.0 / 2.0, "f": 1.0, "l": 3.0
    })];
    assert_same_rows("aggregates", &got, &expected);
}

#[tokio::test]
async fn union_all_cte_and_views_over_views_with_csv_input() {
    let csv = temp_file(
        "in.csv",
        "a,1.5,2024-01-01 00:00:01.000\nb,2.5,2024-01-01 00:00:02.000\n",
    );
    let sql = format!(
        "CREATE TABLE c (k STRING, v DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
         WITH ('connector' = 'filesystem', 'path' = '{csv}', 'format' = 'csv');
         CREATE VIEW v1 AS SELECT k, v * 2 AS v2, ts FROM c;
         CREATE VIEW v2 AS SELECT k, v2 + 1 AS v3, ts FROM v1 WHERE v2 > 0;
         WITH both AS (SELECT k, v3 FROM v2 UNION ALL SELECT UPPER(k) AS k, v3 FROM v2)
         SELECT k, CASE WHEN v3 > 5 THEN 'high' ELSE 'low' END AS level, CAST(v3 AS INT) AS i FROM both;"
    );
    let got = run_query(&sql, 8192).await;
    let expected = vec![
        json!({"k": "a", "level": "low", "i": 4}),
        json!({"k": "A", "level": "low", "i": 4}),
        json!({"k": "b", "level": "high", "i": 6}),
        json!({"k": "B", "level": "high", "i": 6}),
    ];
    assert_same_rows("union", &got, &expected);
}

#[tokio::test]
async fn date_format_and_char_length() {
    let path = temp_file(
        "fmt.jsonl",
        &epoch_rows(&[("sensor", 1.0, 1_704_067_261_500)]),
    );
    let sql = format!(
        "CREATE TABLE e (k STRING, v DOUBLE, ts_ms BIGINT, ts AS TO_TIMESTAMP_LTZ(ts_ms, 3))
         WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
         SELECT DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm') AS d, CHAR_LENGTH(k) AS n FROM e;"
    );
    let got = run_query(&sql, 8192).await;
    assert_eq!(got, vec![json!({"d": "2024-01-01 00:01", "n": 6})]);
}

#[tokio::test]
async fn explain_analyze_shows_rows_and_time_per_operator() {
    let sql = absolutize_paths(
        &std::fs::read_to_string(root().join("sql-examples/sensors_tumble.sql")).unwrap(),
        &root(),
    );
    let body = sql.trim_end().trim_end_matches(';');
    let cut = body.rfind(';').unwrap() + 1;
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.execute(&body[..cut]).await.unwrap();
    // AVG of a DOUBLE pre-aggregates by default: its sums are exact, whatever the grouping.
    engine
        .execute("SET 'parallelism.default' = '2'")
        .await
        .unwrap();
    let out = engine
        .execute(&format!("EXPLAIN ANALYZE {}", &body[cut..]))
        .await
        .unwrap();
    let Some(weir::Output::Text(text)) = out.into_iter().last() else {
        panic!("EXPLAIN ANALYZE prints text");
    };
    assert!(text.contains("Analyzed plan"), "{text}");
    let source = text.lines().find(|l| l.contains("Source:")).expect(&text);
    assert!(
        source.contains("out=20000"),
        "every reading leaves the source: {text}"
    );
    let assign = text
        .lines()
        .find(|l| l.contains("WindowAssign"))
        .expect(&text);
    assert!(assign.contains("rows in=20000"), "{text}");
    // At parallelism 2 rows are folded into one partial row per window and sensor before
    // the exchange, held until the window fires: the aggregation receives those (100
    // sensors, 100 windows of 5 minutes, from one or both source subtasks).
    let agg = text
        .lines()
        .find(|l| l.contains("WindowAggregate:"))
        .expect(&text);
    let rows_in: u64 = agg
        .split("rows in=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect(&text);
    assert!((100..20000).contains(&rows_in), "partial rows: {text}");
    assert!(agg.contains("busy="), "{text}");
    assert!(text.contains("LocalWindowAggregate"), "{text}");
    assert!(agg.contains("backpressured="), "{text}");
}

#[tokio::test]
async fn explain_analyze_of_an_unbounded_query_stops_and_shows_what_ran() {
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine
        .execute("CREATE TABLE gen (v BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '1000');")
        .await
        .unwrap();
    let statement = weir::planner::parse_script("EXPLAIN ANALYZE SELECT v FROM gen WHERE v > 0;")
        .unwrap()
        .remove(0);
    // Stop once the source has read rows: the query itself never ends.
    let watcher = engine.clone();
    let stop = async move {
        while watcher
            .jobs()
            .first()
            .is_none_or(|j| weir::engine_metrics::get(&j.metrics().rows_in) == 0)
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        engine.execute_statement_until(statement, stop),
    )
    .await
    .expect("stopped")
    .unwrap();
    let weir::Output::Text(text) = out else {
        panic!("EXPLAIN ANALYZE prints text");
    };
    assert!(text.contains("Analyzed plan (cancelled after"), "{text}");
    let source = text
        .lines()
        .find(|l| l.contains("Source: gen"))
        .expect(&text);
    let out_rows: u64 = source
        .split("out=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect(&text);
    assert!(
        out_rows > 0,
        "the rows read before the stop are counted: {text}"
    );
    assert_eq!(
        engine.jobs()[0].status(),
        weir_engine::runtime::job::JobStatus::Cancelled
    );
}
