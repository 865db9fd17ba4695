//! Rows that leave an updating result reach an `upsert-kafka` topic as tombstones: a group that
//! stops passing `HAVING`, a `WHERE` over an aggregate that turns false, a row that falls out of
//! a top-N. The topic read as a table (last value per key, tombstones delete) equals the query's
//! final table (its changelog materialised, as Flink's result would be).

use serde_json::Value;

use crate::common::kafka::Broker;
use crate::common::*;
use crate::updating::{input, read_topic, reading, table_ddl};

/// Readings in arrival order: facilities pass 3 rows, sensors s1 and s2 pass 80 degrees, and
/// the top two per facility change hands.
fn readings() -> Vec<Value> {
    [
        ("s1", "f1", 50.0, 1),
        ("s2", "f1", 60.0, 2),
        ("s3", "f2", 70.0, 3),
        ("s1", "f1", 90.0, 4),
        ("s4", "f2", 20.0, 5),
        ("s2", "f1", 95.0, 6),
        ("s3", "f2", 10.0, 7),
        ("s5", "f2", 40.0, 8),
        ("s1", "f1", 30.0, 9),
    ]
    .iter()
    .map(|(s, f, t, sec)| reading(s, f, *t, *sec))
    .collect()
}

/// The topic as a table: the last value of each key, keys whose last value is a tombstone left out.
fn as_table(records: Vec<(Value, Option<Value>)>) -> Vec<Value> {
    let mut table: std::collections::BTreeMap<String, Value> = Default::default();
    for (key, value) in records {
        match value {
            Some(v) => table.insert(key.to_string(), v),
            None => table.remove(&key.to_string()),
        };
    }
    table.into_values().collect()
}

/// Write `select` to an upsert topic with `columns` and `PRIMARY KEY (key)`, and compare the
/// topic read as a table with the query's final table.
async fn upsert_equals_final_table(name: &str, columns: &str, key: &str, select: &str) {
    let dir = input(&format!("leave-{name}"), &readings());
    let ddl = table_ddl(&dir, "");
    let expected = final_table(&run_query(&format!("{ddl}\n{select};"), 1).await);
    let broker = Broker::start();
    broker.create_topic(name, 2).await;
    let sql = format!(
        "{ddl}
         CREATE TABLE out ({columns}, PRIMARY KEY ({key}) NOT ENFORCED)
         WITH ('connector' = 'upsert-kafka', 'topic' = '{name}',
               'properties.bootstrap.servers' = '{b}', 'key.format' = 'json',
               'value.format' = 'json');
         INSERT INTO out {select};",
        b = broker.bootstrap
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.set_batch_size(1);
    engine.submit(&sql).await.unwrap().wait().await.unwrap();
    let records = read_topic(&broker, name, 2).await;
    assert!(
        records.iter().any(|r| r.1.is_none()),
        "{name}: rows left, so tombstones were written: {records:?}"
    );
    assert_same_rows(name, &as_table(records), &expected);
}

#[tokio::test]
async fn a_group_that_stops_passing_having_is_deleted_from_the_topic() {
    upsert_equals_final_table(
        "having",
        "facility STRING, n BIGINT",
        "facility",
        "SELECT facility, COUNT(*) AS n FROM t GROUP BY facility HAVING COUNT(*) < 3",
    )
    .await;
}

#[tokio::test]
async fn a_where_over_an_aggregate_that_turns_false_deletes_the_key() {
    upsert_equals_final_table(
        "where",
        "sensor_id STRING, m DOUBLE",
        "sensor_id",
        "SELECT sensor_id, m FROM (SELECT sensor_id, MAX(temperature) AS m FROM t
           GROUP BY sensor_id) WHERE m < 80",
    )
    .await;
}

#[tokio::test]
async fn a_row_that_falls_out_of_a_top_n_is_deleted_from_the_topic() {
    upsert_equals_final_table(
        "topn",
        "facility STRING, sensor_id STRING, temperature DOUBLE",
        "facility, sensor_id",
        "SELECT facility, sensor_id, temperature FROM (SELECT *, ROW_NUMBER() OVER (
           PARTITION BY facility ORDER BY temperature DESC) AS rn FROM t) WHERE rn <= 2",
    )
    .await;
}

/// Run `sql` (writing to upsert topic `topic`) checkpointing into `ckpt`; with `crash`, cancel
/// it after its third checkpoint (as `kill -9` would) and run it again from the checkpoint.
async fn run_checkpointed(sql: &str, ckpt: &std::path::Path, crash: bool) {
    let engine = || {
        let e = weir::Engine::new();
        e.set_quiet(true);
        e.set_batch_size(10);
        e.set_checkpointing(Some(weir::CheckpointConfig {
            interval: std::time::Duration::from_millis(20),
            ..weir::CheckpointConfig::new(ckpt)
        }));
        e
    };
    if crash {
        let first = engine().submit(sql).await.unwrap();
        assert!(
            until_checkpoint(&first, 3).await,
            "the job should still be running when it crashes"
        );
        first.cancel();
        let _ = first.wait().await;
    }
    engine().submit(sql).await.unwrap().wait().await.unwrap();
}

/// Two sensors per facility pass `HAVING MAX(temperature) < 80`, and the topic's key is the
/// facility, so both rows share one message key (the topic shows the newer). Later the second
/// sensor stops passing: the facility must then show the first sensor's row again. Across a
/// crash the sink must still know that the first sensor's row is there; a sink that forgot its
/// rows would delete the facility from the topic.
#[tokio::test]
async fn rows_sharing_a_message_key_survive_a_crash_without_wrong_tombstones() {
    let facilities = 150;
    let mut rows = Vec::new();
    for f in 0..facilities {
        rows.push(reading("a", &format!("f{f}"), 50.0, f));
        rows.push(reading("b", &format!("f{f}"), 60.0, f));
    }
    for f in 0..facilities {
        rows.push(reading("b", &format!("f{f}"), 95.0, facilities + f));
    }
    let dir = input("shared-key", &rows);
    let ddl = table_ddl(&dir, ", 'scan.records-per-second' = '1500'");
    let broker = Broker::start();
    let mut tables = Vec::new();
    for (name, crash) in [("shared-clean", false), ("shared-crash", true)] {
        broker.create_topic(name, 2).await;
        let sql = format!(
            "{ddl}
             CREATE TABLE out (facility STRING, sensor_id STRING, m DOUBLE,
               PRIMARY KEY (facility) NOT ENFORCED)
             WITH ('connector' = 'upsert-kafka', 'topic' = '{name}',
                   'properties.bootstrap.servers' = '{b}', 'key.format' = 'json',
                   'value.format' = 'json');
             INSERT INTO out SELECT facility, sensor_id, MAX(temperature) AS m FROM t
               GROUP BY facility, sensor_id HAVING MAX(temperature) < 80;",
            b = broker.bootstrap
        );
        let ckpt = std::env::temp_dir().join(format!("weir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&ckpt);
        run_checkpointed(&sql, &ckpt, crash).await;
        let _ = std::fs::remove_dir_all(&ckpt);
        tables.push(as_table(read_topic(&broker, name, 2).await));
    }
    assert_eq!(
        tables[0].len(),
        facilities as usize,
        "every facility keeps sensor a"
    );
    assert!(tables[0].iter().all(|r| r["sensor_id"] == "a"));
    assert_same_rows("shared key across a crash", &tables[1], &tables[0]);
}
