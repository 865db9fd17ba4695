//! The `kafka` connector against a real Kafka-protocol broker (tansu, or `WEIR_TEST_KAFKA`):
//! round trips across partitions, per-partition and idle-partition watermarks, dead letters,
//! and the sink.

use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::common::kafka::{next_record, Broker, Filled};
use crate::common::*;

fn partition_of(key: &str, n: i32) -> i32 {
    (key.bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
        % n as u32) as i32
}

/// The rows of a conformance input, keyed by sensor and spread over `n` partitions.
fn keyed_input(case: &str, n: i32) -> Vec<(i32, String, Vec<u8>)> {
    let text = std::fs::read_to_string(
        root()
            .join("tests/conformance")
            .join(case)
            .join("input.jsonl"),
    )
    .unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let key = v["sensor_id"].as_str().unwrap().to_string();
            (partition_of(&key, n), key, l.as_bytes().to_vec())
        })
        .collect()
}

/// A conformance job with its file table replaced by a bounded Kafka table over `topic`.
fn kafka_job(case: &str, topic: &Filled) -> String {
    let sql = std::fs::read_to_string(root().join("tests/conformance").join(case).join("job.sql"))
        .unwrap();
    let start = sql.find("'connector' = 'filesystem'").unwrap();
    let end = sql[start..].find("\n)").unwrap() + start;
    format!("{}{}{}", &sql[..start], topic.bounded(""), &sql[end..])
}

/// Conformance case `case` read from a topic of `partitions` partitions (rows spread by key)
/// in batches of `batch` rows: Flink's rows.
async fn conformance_over_kafka(case: &str, partitions: i32, batch: usize) {
    let topic = Filled::new(case, partitions, &keyed_input(case, partitions)).await;
    let rows = run_query(&kafka_job(case, &topic), batch).await;
    let expected = read_jsonl(
        &root()
            .join("tests/conformance")
            .join(case)
            .join("expected.jsonl"),
    );
    assert_same_rows(&format!("kafka {case}"), &rows, &expected);
}

#[tokio::test]
async fn round_trip_over_three_partitions_matches_flink() {
    conformance_over_kafka("tumble_tvf", 3, 8192).await;
}

#[tokio::test]
async fn session_windows_over_kafka_match_flink() {
    conformance_over_kafka("session_tvf", 2, 100).await;
}

#[tokio::test]
async fn a_lagging_partition_holds_the_watermark_back() {
    // Partition 1 is written long after partition 0 has moved on; with one watermark for the
    // whole topic its rows would be late, with one per partition none is.
    let mut recs = Vec::new();
    for i in 0..120 {
        let line = format!(
            r#"{{"k":"fast","v":1,"ts":"2024-01-01 00:{:02}:{:02}.000"}}"#,
            i / 60,
            i % 60
        );
        recs.push((0, "fast".to_string(), line.into_bytes()));
    }
    for i in 0..30 {
        let line = format!(
            r#"{{"k":"slow","v":1,"ts":"2024-01-01 00:00:{:02}.000"}}"#,
            i
        );
        recs.push((1, "slow".to_string(), line.into_bytes()));
    }
    let topic = Filled::new("lag", 2, &recs).await;
    let sql = format!(
        "CREATE TABLE t (k STRING, v INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ({});
         SELECT k, window_start, COUNT(*) AS c FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY k, window_start, window_end;",
        topic.bounded("")
    );
    let rows = run_query(&sql, 16).await;
    let slow: Vec<&Value> = rows.iter().filter(|r| r["k"] == "slow").collect();
    assert_eq!(slow.len(), 1, "{rows:?}");
    assert_eq!(slow[0]["c"], 30);
    assert_eq!(rows.iter().filter(|r| r["k"] == "fast").count(), 2);
}

#[tokio::test]
async fn an_idle_partition_stops_holding_the_watermark_back() {
    let broker = Broker::start();
    broker.create_topic("idle", 2).await;
    let recs: Vec<(i32, String, Vec<u8>)> = (0..90)
        .map(|i| {
            let line = format!(
                r#"{{"k":"a","v":1,"ts":"2024-01-01 00:{:02}:{:02}.000"}}"#,
                i / 60,
                i % 60
            );
            (0, "a".to_string(), line.into_bytes())
        })
        .collect();
    broker.produce("idle", &recs, 2).await;
    let sql = format!(
        "CREATE TABLE t (k STRING, v INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'kafka', 'topic' = 'idle', 'properties.bootstrap.servers' = '{}', 'format' = 'json',
               'scan.startup.mode' = 'earliest-offset', 'scan.watermark.idle-timeout' = '1 s');
         SELECT k, window_start, COUNT(*) AS c FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY k, window_start, window_end;",
        broker.bootstrap
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let mut stream = engine.query(&sql).await.unwrap();
    // Partition 1 never produces: without the idle timeout the first window would never fire.
    let batch = tokio::time::timeout(Duration::from_secs(30), stream.next_batch())
        .await
        .expect("the first window fires once partition 1 is idle")
        .unwrap()
        .unwrap();
    let rows = to_json(&[batch], None);
    assert_eq!(rows[0]["c"], 60, "{rows:?}");
    stream.job().cancel();
}

#[tokio::test]
async fn bad_records_go_to_the_dead_letters_with_their_offsets() {
    let lines = [
        r#"{"k":"a","v":1,"ts":"2024-01-01 00:00:01.000"}"#,
        r#"{"k":"a","v":"#,
        r#"{"k":"a","v":"not a number","ts":"2024-01-01 00:00:02.000"}"#,
        r#"{"k":"a","v":2}"#,
        r#"{"k":"a","v":3,"ts":"2024-01-01 00:00:03.000","extra":"ignored"}"#,
    ];
    let topic = Filled::lines("dirty", &lines).await;
    let sql = format!(
        "CREATE TABLE t (k STRING, v INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH ({});
         SELECT k, SUM(v) AS s, COUNT(*) AS c FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY k, window_start, window_end;",
        topic.bounded("")
    );
    let (rows, job) = query_to_end(&sql, 8192).await;
    assert_eq!(rows, vec![serde_json::json!({"k": "a", "s": 4, "c": 2})]);
    let dl = job.dead_letters();
    assert_eq!(job.bad_records(), 3, "{dl:?}");
    assert!(dl.iter().any(|r| r.position == "dirty/0@1"), "{dl:?}");
    assert!(dl.iter().any(|r| r.position == "dirty/0@2"), "{dl:?}");
    assert!(dl.iter().any(|r| r.reason.contains("NULL")), "{dl:?}");
}

#[tokio::test]
async fn results_written_to_kafka_read_back_equal() {
    let input = Filled::new("in", 3, &keyed_input("tumble_tvf", 3)).await;
    let broker = &input.broker;
    broker.create_topic("out", 2).await;
    let source = kafka_job("tumble_tvf", &input);
    let ddl = &source[..source.find("SELECT").unwrap()];
    let query = &source[source.find("SELECT").unwrap()..];
    let sql = format!(
        "{ddl}
         CREATE TABLE results (sensor_id STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
           avg_temp DOUBLE, cnt BIGINT, sum_quality BIGINT)
         WITH ('connector' = 'kafka', 'topic' = 'out', 'properties.bootstrap.servers' = '{}',
               'format' = 'json', 'key.format' = 'json', 'key.fields' = 'sensor_id');
         INSERT INTO results {query}",
        broker.bootstrap
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.submit(&sql).await.unwrap().wait().await.unwrap();
    let expected = read_jsonl(&root().join("tests/conformance/tumble_tvf/expected.jsonl"));
    let consumer = broker.reader("out", 2, &[]);
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let m = next_record(&consumer).await;
        let key: Value = serde_json::from_slice(m.key().unwrap()).unwrap();
        let value: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(key["sensor_id"], value["sensor_id"]);
        got.push(value);
    }
    assert_same_rows("kafka sink", &got, &expected);
}

#[tokio::test]
async fn a_missing_topic_is_named() {
    let broker = Broker::start();
    let sql = format!(
        "CREATE TABLE t (k STRING) WITH ('connector' = 'kafka', 'topic' = 'nope',
           'properties.bootstrap.servers' = '{}', 'format' = 'json', 'scan.bounded.mode' = 'latest-offset');
         SELECT k FROM t;",
        broker.bootstrap
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let Err(err) = engine.query(&sql).await else {
        panic!("a missing topic must fail planning");
    };
    assert!(matches!(err, weir::EngineError::Plan(_)), "{err:?}");
    let expected = format!(
        "table 't': option 'topic': topic 'nope' does not exist on broker {}",
        broker.bootstrap
    );
    assert!(err.to_string().contains(&expected), "{err}");
}

#[test]
fn weir_run_refuses_a_missing_topic_before_anything_runs() {
    let broker = Broker::start();
    let dir = std::env::temp_dir().join(format!("weir-missing-topic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let job = dir.join("job.sql");
    std::fs::write(
        &job,
        format!(
            "SELECT 1 AS first;\n\
             CREATE TABLE t (k STRING) WITH ('connector' = 'kafka', 'topic' = 'absent',\n  \
             'properties.bootstrap.servers' = '{}', 'format' = 'json');\n\
             SELECT k FROM t;\n",
            broker.bootstrap
        ),
    )
    .unwrap();
    let out = std::process::Command::new(weir_bin())
        .arg("run")
        .arg(&job)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "the first query did not run");
    let expected = format!(
        "topic 'absent' does not exist on broker {}",
        broker.bootstrap
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        stderr.contains("line 2"),
        "located at the option 'topic': {stderr}"
    );
}

#[tokio::test]
async fn epoch_timestamps_auto_unit_and_bounds() {
    let base_ms = 1_704_067_200_000i64; // 2024-01-01 00:00:00
    let lines = [
        format!(r#"{{"k":"a","v":1,"ts":{}}}"#, base_ms + 1_000),
        format!(r#"{{"k":"a","v":2,"ts":{}}}"#, base_ms / 1000 + 2), // seconds among milliseconds
        format!(r#"{{"k":"a","v":4,"ts":{}}}"#, (base_ms + 3_000) * 1000), // microseconds
        r#"{"k":"a","v":100,"ts":4102444800000}"#.to_string(),       // 2100: far in the future
        r#"{"k":"a","v":200,"ts":946684800}"#.to_string(),           // 2000: before timestamp.min
        format!(r#"{{"k":"a","v":8,"ts":{}}}"#, base_ms + 70_000),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let topic = Filled::lines("epochs", &lines).await;
    let sql = format!(
        "CREATE TABLE t (k STRING, v INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH ({});
         SELECT window_start, SUM(v) AS s FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY window_start, window_end;",
        topic.bounded(", 'timestamp.unit' = 'auto', 'timestamp.max-future' = '1 d', 'timestamp.min' = '2020-01-01'")
    );
    let (rows, job) = query_to_end(&sql, 8192).await;
    let expected = vec![
        serde_json::json!({"window_start": "2024-01-01 00:00:00.000", "s": 7}),
        serde_json::json!({"window_start": "2024-01-01 00:01:00.000", "s": 8}),
    ];
    assert_same_rows("epochs", &rows, &expected);
    let dl = job.dead_letters();
    assert_eq!(dl.len(), 2, "{dl:?}");
    assert!(
        dl.iter()
            .any(|r| r.position == "epochs/0@3" && r.reason.contains("future")),
        "{dl:?}"
    );
    assert!(
        dl.iter()
            .any(|r| r.position == "epochs/0@4" && r.reason.contains("timestamp.min")),
        "{dl:?}"
    );
    assert!(dl.iter().all(|r| r.raw.starts_with(b"{\"k\"")), "{dl:?}");
}

/// Every kind of bad record: undecodable, a wrong type, an event time beyond
/// `timestamp.max-future`, a missing (NULL) and an unreadable event time.
async fn produce_bad_records(broker: &Broker, topic: &str) -> String {
    broker.create_topic(topic, 2).await;
    let good =
        |i: i32| format!(r#"{{"k":"a","v":{i},"ts":"2024-01-01 00:00:0{i}.000"}}"#).into_bytes();
    let recs = vec![
        (0, "a".to_string(), good(1)),
        (0, "bad-json".to_string(), b"{not json".to_vec()),
        (0, "no-time".to_string(), br#"{"k":"a","v":5}"#.to_vec()),
        (1, "a".to_string(), good(2)),
        (
            1,
            "wrong-type".to_string(),
            br#"{"k":"a","v":"x","ts":"2024-01-01 00:00:03.000"}"#.to_vec(),
        ),
        (
            1,
            "future".to_string(),
            br#"{"k":"a","v":9,"ts":"2099-01-01 00:00:00.000"}"#.to_vec(),
        ),
        (
            1,
            "bad-time".to_string(),
            br#"{"k":"a","v":6,"ts":"yesterday"}"#.to_vec(),
        ),
    ];
    broker.produce(topic, &recs, 2).await
}

async fn run_bad_records(broker: &Broker, topic: &str, on_error: &str) -> weir::JobHandle {
    let ends = produce_bad_records(broker, topic).await;
    broker.create_topic(&format!("{topic}-dlq"), 1).await;
    let sql = format!(
        "CREATE TABLE t (k STRING, v INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
         WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{b}',
               'format' = 'json', 'scan.startup.mode' = 'earliest-offset',
               'scan.bounded.mode' = 'specific-offsets', 'scan.bounded.specific-offsets' = '{ends}',
               'timestamp.max-future' = '1 d', 'dead-letter.topic' = '{topic}-dlq'{on_error});
         SELECT SUM(v) AS s FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY window_start, window_end;",
        b = broker.bootstrap
    );
    let (rows, job) = query_to_end(&sql, 8192).await;
    assert_eq!(rows, vec![serde_json::json!({"s": 3})]);
    job
}

/// (key, origin, reason, value) of the first `n` records of a dead-letter topic, by key.
async fn dead_letter_topic(
    broker: &Broker,
    topic: &str,
    n: usize,
) -> Vec<(String, String, String, Vec<u8>)> {
    let consumer = broker.reader(topic, 1, &[]);
    let mut seen = Vec::new();
    while seen.len() < n {
        let m = next_record(&consumer).await;
        use rdkafka::message::Headers;
        let h = m.headers().expect("headers");
        let header = |name: &str| {
            h.iter()
                .find(|x| x.key == name)
                .map(|x| String::from_utf8_lossy(x.value.unwrap()).to_string())
                .unwrap()
        };
        let key = String::from_utf8_lossy(m.key().unwrap()).to_string();
        let origin = format!(
            "{}/{}@{}",
            header("weir.source.topic"),
            header("weir.source.partition"),
            header("weir.source.offset")
        );
        seen.push((
            key,
            origin,
            header("weir.reason"),
            m.payload().unwrap().to_vec(),
        ));
    }
    seen.sort();
    seen
}

#[tokio::test]
async fn every_kind_of_bad_record_reaches_the_dead_letter_topic_with_its_offset() {
    let broker = Broker::start();
    let job = run_bad_records(&broker, "raw", "").await;
    assert_eq!(job.bad_records(), 5);
    let seen = dead_letter_topic(&broker, "raw-dlq", 5).await;
    let origins: Vec<(&str, &str)> = seen.iter().map(|s| (s.0.as_str(), s.1.as_str())).collect();
    assert_eq!(
        origins,
        vec![
            ("bad-json", "raw/0@1"),
            ("bad-time", "raw/1@3"),
            ("future", "raw/1@2"),
            ("no-time", "raw/0@2"),
            ("wrong-type", "raw/1@1"),
        ]
    );
    assert_eq!(seen[0].3, b"{not json".to_vec());
    assert!(seen[2].2.contains("future"), "{:?}", seen[2]);
    assert!(seen[3].2.contains("NULL"), "{:?}", seen[3]);
    assert_eq!(
        seen[3].3,
        br#"{"k":"a","v":5}"#.to_vec(),
        "the raw record, byte for byte"
    );
}

#[tokio::test]
async fn on_error_skip_counts_bad_records_and_writes_no_dead_letters() {
    let broker = Broker::start();
    let job = run_bad_records(&broker, "skipped", ", 'format.on-error' = 'skip'").await;
    assert_eq!(job.bad_records(), 5);
    let c: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    let (_, high) = c
        .fetch_watermarks("skipped-dlq", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(high, 0, "skip must not write to the dead-letter topic");
}

#[tokio::test]
async fn metadata_columns_including_the_record_timestamp_as_event_time() {
    let broker = Broker::start();
    broker.create_topic("meta", 2).await;
    let producer = broker.producer();
    let base = 1_704_067_200_000i64;
    let mut ends = [0i64; 2];
    for i in 0..6i64 {
        let p = (i % 2) as i32;
        let value = format!(r#"{{"v":{i}}}"#);
        let rec = rdkafka::producer::FutureRecord::to("meta")
            .partition(p)
            .key("sensor-1")
            .payload(&value)
            .timestamp(base + i * 20_000);
        let d = producer.send(rec, Duration::from_secs(10)).await.unwrap();
        ends[p as usize] = d.offset + 1;
    }
    let sql = format!(
        "CREATE TABLE t (v INT, ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp', p INT METADATA FROM 'partition',
           o BIGINT METADATA FROM 'offset', k STRING METADATA FROM 'key', src STRING METADATA FROM 'topic',
           WATERMARK FOR ts AS ts)
         WITH ('connector' = 'kafka', 'topic' = 'meta', 'properties.bootstrap.servers' = '{}', 'format' = 'json',
               'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'specific-offsets',
               'scan.bounded.specific-offsets' = 'partition:0,offset:{};partition:1,offset:{}');
         SELECT k, src, window_start, COUNT(*) AS c, SUM(v) AS s, MAX(o) AS max_o, MIN(p) AS min_p, MAX(p) AS max_p
         FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY k, src, window_start, window_end;",
        broker.bootstrap, ends[0], ends[1]
    );
    let rows = run_query(&sql, 8192).await;
    let expected = vec![
        serde_json::json!({"k": "sensor-1", "src": "meta", "window_start": "2024-01-01 00:00:00.000", "c": 3, "s": 3, "max_o": 1, "min_p": 0, "max_p": 1}),
        serde_json::json!({"k": "sensor-1", "src": "meta", "window_start": "2024-01-01 00:01:00.000", "c": 3, "s": 12, "max_o": 2, "min_p": 0, "max_p": 1}),
    ];
    assert_same_rows("metadata", &rows, &expected);
}

#[tokio::test]
async fn raw_format_round_trip_keeps_bytes_exactly() {
    let broker = Broker::start();
    broker.create_topic("lines", 1).await;
    broker.create_topic("upper", 1).await;
    let values = ["plain text", "two\nlines", "{\"not\": \"decoded\"}"];
    let recs: Vec<_> = values
        .iter()
        .map(|v| (0, "k".to_string(), v.as_bytes().to_vec()))
        .collect();
    let ends = broker.produce("lines", &recs, 1).await;
    let b = &broker.bootstrap;
    let sql = format!(
        "CREATE TABLE src (line STRING) WITH ('connector' = 'kafka', 'topic' = 'lines',
           'properties.bootstrap.servers' = '{b}', 'format' = 'raw', 'scan.startup.mode' = 'earliest-offset',
           'scan.bounded.mode' = 'specific-offsets', 'scan.bounded.specific-offsets' = '{ends}');
         CREATE TABLE dst (line STRING) WITH ('connector' = 'kafka', 'topic' = 'upper',
           'properties.bootstrap.servers' = '{b}', 'format' = 'raw');
         INSERT INTO dst SELECT UPPER(line) FROM src;"
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.submit(&sql).await.unwrap().wait().await.unwrap();
    let consumer = broker.reader("upper", 1, &[]);
    let mut got = Vec::new();
    while got.len() < values.len() {
        let m = next_record(&consumer).await;
        got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
    }
    let want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    assert_eq!(got, want);
}
