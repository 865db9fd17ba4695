//! Metrics beyond the basics: end-to-end latency histograms (from event time and from
//! ingestion, at write or at commit), per-partition source records, watermarks and idleness
//! against the real broker, timestamp-unit corrections, and `RUST_LOG`-filtered logs.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// `n` JSON lines for key `k` whose event times are `ago` before now, 1 ms apart.
fn recent_lines(n: usize, ago: chrono::Duration) -> String {
    let start = chrono::Utc::now() - ago;
    (0..n)
        .map(|i| {
            let ts = start + chrono::Duration::milliseconds(i as i64);
            format!(
                "{{\"k\":\"a\",\"ts\":\"{}\"}}\n",
                ts.format("%Y-%m-%d %H:%M:%S%.3f")
            )
        })
        .collect()
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-lat-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const TABLE: &str = "CREATE TABLE t (k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
  WITH ('connector' = 'filesystem', 'path' = 'PATH', 'format' = 'json');";

#[tokio::test]
async fn end_to_end_latency_counts_every_row_from_event_time_and_ingestion() {
    let dir = temp_dir("e2e");
    let path = dir.join("in.jsonl");
    std::fs::write(&path, recent_lines(50, chrono::Duration::seconds(3))).unwrap();
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let sql = format!(
        "{} CREATE TABLE out_t (k STRING, ts TIMESTAMP(3)) WITH ('connector' = 'blackhole');
         INSERT INTO out_t SELECT k, ts FROM t WHERE k = 'a';",
        TABLE.replace("PATH", &path.display().to_string())
    );
    let job = engine.submit(&sql).await.unwrap();
    job.wait().await.unwrap();
    let text = engine.metrics_text();
    let sink = "sink=\"out_t\"";
    let name = "weir_end_to_end_latency_seconds";
    let count = metric(&text, &format!("{name}_count"), &[sink]).expect(&text);
    assert_eq!(count, 50.0, "one observation per row out:\n{text}");
    let mean = metric(&text, &format!("{name}_sum"), &[sink]).unwrap() / count;
    assert!((2.9..30.0).contains(&mean), "rows 3 s old: mean {mean}");
    let under = metric(&text, &format!("{name}_bucket"), &[sink, "le=\"2.5\""]).unwrap();
    assert_eq!(under, 0.0, "no row is younger than its event time allows");
    let all = metric(&text, &format!("{name}_bucket"), &[sink, "le=\"+Inf\""]).unwrap();
    assert_eq!(all, 50.0);
    let name = "weir_ingestion_latency_seconds";
    let count = metric(&text, &format!("{name}_count"), &[sink]).expect(&text);
    assert_eq!(count, 50.0);
    let mean = metric(&text, &format!("{name}_sum"), &[sink]).unwrap() / count;
    assert!(mean < 2.0, "read and written within moments: {mean}");
}

#[tokio::test]
async fn window_results_are_measured_from_their_window_end() {
    let dir = temp_dir("win");
    let path = dir.join("in.jsonl");
    std::fs::write(&path, recent_lines(20, chrono::Duration::seconds(30))).unwrap();
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let sql = format!(
        "{} SELECT k, window_end, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts),
           INTERVAL '1' SECOND)) GROUP BY k, window_start, window_end",
        TABLE.replace("PATH", &path.display().to_string())
    );
    let stream = engine.query(&sql).await.unwrap();
    let job = stream.job().clone();
    let rows: usize = stream
        .collect()
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert!((1..=2).contains(&rows), "{rows} windows");
    // The query has ended, so it left `/metrics`: its job's own numbers.
    let text = weir::engine_metrics::render(std::slice::from_ref(&job));
    let name = "weir_end_to_end_latency_seconds";
    let q = "sink=\"query\"";
    let count = metric(&text, &format!("{name}_count"), &[q]).expect(&text);
    assert_eq!(count, rows as f64, "{text}");
    let mean = metric(&text, &format!("{name}_sum"), &[q]).unwrap() / count;
    assert!(
        (27.0..60.0).contains(&mean),
        "window ends ~29 s ago: {mean}"
    );
}

#[tokio::test]
async fn a_committing_sink_shows_latency_once_its_checkpoint_commits() {
    let dir = temp_dir("commit");
    let path = dir.join("in.jsonl");
    std::fs::write(&path, recent_lines(40, chrono::Duration::seconds(1))).unwrap();
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.set_checkpointing(Some(weir::CheckpointConfig {
        interval: Duration::from_millis(100),
        ..weir::CheckpointConfig::new(dir.join("ck"))
    }));
    let sql = format!(
        "{} CREATE TABLE out_t (k STRING, ts TIMESTAMP(3)) WITH ('connector' = 'filesystem',
           'path' = '{}', 'format' = 'json');
         INSERT INTO out_t SELECT k, ts FROM t;",
        TABLE.replace("PATH", &path.display().to_string()),
        dir.join("out").display()
    );
    let job = engine.submit(&sql).await.unwrap();
    job.wait().await.unwrap();
    assert!(job.last_checkpoint().is_some());
    let text = engine.metrics_text();
    let sink = "sink=\"out_t\"";
    let count = metric(&text, "weir_end_to_end_latency_seconds_count", &[sink]).expect(&text);
    assert_eq!(count, 40.0, "every committed row once:\n{text}");
    let failures = metric(&text, "weir_checkpoint_failures_total", &[]).expect(&text);
    assert_eq!(failures, 0.0);
    let rows = metric(&text, "weir_sink_rows_total", &[]).expect(&text);
    assert_eq!(rows, 40.0);
}

#[tokio::test]
async fn kafka_partitions_report_records_watermarks_idleness_and_unit_corrections() {
    let broker = crate::common::kafka::Broker::start();
    broker.create_topic("parts", 3).await;
    // Partition 0: ten readings in milliseconds; partition 1: five in seconds (corrected by
    // 'timestamp.unit' = 'auto'); partition 2 stays empty and goes idle.
    let mut records = Vec::new();
    for i in 0..10i64 {
        let v = format!(r#"{{"v":{i},"ts":{}}}"#, 1_704_067_200_000 + i * 1000);
        records.push((0, format!("k{i}"), v.into_bytes()));
    }
    for i in 0..5i64 {
        let v = format!(r#"{{"v":{i},"ts":{}}}"#, 1_704_067_200 + i);
        records.push((1, format!("k{i}"), v.into_bytes()));
    }
    broker.produce("parts", &records, 3).await;
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let sql = format!(
        "CREATE TABLE k (v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH (
           'connector' = 'kafka', 'topic' = 'parts', 'properties.bootstrap.servers' = '{}',
           'format' = 'json', 'scan.startup.mode' = 'earliest-offset',
           'timestamp.unit' = 'auto', 'scan.watermark.idle-timeout' = '300 ms');
         CREATE TABLE sink (v BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO sink SELECT v FROM k;",
        broker.bootstrap
    );
    let job = engine.submit(&sql).await.unwrap();
    let text = wait_for(Duration::from_secs(20), "partition 2 idle", async || {
        let text = engine.metrics_text();
        let idle = metric(&text, "weir_source_partition_idle", &["partition=\"2\""]);
        let read = metric(&text, "weir_source_records_total", &["partition=\"1\""]);
        // Partitions may be read by different subtasks: wait for partition 0 as well.
        let first = metric(&text, "weir_source_records_total", &["partition=\"0\""]);
        (idle == Some(1.0) && read == Some(5.0) && first == Some(10.0)).then_some(text)
    })
    .await;
    let p = |n: &str| format!("partition=\"{n}\"");
    let src = "source=\"k\"";
    let records = |n: &str| metric(&text, "weir_source_records_total", &[src, &p(n)]);
    assert_eq!(records("0"), Some(10.0), "{text}");
    assert_eq!(records("1"), Some(5.0), "{text}");
    assert_eq!(records("2"), Some(0.0), "{text}");
    let wm = metric(&text, "weir_source_watermark_seconds", &[&p("0")]).expect(&text);
    assert_eq!(wm, 1_704_067_209.0, "partition 0's largest event time");
    let wm = metric(&text, "weir_source_watermark_seconds", &[&p("1")]).expect(&text);
    assert_eq!(wm, 1_704_067_204.0, "seconds read as seconds");
    let active = metric(&text, "weir_source_partition_idle", &[&p("0")]);
    assert!(active.is_some(), "{text}");
    let fixed = metric(&text, "weir_timestamp_unit_corrections_total", &[]).expect(&text);
    assert_eq!(fixed, 5.0, "the five readings in seconds");
    job.cancel();
    let _ = job.wait().await;
}

/// Run `weir run` on `sql` with `RUST_LOG` set to `log` (unset when `None`): its stderr.
fn run_logged(sql: &str, log: Option<&str>, extra: &[&str]) -> String {
    let dir = temp_dir(&format!(
        "log-{}",
        log.unwrap_or("none").replace(['=', ','], "_")
    ));
    let job = dir.join("job.sql");
    std::fs::write(&job, sql).unwrap();
    let mut cmd = Command::new(weir_bin());
    cmd.arg("run").args(extra).arg(&job).current_dir(&dir);
    cmd.env_remove("RUST_LOG");
    if let Some(l) = log {
        cmd.env("RUST_LOG", l);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn logs_go_through_tracing_and_rust_log_filters_them() {
    let dir = temp_dir("logsrc");
    let input = dir.join("in.jsonl");
    std::fs::write(&input, "{\"v\":1}\nnot json\n{\"v\":2}\n").unwrap();
    let sql = format!(
        "CREATE TABLE src (v BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}',
           'format' = 'json');
         CREATE TABLE sink (v BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO sink SELECT v FROM src;",
        input.display()
    );
    let default = run_logged(&sql, None, &[]);
    assert!(
        default.contains("WARN") && default.contains("skipped bad record"),
        "{default}"
    );
    assert!(!default.contains("DEBUG"), "{default}");
    let errors_only = run_logged(&sql, Some("error"), &[]);
    assert!(!errors_only.contains("skipped bad record"), "{errors_only}");
    let ck = dir.join("ck");
    let ck_arg = ck.display().to_string();
    let debug = run_logged(&sql, Some("debug"), &["--checkpoint-dir", &ck_arg]);
    assert!(
        debug.contains("DEBUG") && debug.contains("checkpoint 1 complete"),
        "{debug}"
    );
}
