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
