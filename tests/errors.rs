//! Bad SQL and bad records: located planning errors, skipped-and-counted records, no panics.

use crate::common::*;

const TABLE: &str = "CREATE TABLE t (\n  sensor_id STRING,\n  temperature DOUBLE,\n  ts TIMESTAMP(3),\n  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND\n) WITH ('connector' = 'filesystem', 'path' = 'PATH', 'format' = 'json');\n";

fn temp_file(name: &str, content: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

async fn plan_error(sql: &str) -> weir::planner::PlanError {
    let engine = weir::Engine::new();
    match engine.execute(sql).await {
        Err(weir::EngineError::Plan(e)) => e,
        Err(other) => panic!("expected a planning error, got {other}"),
        Ok(_) => panic!("expected a planning error for {sql}"),
    }
}

fn table_sql() -> String {
    let p = temp_file(
        "ok.jsonl",
        "{\"sensor_id\":\"a\",\"temperature\":1.0,\"ts\":\"2024-01-01 00:00:00.000\"}\n",
    );
    TABLE.replace("PATH", &p.to_string_lossy())
}

#[tokio::test]
async fn syntax_error_names_line_and_column() {
    let e = plan_error("SELECT a,\n  FROM WHERE").await;
    let loc = e.location().expect("location");
    assert_eq!(loc.line, 2, "{e}");
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[tokio::test]
async fn unknown_column_is_located() {
    let sql = format!("{}SELECT sensor_id,\n  temprature FROM t;", table_sql());
    let e = plan_error(&sql).await;
    assert!(e.to_string().contains("temprature"), "{e}");
    assert_eq!(
        e.location().map(|l| (l.line, l.column)),
        Some((8, 3)),
        "{e}"
    );
}

#[tokio::test]
async fn unknown_table_connector_and_option() {
    let e = plan_error("SELECT *\n  FROM nowhere;").await;
    assert!(e.to_string().contains("nowhere"), "{e}");
    assert_eq!(
        e.location().map(|l| (l.line, l.column)),
        Some((2, 8)),
        "{e}"
    );
    let e = plan_error("CREATE TABLE x (a INT) WITH ('connector' = 'kafkaa');").await;
    assert!(e.to_string().contains("unknown connector 'kafkaa'"), "{e}");
    let e = plan_error("CREATE TABLE x (a INT) WITH ('connector' = 'filesystem',\n 'pth' = 'x', 'format' = 'json');").await;
    assert!(e.to_string().contains("'pth'"), "{e}");
    assert_eq!(e.location().map(|l| l.line), Some(2), "{e}");
}

#[tokio::test]
async fn a_kafka_sink_with_several_topics_is_refused_when_planned() {
    let sql = format!(
        "{}CREATE TABLE out_t (sensor_id STRING) WITH ('connector' = 'kafka',
           'topic' = 'a;b', 'properties.bootstrap.servers' = '127.0.0.1:1', 'format' = 'json');
         EXPLAIN INSERT INTO out_t SELECT sensor_id FROM t;",
        table_sql()
    );
    let e = plan_error(&sql).await;
    assert!(e.to_string().contains("writes to one topic"), "{e}");
    assert!(e.to_string().contains("'a;b' names 2"), "{e}");
}

#[tokio::test]
async fn metadata_columns_must_exist() {
    let e = plan_error("CREATE TABLE m (a INT, o BIGINT METADATA FROM 'offset') WITH ('connector' = 'filesystem', 'path' = 'x', 'format' = 'json');").await;
    assert!(e.to_string().contains("no metadata key 'offset'"), "{e}");
}

#[tokio::test]
async fn unsupported_queries_say_what_to_write() {
    let e = plan_error(&format!(
        "{}SELECT * FROM t ORDER BY temperature;",
        table_sql()
    ))
    .await;
    assert!(e.to_string().contains("ORDER BY"), "{e}");
    let e = plan_error(&format!(
        "{}SELECT sensor_id, STDDEV(temperature) FROM t GROUP BY sensor_id;",
        table_sql()
    ))
    .await;
    assert!(
        e.to_string().contains("stddev") && e.to_string().contains("window"),
        "{e}"
    );
    let e = plan_error(&format!(
        "{}SELECT sensor_id, LAG(temperature) OVER (PARTITION BY sensor_id ORDER BY ts) FROM t;",
        table_sql()
    ))
    .await;
    assert!(e.to_string().contains("OVER"), "{e}");
    let e = plan_error(&format!(
        "{}SELECT window_start, COUNT(*) FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;",
        table_sql()
    ))
    .await;
    assert!(e.to_string().contains("slide comes first"), "{e}");
}

#[tokio::test]
async fn window_on_a_column_without_watermark_is_rejected() {
    let p = temp_file("nowm.jsonl", "");
    let sql = format!(
        "CREATE TABLE n (a STRING, ts TIMESTAMP(3)) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n\
         SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE n, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;",
        p.display()
    );
    let e = plan_error(&sql).await;
    assert!(e.to_string().contains("WATERMARK FOR ts"), "{e}");
}

#[tokio::test]
async fn bad_records_are_skipped_counted_and_reported() {
    let lines = [
        r#"{"sensor_id":"a","temperature":1.0,"ts":"2024-01-01 00:00:01.000"}"#,
        r#"{"sensor_id":"a","temperature":"#,
        r#"{"sensor_id":"a","temperature":2.0}"#,
        r#"{"sensor_id":"a","temperature":3.0,"ts":"2024-01-01 00:00:02.000"}"#,
    ];
    let p = temp_file("bad.jsonl", &(lines.join("\n") + "\n"));
    let sql = format!(
        "{}SELECT sensor_id, COUNT(*) AS c, SUM(temperature) AS s FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY sensor_id, window_start, window_end;",
        TABLE.replace("PATH", &p.to_string_lossy())
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let stream = engine.query(&sql).await.unwrap();
    let job = stream.job().clone();
    let rows = to_json(&stream.collect().await.unwrap(), None);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["c"], 2);
    assert_eq!(rows[0]["s"], 4.0);
    assert_eq!(job.bad_records(), 2);
    let dl = job.dead_letters();
    assert!(dl.iter().any(|r| r.position.ends_with(":2")), "{dl:?}");
    assert!(dl.iter().any(|r| r.reason.contains("NULL")), "{dl:?}");
}

#[tokio::test]
async fn on_error_fail_stops_the_job() {
    let p = temp_file("fail.jsonl", "{\"sensor_id\":\"a\",\"temperature\":\n");
    let sql = TABLE.replace("PATH", &p.to_string_lossy()).replace(
        "'format' = 'json'",
        "'format' = 'json', 'format.on-error' = 'fail'",
    ) + "SELECT * FROM t;";
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let err = engine
        .query(&sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains(":1"), "{err}");
}

#[tokio::test]
async fn garbage_never_panics() {
    let engine = weir::Engine::new();
    for sql in [
        "",
        ";;",
        "SELECT",
        "CREATE TABLE (",
        "CREATE TABLE t (a INT",
        "TABLE(TUMBLE(",
        "SELECT * FROM TABLE(TUMBLE(TABLE))",
        "SET",
        "EXPLAIN",
        "\u{0}\u{1}'",
        "SELECT 'unterminated",
    ] {
        let _ = engine.execute(sql).await;
    }
}
