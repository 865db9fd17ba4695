//! The late-data destination: rows a window drops as late are written, with their columns, the
//! reason and the window they missed, to the sink table named by
//! `SET 'table.exec.late-data.sink'` or to the source's `'late-data.topic'` (a real broker).

use std::path::PathBuf;

use rdkafka::Message as _;
use serde_json::{json, Value};

use crate::common::kafka::{next_record, Broker};
use crate::common::*;

/// A fresh directory for one test's files.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-late-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `(key, seconds after 2024-01-01 00:00:00)` as JSON lines `{"k", "v", "ts"}`.
fn lines(rows: &[(&str, u32)]) -> String {
    rows.iter()
        .enumerate()
        .map(|(i, (k, s))| {
            let ts = format!("2024-01-01 00:{:02}:{:02}.000", s / 60, s % 60);
            format!("{}\n", json!({"k": k, "v": i, "ts": ts}))
        })
        .collect()
}

/// Input in arrival order: the watermark is the event time, so the row at 12 s fires the
/// window [0 s, 10 s) and the row at 3 s after it is late; likewise 15 s after 25 s.
const ROWS: &[(&str, u32)] = &[
    ("a", 1),
    ("a", 12),
    ("a", 3),
    ("b", 25),
    ("b", 15),
    ("a", 26),
];

fn source(input: &std::path::Path) -> String {
    format!(
        "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
        input.display()
    )
}

const LATE_TABLE: &str = "(k STRING, v BIGINT, ts TIMESTAMP(3), late_reason STRING,
    missed_window_start TIMESTAMP(3), missed_window_end TIMESTAMP(3), late_operator STRING)";

/// The late rows written to `path`, sorted by `v`.
fn late_rows(path: &std::path::Path) -> Vec<Value> {
    let mut rows = read_jsonl(path);
    rows.sort_by_key(|r| r["v"].as_i64());
    rows
}

#[tokio::test]
async fn late_rows_reach_the_late_data_sink_table_with_the_reason_and_the_window_missed() {
    let d = dir("sink");
    std::fs::write(d.join("in.jsonl"), lines(ROWS)).unwrap();
    let sql = format!(
        "{src}
         CREATE TABLE out (k STRING, window_start TIMESTAMP(3), n BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');
         CREATE TABLE late_rows {LATE_TABLE}
           WITH ('connector' = 'filesystem', 'path' = '{late}', 'format' = 'json');
         SET 'table.exec.late-data.sink' = 'late_rows';
         INSERT INTO out SELECT k, window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE t,
           DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY k, window_start, window_end;",
        src = source(&d.join("in.jsonl")),
        out = d.join("out.jsonl").display(),
        late = d.join("late.jsonl").display(),
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let job = engine.submit(&sql).await.unwrap();
    job.wait().await.unwrap();
    assert_eq!(job.late_rows(), 2);
    let reason = "every window of the row had fired";
    assert_eq!(
        late_rows(&d.join("late.jsonl")),
        vec![
            json!({"k": "a", "v": 2, "ts": "2024-01-01 00:00:03.000", "late_reason": reason,
                   "missed_window_start": "2024-01-01 00:00:00.000",
                   "missed_window_end": "2024-01-01 00:00:10.000", "late_operator": "WindowAssign"}),
            json!({"k": "b", "v": 4, "ts": "2024-01-01 00:00:15.000", "late_reason": reason,
                   "missed_window_start": "2024-01-01 00:00:10.000",
                   "missed_window_end": "2024-01-01 00:00:20.000", "late_operator": "WindowAssign"}),
        ]
    );
    let counted: i64 = read_jsonl(&d.join("out.jsonl"))
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .sum();
    assert_eq!(counted, 4, "the late rows are not in the result");
}

#[tokio::test]
async fn a_session_windows_late_rows_reach_the_sink_table_of_a_query() {
    // Gap 5 s: the row at 20 s fires the session [1 s, 6 s); the row at 2 s is then late.
    let d = dir("session");
    let rows = [("a", 1), ("a", 20), ("a", 2)];
    std::fs::write(d.join("in.jsonl"), lines(&rows)).unwrap();
    let sql = format!(
        "{src}
         CREATE TABLE late_rows {LATE_TABLE}
           WITH ('connector' = 'filesystem', 'path' = '{late}', 'format' = 'json');
         SET 'table.exec.late-data.sink' = 'late_rows';
         SELECT k, window_start, COUNT(*) AS n FROM TABLE(SESSION(TABLE t PARTITION BY k,
           DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY k, window_start, window_end;",
        src = source(&d.join("in.jsonl")),
        late = d.join("late.jsonl").display(),
    );
    let got = run_query(&sql, 1).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let late = late_rows(&d.join("late.jsonl"));
    assert_eq!(late.len(), 1, "{late:?}");
    // The session aggregation reads only the key and the row's own session [t, t + gap): the
    // columns the query does not read are NULL.
    assert_eq!(late[0]["k"], "a");
    assert_eq!(late[0]["late_operator"], "SessionWindowAggregate");
    assert_eq!(late[0]["missed_window_start"], "2024-01-01 00:00:02.000");
    assert_eq!(late[0]["missed_window_end"], "2024-01-01 00:00:07.000");
}

/// A table named `name` (`k STRING, v BIGINT, ts TIMESTAMP(3)`, watermark `ts`) over `rows`
/// written to `dir`.
fn named_source(dir: &std::path::Path, name: &str, rows: &[(&str, u32)]) -> String {
    let path = dir.join(format!("{name}.jsonl"));
    std::fs::write(&path, lines(rows)).unwrap();
    source(&path).replacen("CREATE TABLE t ", &format!("CREATE TABLE {name} "), 1)
}

#[tokio::test]
async fn late_rows_of_joins_and_over_aggregates_reach_the_late_data_sink() {
    // On each input the row at 5 s (t) or 4 s (e) comes after 30 s: late on its own input.
    let d = dir("joins");
    let t = named_source(&d, "t", &[("a", 10), ("a", 30), ("a", 5)]);
    let e = named_source(&d, "e", &[("a", 6), ("a", 31), ("a", 4)]);
    let late = d.join("late.jsonl");
    let sink = format!(
        "CREATE TABLE late_rows {LATE_TABLE}
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         SET 'table.exec.late-data.sink' = 'late_rows';",
        late.display()
    );
    let join = format!(
        "{t} {e} {sink} SELECT t.v AS tv, e.v AS ev FROM t JOIN e ON t.k = e.k
         AND e.ts BETWEEN t.ts - INTERVAL '5' SECOND AND t.ts + INTERVAL '5' SECOND;"
    );
    assert_eq!(run_query(&join, 1).await.len(), 2);
    let mut rows = late_rows(&late);
    rows.sort_by_key(|r| r["ts"].to_string());
    let reason = "the row was at or below its input's watermark";
    let got: Vec<(&Value, &Value, &Value)> = rows
        .iter()
        .map(|r| (&r["ts"], &r["late_reason"], &r["late_operator"]))
        .collect();
    let at = |s: &str| json!(format!("2024-01-01 00:00:0{s}.000"));
    let (reason, op) = (json!(reason), json!("IntervalJoin"));
    let want = [(at("4"), &reason, &op), (at("5"), &reason, &op)];
    let want: Vec<(&Value, &Value, &Value)> = want.iter().map(|(a, b, c)| (a, *b, *c)).collect();
    assert_eq!(got, want, "both inputs' late rows, with their own columns");

    std::fs::remove_file(&late).unwrap();
    let over = format!(
        "{t} {sink} SELECT k, ts, COUNT(*) OVER (PARTITION BY k ORDER BY ts
         RANGE BETWEEN INTERVAL '10' SECOND PRECEDING AND CURRENT ROW) AS n FROM t;"
    );
    assert_eq!(run_query(&over, 1).await.len(), 2);
    let rows = late_rows(&late);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["ts"], at("5"));
    assert_eq!(rows[0]["late_operator"], "OverAggregate");
}

#[tokio::test]
async fn a_late_data_sink_that_does_not_exist_is_a_planning_error() {
    let d = dir("missing");
    std::fs::write(d.join("in.jsonl"), lines(ROWS)).unwrap();
    let sql = format!(
        "{src}
         SET 'table.exec.late-data.sink' = 'nowhere';
         SELECT k, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY k, window_start, window_end;",
        src = source(&d.join("in.jsonl")),
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let err = engine.query(&sql).await.err().expect("refused").to_string();
    assert!(
        err.contains("'nowhere'") && err.contains("does not exist"),
        "{err}"
    );
}

/// The JSON values of the first `n` records of `topic` (one partition), sorted by `v`.
async fn read_topic(broker: &Broker, topic: &str, n: usize) -> Vec<Value> {
    let consumer = broker.reader(topic, 1, &[]);
    let mut seen = Vec::new();
    while seen.len() < n {
        let m = next_record(&consumer).await;
        seen.push(serde_json::from_slice::<Value>(m.payload().unwrap()).unwrap());
    }
    seen.sort_by_key(|r| r["v"].as_i64());
    seen
}

#[tokio::test]
async fn late_rows_reach_the_sources_late_data_topic() {
    let broker = Broker::start();
    broker.create_topic("readings", 1).await;
    broker.create_topic("readings-late", 1).await;
    let records: Vec<(i32, String, Vec<u8>)> = lines(ROWS)
        .lines()
        .map(|l| (0, "k".to_string(), l.as_bytes().to_vec()))
        .collect();
    let ends = broker.produce("readings", &records, 1).await;
    let sql = format!(
        "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
         WITH ('connector' = 'kafka', 'topic' = 'readings', 'properties.bootstrap.servers' = '{b}',
               'format' = 'json', 'scan.startup.mode' = 'earliest-offset',
               'scan.bounded.mode' = 'specific-offsets', 'scan.bounded.specific-offsets' = '{ends}',
               'late-data.topic' = 'readings-late');
         SELECT k, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY k, window_start, window_end;",
        b = broker.bootstrap
    );
    let got = run_query(&sql, 1).await;
    let counted: i64 = got.iter().map(|r| r["n"].as_i64().unwrap()).sum();
    assert_eq!(counted, 4, "{got:?}");
    let late = read_topic(&broker, "readings-late", 2).await;
    assert_eq!(late[0]["k"], "a");
    assert_eq!(late[0]["v"], 2);
    assert_eq!(late[0]["late_reason"], "every window of the row had fired");
    assert_eq!(late[0]["missed_window_start"], "2024-01-01 00:00:00.000");
    assert_eq!(late[1]["v"], 4);
    assert_eq!(late[1]["missed_window_end"], "2024-01-01 00:00:20.000");
}

/// `late_rows_dropped` as an exactly-once INSERT job whose late rows go to a sink table in
/// `late` (checkpointed like the result).
async fn checkpointed_job(out: &std::path::Path, late: &std::path::Path) -> String {
    let sql = crate::checkpoints::insert_job("late_rows_dropped", out).await;
    sql.replace(
        "INSERT INTO weir_out",
        &format!(
            "CREATE TABLE late_rows (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3),
               late_reason STRING, missed_window_start TIMESTAMP(3),
               missed_window_end TIMESTAMP(3), late_operator STRING)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             SET 'table.exec.late-data.sink' = 'late_rows';
             INSERT INTO weir_out",
            late.display()
        ),
    )
}

fn sorted(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|r| r.to_string());
    rows
}

#[tokio::test]
async fn late_rows_are_written_once_across_a_crash_and_recovery() {
    use crate::checkpoints::{committed_rows, engine_with_memory, run_and_crash, scratch};
    let [out, late, ck] = ["out", "late", "ck"].map(|n| scratch(&format!("late-clean-{n}")));
    let job = engine_with_memory(&ck, 1 << 30)
        .submit(&checkpointed_job(&out, &late).await)
        .await
        .unwrap();
    job.wait().await.unwrap();
    let clean = sorted(committed_rows(&late));
    assert!(!clean.is_empty());
    assert_eq!(clean.len() as u64, job.late_rows());

    let [out, late, ck] = ["out", "late", "ck"].map(|n| scratch(&format!("late-crash-{n}")));
    let sql = checkpointed_job(&out, &late).await;
    let (crashed, _) = run_and_crash(&sql, &ck, 3, 1 << 30).await;
    eprintln!(
        "late rows: {} in a clean run; crashed mid-stream: {crashed}",
        clean.len()
    );
    let job = engine_with_memory(&ck, 1 << 30).submit(&sql).await.unwrap();
    job.wait().await.unwrap();
    assert_eq!(
        sorted(committed_rows(&late)),
        clean,
        "late rows after a crash (mid-stream: {crashed}) and recovery"
    );
}

/// Every record of `topic` (one partition) that a `read_committed` reader sees, until none
/// arrives for 3 s.
async fn committed_records(broker: &Broker, topic: &str) -> Vec<Value> {
    let consumer = broker.reader(topic, 1, &[("isolation.level", "read_committed")]);
    let mut out = Vec::new();
    let wait = std::time::Duration::from_secs(3);
    while let Ok(m) = tokio::time::timeout(wait, consumer.recv()).await {
        let m = m.unwrap();
        out.push(serde_json::from_slice::<Value>(m.payload().unwrap()).unwrap());
    }
    sorted(out)
}

/// An engine checkpointing into `ck` every 200 ms.
fn slow_checkpoints(ck: &std::path::Path) -> weir::Engine {
    let e = weir::Engine::new();
    e.set_quiet(true);
    e.set_batch_size(50);
    e.set_checkpointing(Some(weir::CheckpointConfig {
        interval: std::time::Duration::from_millis(200),
        ..weir::CheckpointConfig::new(ck)
    }));
    e
}

/// `late_rows_dropped` read from Kafka by a checkpointing job whose late rows go to the
/// source's `'late-data.topic'`, crashed (as by `kill -9`) 150 ms after its first checkpoint,
/// with late rows written since, and restarted: the topic holds each late row once (for
/// `read_committed` readers), the same rows as a clean run's.
#[tokio::test]
async fn late_rows_reach_the_late_data_topic_once_across_a_crash() {
    use crate::checkpoints::scratch;
    let broker = Broker::start();
    let case = root().join("tests/conformance/late_rows_dropped");
    let input = std::fs::read_to_string(case.join("input.jsonl")).unwrap();
    let records: Vec<(i32, String, Vec<u8>)> = input
        .lines()
        .map(|l| (0, "k".to_string(), l.as_bytes().to_vec()))
        .collect();
    let mut runs = Vec::new();
    for run in ["clean", "crash"] {
        let (src, late) = (format!("lt-{run}"), format!("lt-{run}-late"));
        broker.create_topic(&src, 1).await;
        broker.create_topic(&late, 1).await;
        let ends = broker.produce(&src, &records, 1).await;
        let [out, ck] = ["out", "ck"].map(|n| scratch(&format!("late-topic-{run}-{n}")));
        let sql = format!(
            "CREATE TABLE t (sensor_id STRING, facility STRING, temperature DOUBLE,
               humidity DOUBLE, quality INT, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
             WITH ('connector' = 'kafka', 'topic' = '{src}',
               'properties.bootstrap.servers' = '{b}', 'format' = 'json',
               'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'specific-offsets',
               'scan.bounded.specific-offsets' = '{ends}', 'scan.records-per-second' = '3000',
               'late-data.topic' = '{late}');
             CREATE TABLE weir_out (sensor_id STRING, window_start TIMESTAMP(3),
               window_end TIMESTAMP(3), cnt BIGINT, avg_temp DOUBLE)
             WITH ('connector' = 'filesystem', 'path' = '{o}', 'format' = 'json');
             INSERT INTO weir_out SELECT sensor_id, window_start, window_end, COUNT(*) AS cnt,
               AVG(temperature) AS avg_temp
             FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))
             GROUP BY sensor_id, window_start, window_end;",
            b = broker.bootstrap,
            o = out.display()
        );
        if run == "crash" {
            let first = slow_checkpoints(&ck).submit(&sql).await.unwrap();
            assert!(
                until_checkpoint(&first, 1).await,
                "the job ended before its first checkpoint"
            );
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            assert!(
                !first.is_done(),
                "the job should still be running when it crashes"
            );
            first.cancel();
            let _ = first.wait().await;
        }
        let job = slow_checkpoints(&ck).submit(&sql).await.unwrap();
        job.wait().await.unwrap();
        let rows = committed_records(&broker, &late).await;
        if run == "clean" {
            assert_eq!(rows.len() as u64, job.late_rows());
        }
        runs.push(rows);
    }
    assert!(!runs[0].is_empty());
    assert_eq!(runs[1].len(), runs[0].len(), "late rows after a crash");
    assert_eq!(runs[1], runs[0]);
}
