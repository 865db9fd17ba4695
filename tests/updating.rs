//! Updating results: GROUP BY without a window, MIN/MAX under retraction, deduplication, top-N,
//! allowed lateness, state TTL, sinks that refuse a changelog, and the `upsert-kafka` round trip
//! against the real broker. Changelogs are checked row by row where the batching fixes them
//! (batch size 1) and by their materialised table otherwise.

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use crate::common::kafka::Broker;
use crate::common::*;

/// A folder holding `input.jsonl` with `rows`.
pub(crate) fn input(name: &str, rows: &[Value]) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-upd-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let text: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    std::fs::write(d.join("input.jsonl"), text.join("\n") + "\n").unwrap();
    d
}

pub(crate) fn table_ddl(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "CREATE TABLE t (sensor_id STRING, facility STRING, temperature DOUBLE, q INT,
           ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json'{extra});",
        dir.join("input.jsonl").display()
    )
}

pub(crate) fn reading(sensor: &str, facility: &str, temp: f64, second: u32) -> Value {
    json!({"sensor_id": sensor, "facility": facility, "temperature": temp, "q": 1,
           "ts": format!("2024-01-01 00:{:02}:{:02}.000", second / 60, second % 60)})
}

fn has(rows: &[Value], want: &Value) -> bool {
    rows.iter().any(|r| {
        want.as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| r.get(k) == Some(v))
    })
}

#[tokio::test]
async fn group_by_having_count_distinct_sum_avg() {
    let rows = vec![
        reading("s1", "f1", 10.0, 1),
        reading("s2", "f1", 20.0, 2),
        reading("s1", "f1", 30.0, 3),
        reading("s3", "f2", 40.0, 4),
    ];
    let dir = input("groupby", &rows);
    let sql = format!(
        "{} SELECT facility, COUNT(DISTINCT sensor_id) AS sensors, SUM(q) AS q,
           AVG(temperature) AS avg_t, COUNT(*) AS n FROM t GROUP BY facility HAVING COUNT(*) > 1;",
        table_ddl(&dir, "")
    );
    for size in [1, 4096] {
        let log = run_query(&sql, size).await;
        assert!(is_changelog(&log), "{log:?}");
        let expected = vec![json!({"facility": "f1", "sensors": 2, "q": 3, "avg_t": 20.0, "n": 3})];
        assert_same_rows("group by", &materialize(&log), &expected);
    }
    // Row by row: f1 appears once its second row arrives, then is updated.
    let log = run_query(&sql, 1).await;
    assert!(
        has(&log, &json!({"op": "+U", "facility": "f1", "n": 3})),
        "{log:?}"
    );
    assert!(
        has(&log, &json!({"op": "-U", "facility": "f1", "n": 2})),
        "{log:?}"
    );
}

#[tokio::test]
async fn max_and_min_fall_back_when_the_extreme_is_retracted() {
    let rows = vec![
        reading("s1", "f1", 85.0, 1),
        reading("s2", "f1", 90.0, 2),
        reading("s3", "f2", 81.0, 3),
        reading("s2", "f1", 70.0, 4),
        reading("s3", "f2", 60.0, 5),
        reading("s1", "f1", 95.0, 6),
    ];
    let dir = input("retract", &rows);
    let sql = format!(
        "{}
         CREATE VIEW latest AS SELECT sensor_id, facility, temperature FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY sensor_id ORDER BY ts DESC) AS rn FROM t)
           WHERE rn = 1;
         SELECT facility, COUNT(*) AS hot, MAX(temperature) AS hottest, MIN(temperature) AS coolest
         FROM latest WHERE temperature > 80 GROUP BY facility;",
        table_ddl(&dir, "")
    );
    let log = run_query(&sql, 1).await;
    // s2 cooling down retracts the maximum 90: the maximum falls back to s1's 85.
    assert!(
        has(
            &log,
            &json!({"op": "+U", "facility": "f1", "hot": 1, "hottest": 85.0})
        ),
        "{log:#?}"
    );
    // f2's only hot sensor cools down: its row is deleted.
    assert!(
        has(&log, &json!({"op": "-D", "facility": "f2"})),
        "{log:#?}"
    );
    let expected = vec![json!({"facility": "f1", "hot": 1, "hottest": 95.0, "coolest": 95.0})];
    assert_same_rows("retraction", &materialize(&log), &expected);
    let big = run_query(&sql, 4096).await;
    assert_same_rows("retraction, one batch", &materialize(&big), &expected);
}

#[tokio::test]
async fn dedup_keep_first_and_keep_last() {
    let rows = vec![
        reading("s1", "f1", 1.0, 5),
        reading("s1", "f1", 2.0, 3),
        reading("s1", "f1", 3.0, 4),
        reading("s2", "f1", 4.0, 9),
        reading("s2", "f1", 5.0, 9),
    ];
    let dir = input("dedup", &rows);
    let q = |dir: &str| {
        format!(
            "SELECT sensor_id, temperature FROM (SELECT *, ROW_NUMBER() OVER (
               PARTITION BY sensor_id ORDER BY ts {dir}) AS rn FROM t) WHERE rn = 1;"
        )
    };
    let first = run_query(&format!("{}{}", table_ddl(&dir, ""), q("ASC")), 1).await;
    // The earliest event time wins, even when it arrives later; on a tie the first row stays.
    assert!(has(
        &first,
        &json!({"op": "-U", "sensor_id": "s1", "temperature": 1.0})
    ));
    let expected = vec![
        json!({"sensor_id": "s1", "temperature": 2.0}),
        json!({"sensor_id": "s2", "temperature": 4.0}),
    ];
    assert_same_rows("keep first", &materialize(&first), &expected);
    let last = run_query(&format!("{}{}", table_ddl(&dir, ""), q("DESC")), 1).await;
    // The latest event time wins; on a tie the newer row replaces the kept one.
    let expected = vec![
        json!({"sensor_id": "s1", "temperature": 1.0}),
        json!({"sensor_id": "s2", "temperature": 5.0}),
    ];
    assert_same_rows("keep last", &materialize(&last), &expected);
}

#[tokio::test]
async fn top_three_per_key_with_and_without_the_row_number() {
    let temps = [10.0, 30.0, 20.0, 40.0, 5.0, 35.0];
    let mut rows: Vec<Value> = temps
        .iter()
        .enumerate()
        .map(|(i, t)| reading(&format!("s{i}"), "f1", *t, i as u32))
        .collect();
    rows.push(reading("s9", "f2", 1.0, 9));
    let dir = input("topn", &rows);
    let inner = "SELECT *, ROW_NUMBER() OVER (PARTITION BY facility ORDER BY temperature DESC)
                 AS rn FROM t";
    let with_rn = format!(
        "{} SELECT facility, sensor_id, temperature, rn FROM ({inner}) WHERE rn <= 3;",
        table_ddl(&dir, "")
    );
    let log = run_query(&with_rn, 1).await;
    let expected = vec![
        json!({"facility": "f1", "sensor_id": "s3", "temperature": 40.0, "rn": 1}),
        json!({"facility": "f1", "sensor_id": "s5", "temperature": 35.0, "rn": 2}),
        json!({"facility": "f1", "sensor_id": "s1", "temperature": 30.0, "rn": 3}),
        json!({"facility": "f2", "sensor_id": "s9", "temperature": 1.0, "rn": 1}),
    ];
    assert_same_rows("top-3 with rn", &materialize(&log), &expected);
    // s3 (40) entering moves s1 from rank 1 to 2: rank 1 is updated.
    assert!(
        has(&log, &json!({"op": "+U", "sensor_id": "s3", "rn": 1})),
        "{log:#?}"
    );
    let without = format!(
        "{} SELECT facility, sensor_id, temperature FROM ({inner}) WHERE rn < 4;",
        table_ddl(&dir, "")
    );
    let log = run_query(&without, 1).await;
    let expected: Vec<Value> = expected
        .into_iter()
        .map(|mut r| {
            r.as_object_mut().unwrap().remove("rn");
            r
        })
        .collect();
    assert_same_rows("top-3 without rn", &materialize(&log), &expected);
    // Without the row number, only rows that enter or leave the top 3 are emitted.
    assert_eq!(
        log.iter().filter(|r| r["op"] == "+I").count(),
        4,
        "{log:#?}"
    );
}

#[tokio::test]
async fn allowed_lateness_updates_a_fired_window_once_then_drops() {
    let at = |m: u32, s: u32, v: i64| json!({"k": "a", "v": v, "ts": format!("2024-01-01 00:{m:02}:{s:02}.000")});
    let rows = vec![
        at(0, 10, 1),
        at(0, 20, 2),
        at(1, 30, 4),
        at(0, 30, 8),  // late, inside the minute of allowed lateness
        at(2, 30, 16), // window [0, 1) expires
        at(0, 40, 32), // late beyond the bound: dropped
    ];
    let dir = input("lateness", &rows);
    // The row at 0:30 comes after the watermark reached 1:30, so it is an update of the fired
    // window whether or not the watermark message came first (batching) and whatever the
    // other source subtasks and channels have delivered (parallelism, timing).
    for (batch, p) in [(1, 1), (1, 2), (4096, 1), (4096, 2), (7, 4)] {
        let sql = format!(
            "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             SET 'window.allowed-lateness' = '1 min';
             SET 'parallelism.default' = '{p}';
             SELECT k, window_start, COUNT(*) AS n, SUM(v) AS total
             FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
             GROUP BY k, window_start, window_end;",
            dir.join("input.jsonl").display()
        );
        let engine = weir::Engine::new();
        engine.set_quiet(true);
        engine.set_batch_size(batch);
        let stream = engine.query(&sql).await.unwrap();
        let job = stream.job().clone();
        let log = to_json(&stream.collect().await.unwrap(), None);
        let w = |m: u32| format!("2024-01-01T00:{m:02}:00.000");
        let expected_log = vec![
            json!({"op": "+I", "k": "a", "window_start": w(0), "n": 2, "total": 3}),
            json!({"op": "-U", "k": "a", "window_start": w(0), "n": 2, "total": 3}),
            json!({"op": "+U", "k": "a", "window_start": w(0), "n": 3, "total": 11}),
            json!({"op": "+I", "k": "a", "window_start": w(1), "n": 1, "total": 4}),
            json!({"op": "+I", "k": "a", "window_start": w(2), "n": 1, "total": 16}),
        ];
        let case = format!("batch size {batch}, parallelism {p}");
        assert_eq!(log.len(), expected_log.len(), "{case}: {log:#?}");
        for (got, want) in log.iter().zip(&expected_log) {
            assert_same_rows(&case, std::slice::from_ref(got), std::slice::from_ref(want));
        }
        assert_eq!(
            job.late_rows(),
            1,
            "{case}: the row past the bound is counted"
        );
        assert_eq!(
            weir::engine_metrics::get(&job.metrics().late_updates),
            1,
            "{case}"
        );
    }
}

#[tokio::test]
async fn state_ttl_forgets_idle_keys() {
    let mut rows = vec![reading("a", "f1", 1.0, 0)];
    rows.extend((1..1500).map(|i| reading("b", "f1", 1.0, i % 3600)));
    rows.push(reading("a", "f1", 1.0, 3599));
    let dir = input("ttl", &rows);
    let sql = format!(
        "{} SET 'table.exec.state.ttl' = '200 ms';
         SELECT sensor_id, COUNT(*) AS n FROM t GROUP BY sensor_id;",
        table_ddl(&dir, ", 'scan.records-per-second' = '1000'")
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.set_batch_size(100);
    let stream = engine.query(&sql).await.unwrap();
    let job = stream.job().clone();
    let log = to_json(&stream.collect().await.unwrap(), None);
    // `a` was idle for over a second: its count starts again from 1, as a new key.
    let a_inserts = log
        .iter()
        .filter(|r| r["sensor_id"] == "a" && r["op"] == "+I" && r["n"] == 1)
        .count();
    assert_eq!(
        a_inserts,
        2,
        "{:?}",
        log.iter()
            .filter(|r| r["sensor_id"] == "a")
            .collect::<Vec<_>>()
    );
    assert!(weir::engine_metrics::get(&job.metrics().expired_keys) >= 1);
}

#[tokio::test]
async fn append_only_sinks_refuse_updating_results() {
    let dir = input("refuse", &[reading("s1", "f1", 1.0, 1)]);
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let sql = format!(
        "{}
         CREATE TABLE out_fs (sensor_id STRING, n BIGINT) WITH ('connector' = 'filesystem',
           'path' = '{}', 'format' = 'json');
         INSERT INTO out_fs SELECT sensor_id, COUNT(*) FROM t GROUP BY sensor_id;",
        table_ddl(&dir, ""),
        dir.join("out").display()
    );
    let err = engine
        .execute(&sql)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("updating") && err.contains("filesystem"),
        "{err}"
    );
    assert!(err.contains("line 6"), "located: {err}");
    let sql = "CREATE TABLE out_k (sensor_id STRING, n BIGINT) WITH ('connector' = 'kafka',
           'topic' = 'x', 'properties.bootstrap.servers' = '127.0.0.1:1', 'format' = 'json');
         INSERT INTO out_k SELECT sensor_id, COUNT(*) FROM t GROUP BY sensor_id;";
    let err = engine
        .execute(sql)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("updating") && err.contains("'kafka'"), "{err}");
    let explain = engine
        .explain("SELECT sensor_id, COUNT(*) FROM t GROUP BY sensor_id")
        .unwrap();
    assert!(
        explain.contains("GroupAggregate") && explain.contains("changelog"),
        "{explain}"
    );
}

/// Read a whole topic as (key, value) pairs, in order within each partition: past the end
/// offsets the broker reports (tansu may report them a little behind the last acknowledged
/// write) until nothing more arrives for a second.
pub(crate) async fn read_topic(
    broker: &Broker,
    topic: &str,
    partitions: i32,
) -> Vec<(Value, Option<Value>)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "upsert-reader")
        .create()
        .unwrap();
    let mut ends = std::collections::HashMap::new();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut next: std::collections::HashMap<i32, i64> = Default::default();
    loop {
        let reached = ends
            .iter()
            .all(|(p, h)| next.get(p).copied().unwrap_or(0) >= *h);
        let wait = Duration::from_secs(if reached { 1 } else { 30 });
        let Ok(m) = tokio::time::timeout(wait, consumer.recv()).await else {
            assert!(reached, "records up to {ends:?}, read {next:?}");
            return out;
        };
        let m = m.unwrap();
        let key = serde_json::from_slice(m.key().unwrap()).unwrap();
        out.push((key, m.payload().map(|v| serde_json::from_slice(v).unwrap())));
        next.insert(m.partition(), m.offset() + 1);
    }
}

#[tokio::test]
async fn upsert_kafka_round_trip_gives_the_final_table() {
    upsert_round_trip("upserts", "").await;
}

/// The GROUP BY key is the table's key, so by default (`AUTO`) the changelog is written as it
/// is; `FORCE` puts it through the materializer, with the same table.
#[tokio::test]
async fn upsert_kafka_with_a_forced_materializer_gives_the_final_table() {
    let set = "SET 'table.exec.sink.upsert-materialize' = 'FORCE';";
    upsert_round_trip("upserts-forced", set).await;
}

async fn upsert_round_trip(topic: &str, set: &str) {
    let broker = Broker::start();
    broker.create_topic(topic, 2).await;
    let case = root().join("tests/conformance/updating_count_per_sensor");
    let job = job_in_dir(&case);
    let query = &job[job.rfind("SELECT").unwrap()..];
    let ddl = &job[..job.rfind("SELECT").unwrap()];
    let sql = format!(
        "{set}
         {ddl}
         CREATE TABLE per_sensor (sensor_id STRING, cnt BIGINT, max_temp DOUBLE, q BIGINT,
           PRIMARY KEY (sensor_id) NOT ENFORCED)
         WITH ('connector' = 'upsert-kafka', 'topic' = '{topic}',
               'properties.bootstrap.servers' = '{}', 'key.format' = 'json',
               'value.format' = 'json');
         INSERT INTO per_sensor {query}",
        broker.bootstrap
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.set_batch_size(64);
    engine.submit(&sql).await.unwrap().wait().await.unwrap();
    let records = read_topic(&broker, topic, 2).await;
    assert!(records.len() > 9, "updates were written: {}", records.len());
    let mut table: std::collections::BTreeMap<String, Value> = Default::default();
    for (key, value) in records {
        let k = key["sensor_id"].as_str().unwrap().to_string();
        match value {
            Some(v) => {
                assert_eq!(v["sensor_id"], key["sensor_id"]);
                table.insert(k, v);
            }
            None => {
                table.remove(&k);
            }
        }
    }
    let rows: Vec<Value> = table.into_values().collect();
    let expected = read_jsonl(&case.join("expected.jsonl"));
    assert_same_rows("upsert-kafka", &rows, &expected);
}

#[tokio::test]
async fn upsert_kafka_writes_tombstones_for_deletes() {
    let broker = Broker::start();
    broker.create_topic("hot", 1).await;
    let rows = vec![reading("s1", "f1", 90.0, 1), reading("s1", "f1", 20.0, 2)];
    let dir = input("tombstone", &rows);
    let sql = format!(
        "{}
         CREATE TABLE hot (facility STRING, n BIGINT, PRIMARY KEY (facility) NOT ENFORCED)
         WITH ('connector' = 'upsert-kafka', 'topic' = 'hot',
               'properties.bootstrap.servers' = '{}', 'key.format' = 'json',
               'value.format' = 'json');
         INSERT INTO hot SELECT facility, COUNT(*) FROM (
           SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY sensor_id ORDER BY ts DESC)
             AS rn FROM t) WHERE rn = 1) WHERE temperature > 80 GROUP BY facility;",
        table_ddl(&dir, ""),
        broker.bootstrap
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.set_batch_size(1);
    engine.submit(&sql).await.unwrap().wait().await.unwrap();
    let records = read_topic(&broker, "hot", 1).await;
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0].1, Some(json!({"facility": "f1", "n": 1})));
    assert_eq!(records[1], (json!({"facility": "f1"}), None), "a tombstone");
}

/// An updating golden case written to an upsert-kafka topic by a checkpointing job that is
/// crashed after its third checkpoint and restarted from the directory: the topic, read back as
/// upserts, holds Flink's final table (replayed updates rewrite the same latest values). With
/// `rescale`, the crashed run and the restored one run at those parallelisms (GROUP BY and
/// top-N state divided anew by key group).
async fn upsert_case_survives_a_crash(case: &str, rescale: Option<(usize, usize)>) {
    let broker = Broker::start();
    let tag = rescale.map_or(String::new(), |(a, b)| format!("-p{a}-p{b}"));
    let topic = format!("ck-{case}{tag}");
    broker.create_topic(&topic, 2).await;
    let dir = root().join("tests/conformance").join(case);
    // Slower when rescaling: checkpoints of more subtasks take longer on a loaded machine, and
    // the crash must still come mid-stream.
    let rate = if rescale.is_some() { 2000 } else { 5000 };
    let job = job_in_dir(&dir).replace(
        "'connector' = 'filesystem',",
        &format!("'connector' = 'filesystem', 'scan.records-per-second' = '{rate}',"),
    );
    let at = job.trim_end().trim_end_matches(';').rfind(';').unwrap() + 1;
    let columns = result_columns(&job).await;
    let sql = format!(
        "{}
         CREATE TABLE sink_t ({}, PRIMARY KEY (sensor_id) NOT ENFORCED)
         WITH ('connector' = 'upsert-kafka', 'topic' = '{topic}',
               'properties.bootstrap.servers' = '{}', 'key.format' = 'json',
               'value.format' = 'json');
         INSERT INTO sink_t {}",
        &job[..at],
        columns.join(", "),
        broker.bootstrap,
        &job[at..]
    );
    let at = |p: Option<usize>| match p {
        Some(p) => format!("SET 'parallelism.default' = '{p}';\n{sql}"),
        None => sql.clone(),
    };
    let (first_sql, then_sql) = (at(rescale.map(|r| r.0)), at(rescale.map(|r| r.1)));
    let ckpt = std::env::temp_dir().join(format!("weir-upd-ck-{}-{case}{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ckpt);
    let engine = || {
        let e = weir::Engine::new();
        e.set_quiet(true);
        e.set_batch_size(50);
        e.set_checkpointing(Some(weir::CheckpointConfig {
            interval: Duration::from_millis(20),
            ..weir::CheckpointConfig::new(&ckpt)
        }));
        e
    };
    let first = engine().submit(&first_sql).await.unwrap();
    assert!(
        until_checkpoint(&first, 3).await,
        "{case}: the job should still be running when it crashes"
    );
    first.cancel();
    let _ = first.wait().await;
    engine()
        .submit(&then_sql)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    let mut table: std::collections::BTreeMap<String, Value> = Default::default();
    for (key, value) in read_topic(&broker, &topic, 2).await {
        let k = key["sensor_id"].as_str().unwrap().to_string();
        match value {
            Some(v) => table.insert(k, v),
            None => table.remove(&k),
        };
    }
    let rows: Vec<Value> = table.into_values().collect();
    assert_same_rows(case, &rows, &read_jsonl(&dir.join("expected.jsonl")));
    let _ = std::fs::remove_dir_all(&ckpt);
}

#[tokio::test]
async fn updating_count_per_sensor_recovers() {
    upsert_case_survives_a_crash("updating_count_per_sensor", None).await;
}

#[tokio::test]
async fn updating_count_per_sensor_recovers_at_another_parallelism() {
    upsert_case_survives_a_crash("updating_count_per_sensor", Some((2, 3))).await;
}

#[tokio::test]
async fn updating_dedup_keep_last_recovers_at_another_parallelism() {
    upsert_case_survives_a_crash("updating_dedup_keep_last", Some((3, 1))).await;
}

#[tokio::test]
async fn updating_dedup_keep_last_recovers() {
    upsert_case_survives_a_crash("updating_dedup_keep_last", None).await;
}

#[tokio::test]
async fn early_firing_emits_partial_results_then_the_final_row() {
    let rows: Vec<Value> = (0..600)
        .map(|i| reading("s1", "f1", 1.0, i % 3000))
        .collect();
    let dir = input("early", &rows);
    let sql = format!(
        "{} SET 'window.early-fire.delay' = '100 ms';
         SELECT sensor_id, window_start, COUNT(*) AS n
         FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' HOUR))
         GROUP BY sensor_id, window_start, window_end;",
        table_ddl(&dir, ", 'scan.records-per-second' = '1000'")
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.set_batch_size(50);
    let log = to_json(
        &engine.query(&sql).await.unwrap().collect().await.unwrap(),
        None,
    );
    // The job runs for about 0.6 s: several partial rows come before the window closes.
    assert!(
        log.iter().filter(|r| r["op"] == "+U").count() >= 2,
        "{log:#?}"
    );
    assert_eq!(log[0]["op"], "+I");
    assert!(log[0]["n"].as_i64().unwrap() < 600, "{log:#?}");
    let expected =
        vec![json!({"sensor_id": "s1", "window_start": "2024-01-01 00:00:00.000", "n": 600})];
    assert_same_rows("early fire", &materialize(&log), &expected);
}
