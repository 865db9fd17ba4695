//! The embedded API: constant queries, INSERT jobs into a file sink, cancelling a query.

use crate::common::*;

#[tokio::test]
async fn constant_query_evaluates_at_once() {
    let engine = weir::Engine::new();
    let rows = to_json(
        &engine
            .query("SELECT 1 + 1 AS two")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap(),
        None,
    );
    assert_eq!(rows, vec![serde_json::json!({"two": 2})]);
}

#[tokio::test]
async fn insert_into_filesystem_sink_writes_rows() {
    let case = root().join("tests/conformance/tumble_tvf");
    let out = std::env::temp_dir().join(format!("weir-api-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let sql = job_in_dir(&case).replace(
        "SELECT sensor_id",
        &format!(
            "CREATE TABLE out (sensor_id STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), avg_temp DOUBLE, cnt BIGINT, sum_quality BIGINT) \
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\nINSERT INTO out SELECT sensor_id",
            out.display()
        ),
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let job = engine.submit(&sql).await.unwrap();
    job.wait().await.unwrap();
    let written = read_jsonl(&out);
    let expected = read_jsonl(&case.join("expected.jsonl"));
    assert_same_rows("insert", &written, &expected);
}

#[tokio::test]
async fn an_unbounded_query_can_be_cancelled() {
    let engine = weir::Engine::new();
    let mut s = engine
        .query("CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '1000');\nSELECT id FROM g WHERE id IS NOT NULL OR id IS NULL;")
        .await
        .unwrap();
    let first = s.next_batch().await.expect("rows").unwrap();
    assert!(first.num_rows() > 0);
    s.job().cancel();
    let job = s.job().clone();
    tokio::time::timeout(std::time::Duration::from_secs(10), job.wait())
        .await
        .expect("job stops")
        .unwrap();
}

#[tokio::test]
async fn explain_shows_operators() {
    let case = root().join("tests/conformance/hop_tvf");
    let sql = job_in_dir(&case);
    let engine = weir::Engine::new();
    let (ddl, query) = sql.split_at(sql.find("SELECT").unwrap());
    engine.execute(ddl).await.unwrap();
    let text = engine.explain(query).unwrap();
    assert!(
        text.contains("WindowAggregate: HOP(slide=1 min, size=3 min)"),
        "{text}"
    );
    assert!(
        text.contains("Source: t (connector=filesystem, watermark: ts - INTERVAL '5' SECOND)"),
        "{text}"
    );
}

#[tokio::test]
async fn an_overridden_option_survives_set_and_reset() {
    let engine = weir::Engine::new();
    engine
        .override_option("table.local-time-zone", "Asia/Tokyo")
        .unwrap();
    let out = engine
        .execute("SET 'table.local-time-zone' = 'UTC'; RESET;")
        .await
        .unwrap();
    let weir::Output::Message(m) = &out[0] else {
        panic!("SET answers with a message");
    };
    assert!(m.contains("fixed to 'Asia/Tokyo'"), "{m}");
    let zone = engine.settings().get("table.local-time-zone").cloned();
    assert_eq!(zone.as_deref(), Some("Asia/Tokyo"));
    let err = engine
        .override_option("state.memory-limt", "1 gb")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("did you mean 'state.memory-limit'"),
        "{err}"
    );
    let err = engine
        .override_option("table.local-time-zone", "Mars/Olympus")
        .unwrap_err();
    assert!(err.to_string().contains("unknown time zone"), "{err}");
}

#[tokio::test]
async fn an_unknown_set_key_is_kept_with_a_hint() {
    let engine = weir::Engine::new();
    let out = engine
        .execute("SET 'window.alowed-lateness' = '1 min';")
        .await
        .unwrap();
    let weir::Output::Message(m) = &out[0] else {
        panic!("SET answers with a message");
    };
    assert!(m.contains("did you mean 'window.allowed-lateness'"), "{m}");
    assert_eq!(
        engine
            .settings()
            .get("window.alowed-lateness")
            .map(String::as_str),
        Some("1 min")
    );
}
