//! Kafka message keys and headers against the real broker: `key.format` / `key.fields` /
//! `value.fields-include` on the sink and the source, and the `headers` metadata column.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::Value;

use crate::common::kafka::{next_record, Broker};
use crate::common::run_query;

/// Every record of `topic` (all partitions, from the start): (partition, offset, key, value).
async fn read_all(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    n: usize,
) -> Vec<(i32, i64, Vec<u8>, Vec<u8>)> {
    let consumer = broker.reader(topic, partitions, &[]);
    let mut got = Vec::new();
    while got.len() < n {
        let m = next_record(&consumer).await;
        let key = m.key().unwrap_or_default().to_vec();
        let value = m.payload().unwrap_or_default().to_vec();
        got.push((m.partition(), m.offset(), key, value));
    }
    got
}

/// Exclusive end offsets of what was read, as Flink's specific-offsets string.
fn ends_of(records: &[(i32, i64, Vec<u8>, Vec<u8>)], partitions: i32) -> String {
    (0..partitions)
        .map(|p| {
            let end = records
                .iter()
                .filter(|r| r.0 == p)
                .map(|r| r.1 + 1)
                .max()
                .unwrap_or(0);
            format!("partition:{p},offset:{end}")
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn keyed_table(name: &str, broker: &Broker, extra: &str) -> String {
    format!(
        "CREATE TABLE {name} (sensor_id STRING, temperature DOUBLE)
         WITH ('connector' = 'kafka', 'topic' = '{name}', 'format' = 'json',
               'properties.bootstrap.servers' = '{}', 'key.format' = 'raw',
               'key.fields' = 'sensor_id', 'value.fields-include' = 'EXCEPT_KEY'{extra});",
        broker.bootstrap
    )
}

#[tokio::test]
async fn except_key_fields_live_only_in_the_key_and_read_back() {
    let broker = Broker::start();
    broker.create_topic("keyed", 2).await;
    let dir = std::env::temp_dir().join(format!("weir-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.jsonl");
    let rows: String = (0..20)
        .map(|i| format!("{{\"sensor_id\":\"s-{}\",\"temperature\":{i}.5}}\n", i % 4))
        .collect();
    std::fs::write(&input, rows).unwrap();
    let sql = format!(
        "CREATE TABLE src (sensor_id STRING, temperature DOUBLE)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         {}
         INSERT INTO keyed SELECT * FROM src;",
        input.display(),
        keyed_table("keyed", &broker, "")
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.submit(&sql).await.unwrap().wait().await.unwrap();

    let records = read_all(&broker, "keyed", 2, 20).await;
    for (_, _, key, value) in &records {
        let v: Value = serde_json::from_slice(value).unwrap();
        assert!(v.get("sensor_id").is_none(), "key field in the value: {v}");
        let key = String::from_utf8(key.clone()).unwrap();
        let i = v["temperature"].as_f64().unwrap() as usize;
        assert_eq!(key, format!("s-{}", i % 4), "raw key bytes");
    }
    // The same options read the key back into its column.
    let ends = ends_of(&records, 2);
    let extra = format!(
        ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'specific-offsets', \
         'scan.bounded.specific-offsets' = '{ends}'"
    );
    let back = run_query(
        &format!(
            "{} SELECT sensor_id, temperature FROM keyed;",
            keyed_table("keyed", &broker, &extra)
        ),
        1024,
    )
    .await;
    assert_eq!(back.len(), 20);
    for r in &back {
        let i = r["temperature"].as_f64().unwrap() as usize;
        assert_eq!(r["sensor_id"], format!("s-{}", i % 4), "{r}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn json_keys_and_headers_are_columns() {
    let broker = Broker::start();
    broker.create_topic("hdr", 1).await;
    let producer = broker.producer();
    let mut end = 0;
    for i in 0..5 {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "trace",
                value: Some(format!("t{i}").as_bytes()),
            })
            .insert(Header {
                key: "empty",
                value: None::<&[u8]>,
            });
        let key = format!("{{\"sensor_id\":\"s-{i}\",\"site\":\"a\"}}");
        let value = format!("{{\"temperature\":{i}.0}}");
        let rec = FutureRecord::to("hdr")
            .key(&key)
            .payload(&value)
            .headers(headers);
        let (_, offset) = producer
            .send(rec, Duration::from_secs(10))
            .await
            .map(|d| (d.partition, d.offset))
            .unwrap();
        end = offset + 1;
    }
    let sql = format!(
        "CREATE TABLE hdr (sensor_id STRING, temperature DOUBLE,
            h MAP<STRING, BYTES> METADATA FROM 'headers')
         WITH ('connector' = 'kafka', 'topic' = 'hdr', 'format' = 'json',
               'properties.bootstrap.servers' = '{}', 'key.format' = 'json',
               'key.fields' = 'sensor_id', 'value.fields-include' = 'EXCEPT_KEY',
               'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'specific-offsets',
               'scan.bounded.specific-offsets' = 'partition:0,offset:{end}');
         SELECT sensor_id, temperature, CAST(h['trace'] AS STRING) AS trace,
                cardinality(h) AS n FROM hdr;",
        broker.bootstrap
    );
    let rows = run_query(&sql, 1024).await;
    let got: BTreeMap<String, (f64, String, i64)> = rows
        .iter()
        .map(|r| {
            let t = r["temperature"].as_f64().unwrap();
            let tr = r["trace"].as_str().unwrap().to_string();
            (
                r["sensor_id"].as_str().unwrap().to_string(),
                (t, tr, r["n"].as_i64().unwrap()),
            )
        })
        .collect();
    let want: BTreeMap<String, (f64, String, i64)> = (0..5)
        .map(|i| (format!("s-{i}"), (i as f64, format!("t{i}"), 2)))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn key_options_are_checked_when_planning() {
    let broker = Broker::start();
    broker.create_topic("k", 1).await;
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    for (opts, want) in [
        ("'key.fields' = 'sensor_id'", "needs 'key.format'"),
        ("'key.format' = 'raw'", "needs the key columns"),
        (
            "'key.format' = 'raw', 'key.fields' = 'sensor_id;temperature'",
            "exactly one key field",
        ),
        (
            "'key.format' = 'avro', 'key.fields' = 'sensor_id'",
            "'key.format' must be",
        ),
        ("'value.fields-include' = 'SOME'", "'ALL' or 'EXCEPT_KEY'"),
        (
            "'key.fields' = 'nope', 'key.format' = 'json'",
            "'nope', which is not a column",
        ),
    ] {
        let sql = format!(
            "CREATE TABLE k (sensor_id STRING, temperature DOUBLE)
             WITH ('connector' = 'kafka', 'topic' = 'k', 'format' = 'json',
                   'properties.bootstrap.servers' = '{}', {opts});
             SELECT * FROM k;",
            broker.bootstrap
        );
        let err = match engine.query(&sql).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{opts}: planned"),
        };
        assert!(err.contains(want), "{opts}: {err}");
    }
}
