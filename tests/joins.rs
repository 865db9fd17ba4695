//! Joins through the engine: interval joins (INNER, LEFT, RIGHT and FULL with inclusive and
//! strict bounds; late rows of either input dropped and counted), regular joins (INNER, and
//! outer joins whose other input ends, append-only; changelog joins of an updating input or
//! an unbounded one), temporal joins (an idle versioned side does not stall them), and the
//! joins that do not run as a stream refused with a hint.

use serde_json::{json, Value};

use crate::common::*;

/// `t` and `e` (each `k STRING, ts TIMESTAMP(3)` with a watermark of `ts`) over `t_rows` and
/// `e_rows` (`(key, second of 2024-01-01 00:00)`), then `query`.
fn script(name: &str, t_rows: &[(&str, u32)], e_rows: &[(&str, u32)], query: &str) -> String {
    let dir = std::env::temp_dir().join(format!("weir-joins-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |file: &str, rows: &[(&str, u32)]| {
        let text: String = rows
            .iter()
            .map(|(k, s)| format!("{{\"k\":\"{k}\",\"ts\":\"2024-01-01 00:00:{s:02}.000\"}}\n"))
            .collect();
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (t, e) = (write("t.jsonl", t_rows), write("e.jsonl", e_rows));
    let table = |name: &str, path: &std::path::Path| {
        format!(
            "CREATE TABLE {name} (k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
            path.display()
        )
    };
    format!("{} {} {query}", table("t", &t), table("e", &e))
}

fn row(tk: Option<&str>, ts: Option<u32>, ek: Option<&str>, es: Option<u32>) -> Value {
    let at = |s: Option<u32>| s.map(|s| format!("2024-01-01 00:00:{s:02}.000"));
    json!({"tk": tk, "t_ts": at(ts), "ek": ek, "e_ts": at(es)})
}

const T: &[(&str, u32)] = &[("a", 10), ("b", 20), ("a", 30)];
const E: &[(&str, u32)] = &[("a", 11), ("c", 21), ("a", 40)];

async fn joined(kind: &str, condition: &str) -> Vec<Value> {
    let query = format!(
        "SELECT t.k AS tk, t.ts AS t_ts, e.k AS ek, e.ts AS e_ts
         FROM t {kind} JOIN e ON t.k = e.k AND {condition};"
    );
    let sql = script(&kind.replace(' ', "_"), T, E, &query);
    let mut rows = Vec::new();
    for batch in [1, 7, 4096] {
        let got = run_query(&sql, batch).await;
        if batch > 1 {
            assert_same_rows(kind, &got, &rows);
        }
        rows = got;
    }
    rows
}

#[tokio::test]
async fn inner_left_right_and_full_interval_joins() {
    let between = "e.ts BETWEEN t.ts - INTERVAL '2' SECOND AND t.ts + INTERVAL '2' SECOND";
    let pair = row(Some("a"), Some(10), Some("a"), Some(11));
    let t_alone = [
        row(Some("b"), Some(20), None, None),
        row(Some("a"), Some(30), None, None),
    ];
    let e_alone = [
        row(None, None, Some("c"), Some(21)),
        row(None, None, Some("a"), Some(40)),
    ];
    assert_same_rows(
        "inner",
        &joined("INNER", between).await,
        std::slice::from_ref(&pair),
    );
    let left = [vec![pair.clone()], t_alone.to_vec()].concat();
    assert_same_rows("left", &joined("LEFT", between).await, &left);
    let right = [vec![pair.clone()], e_alone.to_vec()].concat();
    assert_same_rows("right", &joined("RIGHT", between).await, &right);
    let full = [vec![pair.clone()], t_alone.to_vec(), e_alone.to_vec()].concat();
    assert_same_rows("full", &joined("FULL", between).await, &full);
    // Strict bounds, written the other way round (11 s is within 2 s of 10 s).
    let strict = "t.ts - INTERVAL '2' SECOND < e.ts AND t.ts + INTERVAL '2' SECOND > e.ts";
    let got = joined("LEFT", strict).await;
    assert_same_rows("strict", &got, &[vec![pair], t_alone.to_vec()].concat());
}

#[tokio::test]
async fn a_late_row_of_either_input_is_dropped_and_counted() {
    // `a` at 00:00:05 comes after 00:00:30 on its input: late, whatever the other input did.
    let t = [("a", 10), ("a", 30), ("a", 5)];
    let e = [("a", 6), ("a", 31), ("a", 4)];
    let sql = script(
        "late",
        &t,
        &e,
        "SELECT t.ts AS t_ts, e.ts AS e_ts FROM t JOIN e ON t.k = e.k
         AND e.ts BETWEEN t.ts - INTERVAL '5' SECOND AND t.ts + INTERVAL '5' SECOND;",
    );
    let (rows, job) = query_to_end(&sql, 1).await;
    let at = |s: u32| format!("2024-01-01 00:00:{s:02}.000");
    let want = [
        json!({"t_ts": at(10), "e_ts": at(6)}),
        json!({"t_ts": at(30), "e_ts": at(31)}),
    ];
    assert_same_rows("late", &rows, &want);
    assert_eq!(job.late_rows(), 2);
}

#[tokio::test]
async fn joins_that_do_not_run_as_a_stream_yet_say_so() {
    let cases = [
        (
            "SELECT * FROM (SELECT k, ts FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k
               ORDER BY ts DESC) AS rn FROM t) WHERE rn = 1) AS d JOIN e
             ON d.k = e.k AND e.ts BETWEEN d.ts AND d.ts + INTERVAL '1' SECOND;",
            "interval or window join of an updating input",
        ),
        (
            "SELECT * FROM t JOIN e ON e.ts BETWEEN t.ts AND t.ts + INTERVAL '1' SECOND;",
            "equality",
        ),
        (
            "SELECT * FROM t JOIN e ON t.k = e.k AND e.ts BETWEEN t.ts + INTERVAL '2' SECOND AND t.ts;",
            "admit no pair",
        ),
        (
            "SELECT * FROM t WHERE k NOT IN (SELECT k FROM e);",
            "NOT IN over a stream whose subquery column can be NULL",
        ),
    ];
    for (query, want) in cases {
        let g =
            "CREATE TABLE g (k STRING) WITH ('connector' = 'datagen', 'rows-per-second' = '1');";
        let sql = script("refused", T, E, &format!("{g} {query}"));
        let err = planning_error(&sql).await;
        assert!(err.contains(want), "{query}: {err}");
    }
}

#[tokio::test]
async fn regular_joins_hold_rows_until_the_other_input_ends() {
    // No time condition: every pair of equal keys, whatever their times.
    let query = |kind: &str| {
        format!(
            "SELECT t.k AS tk, t.ts AS t_ts, e.k AS ek, e.ts AS e_ts
             FROM t {kind} JOIN e ON t.k = e.k;"
        )
    };
    let pairs = [
        row(Some("a"), Some(10), Some("a"), Some(11)),
        row(Some("a"), Some(10), Some("a"), Some(40)),
        row(Some("a"), Some(30), Some("a"), Some(11)),
        row(Some("a"), Some(30), Some("a"), Some(40)),
    ];
    let b_alone = row(Some("b"), Some(20), None, None);
    let c_alone = row(None, None, Some("c"), Some(21));
    for (kind, extra) in [
        ("INNER", vec![]),
        ("LEFT", vec![b_alone.clone()]),
        ("RIGHT", vec![c_alone.clone()]),
        ("FULL", vec![b_alone, c_alone]),
    ] {
        let sql = script(&format!("regular-{kind}"), T, E, &query(kind));
        let want = [pairs.to_vec(), extra].concat();
        for batch in [1, 4096] {
            let (rows, job) = query_to_end(&sql, batch).await;
            assert_same_rows(kind, &rows, &want);
            assert_eq!(job.late_rows(), 0, "a regular join drops no row as late");
        }
    }
}

#[tokio::test]
async fn a_regular_join_of_an_updating_input_is_a_changelog_whose_table_is_the_join() {
    // Counts per key of `t` (a: 2, b: 1) LEFT JOIN `e` (a at 11 s and 40 s, c at 21 s).
    let sql = script(
        "changelog",
        T,
        E,
        "SELECT c.k, c.n, e.ts AS e_ts FROM (SELECT k, COUNT(*) AS n FROM t GROUP BY k) AS c
         LEFT JOIN e ON c.k = e.k;",
    );
    let at = |s: u32| json!(format!("2024-01-01 00:00:{s:02}.000"));
    let want = [
        json!({"k": "a", "n": 2, "e_ts": at(11)}),
        json!({"k": "a", "n": 2, "e_ts": at(40)}),
        json!({"k": "b", "n": 1, "e_ts": null}),
    ];
    for batch in [1, 4096] {
        let rows = run_query(&sql, batch).await;
        assert!(is_changelog(&rows), "{rows:?}");
        assert_same_rows("changelog join", &materialize(&rows), &want);
    }
}

#[tokio::test]
async fn an_outer_join_with_an_input_that_does_not_end_pads_its_rows_at_once() {
    // `g` never ends (and its 5-letter keys never match): each row of `t` comes out
    // NULL-padded at once, as a changelog's insert (a partner would delete it again: see
    // `operators::changelog_join::tests`).
    let g = "CREATE TABLE g (k STRING, n BIGINT) WITH ('connector' = 'datagen',
       'rows-per-second' = '1000', 'fields.k.length' = '5', 'fields.n.min' = '1',
       'fields.n.max' = '1');";
    let sql = script(
        "outer-unbounded",
        T,
        E,
        &format!("{g} SELECT t.k, g.n FROM t LEFT JOIN g ON t.k = g.k;"),
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let mut stream = engine.query(&sql).await.unwrap();
    let batch = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next_batch())
        .await
        .expect("the padded rows come at once")
        .unwrap()
        .unwrap();
    let mut rows = to_json(&[batch], None);
    while rows.len() < T.len() {
        let more = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next_batch());
        let batch = more.await.expect("every row of t").unwrap().unwrap();
        rows.extend(to_json(&[batch], None));
    }
    assert!(is_changelog(&rows), "{rows:?}");
    assert!(
        rows.iter().all(|r| r["op"] == "+I" && r["n"].is_null()),
        "{rows:?}"
    );
    stream.job().cancel();
}

#[tokio::test]
async fn a_left_window_join_pads_the_windows_the_other_input_lacks() {
    // Counts per key and 10-second window on each side; `e` has no row in t's second window.
    let t = [("a", 1), ("b", 3), ("a", 2), ("a", 12)];
    let e = [("a", 5), ("b", 8), ("b", 9)];
    let counts = |table: &str| {
        format!(
            "SELECT k, window_start, window_end, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE {table},
               DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY k, window_start, window_end"
        )
    };
    let query = format!(
        "SELECT a.k, a.window_start AS ws, a.n AS tn, b.n AS en FROM ({}) a LEFT JOIN ({}) b
         ON a.k = b.k AND a.window_start = b.window_start AND a.window_end = b.window_end;",
        counts("t"),
        counts("e")
    );
    let sql = script("window-left", &t, &e, &query);
    let at = |s: u32| format!("2024-01-01 00:00:{s:02}.000");
    let want = [
        json!({"k": "a", "ws": at(0), "tn": 2, "en": 1}),
        json!({"k": "b", "ws": at(0), "tn": 1, "en": 2}),
        json!({"k": "a", "ws": at(10), "tn": 1, "en": null}),
    ];
    for batch in [1, 4096] {
        assert_same_rows("left window join", &run_query(&sql, batch).await, &want);
    }
}

#[tokio::test]
async fn semi_and_anti_joins_emit_left_rows_once() {
    let at = |s: u32| format!("2024-01-01 00:00:{s:02}.000");
    let a = [
        json!({"k": "a", "ts": at(10)}),
        json!({"k": "a", "ts": at(30)}),
    ];
    let b = [json!({"k": "b", "ts": at(20)})];
    let cases = [
        ("WHERE EXISTS (SELECT 1 FROM e WHERE e.k = t.k)", &a[..]),
        ("WHERE k IN (SELECT k FROM e)", &a[..]),
        ("WHERE NOT EXISTS (SELECT 1 FROM e WHERE e.k = t.k)", &b[..]),
        (
            "WHERE EXISTS (SELECT 1 FROM e WHERE e.k = t.k
               AND e.ts BETWEEN t.ts - INTERVAL '2' SECOND AND t.ts + INTERVAL '2' SECOND)",
            &a[..1],
        ),
    ];
    for (i, (filter, want)) in cases.into_iter().enumerate() {
        let sql = script(
            &format!("semi-{i}"),
            T,
            E,
            &format!("SELECT k, ts FROM t {filter};"),
        );
        for batch in [1, 4096] {
            assert_same_rows(filter, &run_query(&sql, batch).await, want);
        }
    }
}

#[tokio::test]
async fn a_temporal_join_takes_the_version_valid_at_each_rows_time() {
    // Versions of `a` from 11 s and from 40 s: the row at 30 s gets the one from 11 s, the row
    // at 10 s none (LEFT keeps it with NULLs), whatever the batching.
    let query = |kind: &str| {
        format!(
            "SELECT t.k AS tk, t.ts AS t_ts, e.k AS ek, e.ts AS e_ts
             FROM t {kind} JOIN e FOR SYSTEM_TIME AS OF t.ts ON t.k = e.k;"
        )
    };
    let found = row(Some("a"), Some(30), Some("a"), Some(11));
    let lone = [
        row(Some("a"), Some(10), None, None),
        row(Some("b"), Some(20), None, None),
    ];
    for (kind, want) in [
        ("INNER", vec![found.clone()]),
        ("LEFT", [vec![found.clone()], lone.to_vec()].concat()),
    ] {
        let sql = script(&format!("temporal-{kind}"), T, E, &query(kind));
        for batch in [1, 4096] {
            assert_same_rows(kind, &run_query(&sql, batch).await, &want);
        }
    }
}

#[tokio::test]
async fn an_idle_versioned_side_does_not_stall_a_temporal_join() {
    use crate::common::kafka::Broker;
    let broker = Broker::start();
    broker.create_topic("readings", 1).await;
    broker.create_topic("offsets", 1).await;
    let record = |json: String| (0, "s1".to_string(), json.into_bytes());
    let readings: Vec<_> = [10, 20, 30]
        .iter()
        .map(|s| {
            record(format!(
                r#"{{"sensor":"s1","v":{s},"ts":"2024-01-01 00:00:{s:02}.000"}}"#
            ))
        })
        .collect();
    broker.produce("readings", &readings, 1).await;
    let offset = r#"{"sensor":"s1","off":5,"ts":"2024-01-01 00:00:00.000"}"#;
    broker.produce("offsets", &[record(offset.into())], 1).await;
    let table = |name: &str, columns: &str, idle: &str| {
        format!(
            "CREATE TABLE {name} (sensor STRING, {columns}, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts) WITH ('connector' = 'kafka', 'topic' = '{name}',
               'properties.bootstrap.servers' = '{}', 'format' = 'json',
               'scan.startup.mode' = 'earliest-offset'{idle});",
            broker.bootstrap
        )
    };
    let sql = format!(
        "{} {} SELECT r.v, o.off FROM readings AS r
           JOIN offsets FOR SYSTEM_TIME AS OF r.ts AS o ON r.sensor = o.sensor;",
        table("readings", "v BIGINT", ""),
        table(
            "offsets",
            "off BIGINT",
            ", 'scan.watermark.idle-timeout' = '300 ms'"
        ),
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let mut stream = engine.query(&sql).await.unwrap();
    // The offsets never pass 00:00:00: without the idle timeout no reading would be joined.
    let mut rows = Vec::new();
    while rows.len() < 3 {
        let batch = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next_batch())
            .await
            .expect("the readings are joined once the offsets are idle")
            .unwrap()
            .unwrap();
        rows.extend(to_json(&[batch], None));
    }
    let want: Vec<Value> = [10, 20, 30]
        .iter()
        .map(|v| json!({"v": v, "off": 5}))
        .collect();
    assert_same_rows("idle versions", &rows, &want);
    stream.job().cancel();
}
