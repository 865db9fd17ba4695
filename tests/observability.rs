//! Observability: `weir run --metrics-addr` (and `weir::metrics_server::serve`) serves
//! Prometheus metrics and `/health` over HTTP; the metrics count what the jobs did (source
//! records, Kafka lag against the real broker, dead letters by reason, late rows, per-operator
//! numbers) and equal the system tables; health turns 503 when checkpoints get old.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// `GET path` on `addr`: (status line, body).
fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("metrics endpoint");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

#[test]
fn weir_run_serves_metrics_and_health() {
    let dir = std::env::temp_dir().join(format!("weir-obs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let job = dir.join("job.sql");
    std::fs::write(
        &job,
        "CREATE TABLE gen (v BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '2000');
         CREATE TABLE sink (v BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO sink SELECT v FROM gen WHERE v > 0;",
    )
    .unwrap();
    let mut child = Command::new(weir_bin())
        .args(["run", "--metrics-addr", "127.0.0.1:0"])
        .arg(&job)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "weir exited early");
        if let Some(rest) = line.trim().strip_prefix("weir: metrics on http://") {
            break rest.trim_end_matches("/metrics").to_string();
        }
    };
    let records = |text: &str| metric(text, "weir_source_records_total", &["source=\"gen\""]);
    let first = wait_for_blocking(Duration::from_secs(20), "records read", || {
        let (status, text) = get(&addr, "/metrics");
        assert!(status.contains("200"), "{status}");
        (records(&text) > Some(0.0)).then_some(text)
    });
    let n1 = records(&first).unwrap();
    assert!(
        first.contains("weir_operator_busy_ratio") && first.contains("weir_backpressured_ratio")
    );
    assert!(
        first.contains("weir_job_running{job=\"1:insert into sink\"} 1"),
        "{first}"
    );
    let rss = metric(&first, "weir_process_resident_memory_bytes", &[]).unwrap();
    assert!(rss > 1e6, "{first}");
    assert!(first.contains("weir_build_info{version="), "{first}");
    // The generator makes 2000 rows/s; the meter reads that, not the count (which keeps
    // growing past it).
    let rate = |text: &str| metric(text, "weir_source_records_per_second", &["source=\"gen\""]);
    let second = wait_for_blocking(Duration::from_secs(20), "about 2000 records/s", || {
        let (_, text) = get(&addr, "/metrics");
        let per_second = rate(&text).unwrap_or(0.0);
        ((1000.0..3000.0).contains(&per_second) && records(&text) > Some(2000.0)).then_some(text)
    });
    let n2 = records(&second).unwrap();
    assert!(n2 > n1, "the counter grows: {n1} then {n2}");
    let (status, body) = get(&addr, "/health");
    assert!(
        status.contains("200") && body.contains("ok"),
        "{status} {body}"
    );
    let (status, _) = get(&addr, "/nope");
    assert!(status.contains("404"));
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test]
async fn metrics_count_dead_letters_and_late_rows() {
    let dir = std::env::temp_dir().join(format!("weir-obs-dl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lines = [
        r#"{"k":"a","ts":"2024-01-01 00:00:10.000"}"#,
        r#"{"k":"a","ts":"2024-01-01 00:02:00.000"}"#,
        r#"{"k":"a","ts":"2024-01-01 00:00:20.000"}"#,
        r#"{"k":"a","ts":"#,
        r#"not json at all"#,
        r#"{"k":"a","ts":"2024-01-01 00:03:00.000"}"#,
    ];
    std::fs::write(dir.join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let sql = format!(
        "CREATE TABLE t (k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE out_t (k STRING, n BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO out_t SELECT k, COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts),
           INTERVAL '1' MINUTE)) GROUP BY k, window_start, window_end;",
        dir.join("in.jsonl").display()
    );
    let job = engine.submit(&sql).await.unwrap();
    job.wait().await.unwrap();
    let text = engine.metrics_text();
    let dead = metric_total(&text, "weir_dead_letters_total", &["source=\"t\""]);
    assert_eq!(dead, 2.0, "{text}");
    assert_eq!(dead as u64, job.bad_records());
    let late = metric_total(&text, "weir_late_rows_total", &[]);
    assert_eq!(late, 1.0, "{text}");
    let by = metric(&text, "weir_late_rows_total", &["WindowAssign\""]);
    assert_eq!(by, Some(1.0), "the operator that dropped it: {text}");
    assert_eq!(late as u64, job.late_rows());
    let src = metric(&text, "weir_source_records_total", &["source=\"t\""]).expect(&text);
    assert_eq!(src, 4.0, "{text}");
    let bytes = metric(&text, "weir_source_bytes_total", &["job="]).expect(&text);
    let file_len = std::fs::metadata(dir.join("in.jsonl")).unwrap().len();
    assert_eq!(
        bytes, file_len as f64,
        "every byte of the file is counted once: {text}"
    );
    assert!(text.contains("weir_job_running{job=") && text.ends_with("# EOF\n"));
    // The SQL system tables show the same numbers.
    let rows = system(
        &engine,
        "SELECT SUM(value) AS value FROM weir.metrics WHERE metric = 'weir_late_rows_total'",
    )
    .await;
    assert_eq!(rows, vec![serde_json::json!({"value": 1.0})]);
    let rows = system(
        &engine,
        "SELECT source, COUNT(*) AS n FROM weir.dead_letters GROUP BY source",
    )
    .await;
    assert_eq!(rows, vec![serde_json::json!({"source": "t", "n": 2})]);
    let rows = system(&engine, "SELECT id, late_rows, bad_records FROM weir.jobs").await;
    let want = serde_json::json!({"id": job.id(), "late_rows": 1, "bad_records": 2});
    assert_eq!(rows, vec![want]);
}

/// A system-table query's rows as JSON.
async fn system(engine: &weir::Engine, sql: &str) -> Vec<serde_json::Value> {
    let batches = engine.query(sql).await.unwrap().collect().await.unwrap();
    to_json(&batches, None)
}

#[tokio::test]
async fn health_reports_old_checkpoints() {
    let ckpt = std::env::temp_dir().join(format!("weir-obs-ck-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ckpt);
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.set_checkpointing(Some(weir::CheckpointConfig {
        interval: Duration::from_secs(3600),
        ..weir::CheckpointConfig::new(&ckpt)
    }));
    let job = engine
        .submit(
            "CREATE TABLE gen (v BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '10');
             CREATE TABLE sink (v BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO sink SELECT v FROM gen;",
        )
        .await
        .unwrap();
    let stale = async || engine.health(Duration::from_millis(100)).err();
    let err = wait_for(Duration::from_secs(20), "no checkpoint for 100 ms", stale).await;
    assert!(engine.health(Duration::from_secs(60)).is_ok());
    assert!(
        err.contains("unhealthy") && err.contains("no checkpoint"),
        "{err}"
    );
    job.cancel();
    let _ = job.wait().await;
    let _ = std::fs::remove_dir_all(&ckpt);
}

/// The sum of every `weir_kafka_consumer_lag_records` line of scraped `text`, and how many
/// there are.
fn lag(text: &str) -> (f64, usize) {
    let lines = weir::engine_metrics::parse(text);
    let lag = lines
        .iter()
        .filter(|s| s.name == "weir_kafka_consumer_lag_records");
    lag.fold((0.0, 0), |(sum, n), s| (sum + s.value, n + 1))
}

/// Produce `(partition, value)` records to `topic` one per produce request (tansu reports a
/// partition's end offset as the last batch's base offset + 1, so batched records would hide
/// the lag, which Kafka counts in records).
async fn produce_each(
    broker: &crate::common::kafka::Broker,
    topic: &str,
    records: &[(i32, String)],
) {
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let mut acks = Vec::new();
    for (p, v) in records {
        let rec = rdkafka::producer::FutureRecord::<(), String>::to(topic)
            .partition(*p)
            .payload(v);
        acks.push(producer.send_result(rec).map_err(|(e, _)| e).unwrap());
    }
    for a in acks {
        a.await.unwrap().unwrap();
    }
}

/// 2024-01-01 00:00:00 in seconds: late readings carry it; good ones start an hour later.
const BASE: i64 = 1_704_067_200;

/// `good` readings one second of event time apart over 3 partitions, and `bad` undecodable
/// records among them.
fn readings(good: usize, bad: usize) -> Vec<(i32, String)> {
    let mut records: Vec<(i32, String)> = (0..good)
        .map(|i| {
            let ts = BASE + 3600 + i as i64;
            ((i % 3) as i32, format!(r#"{{"v":{i},"ts":{ts}}}"#))
        })
        .collect();
    for i in 0..bad {
        records.insert(i * 100 + 50, ((i % 3) as i32, format!("not json {i}")));
    }
    records
}

#[tokio::test]
async fn kafka_lag_over_http_grows_behind_a_blocked_sink_then_reaches_zero() {
    const GOOD: usize = 3000;
    const BAD: usize = 7;
    const LATE: usize = 5;
    let broker = crate::common::kafka::Broker::start();
    broker.create_topic("lagging", 3).await;
    produce_each(&broker, "lagging", &readings(GOOD, BAD)).await;
    let (gate, rx) = tokio::sync::watch::channel(false);
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.set_batch_size(10);
    engine.register_sink(std::sync::Arc::new(GatedSink(rx)));
    let addr = weir::metrics_server::serve(
        "127.0.0.1:0".parse().unwrap(),
        engine.clone(),
        Duration::from_secs(60),
    )
    .unwrap()
    .to_string();
    let sql = format!(
        "CREATE TABLE k (v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
           WITH ('connector' = 'kafka', 'topic' = 'lagging', 'format' = 'json',
           'properties.bootstrap.servers' = '{}', 'scan.startup.mode' = 'earliest-offset',
           'timestamp.unit' = 's');
         CREATE TABLE sink (w TIMESTAMP(3), n BIGINT) WITH ('connector' = 'gated');
         SET 'monitoring.lag-warn' = '100';
         INSERT INTO sink SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE k,
           DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end;",
        broker.bootstrap
    );
    let job = engine.submit(&sql).await.unwrap();
    // The sink is blocked, so the job stops reading and stays behind the waiting records.
    let behind = wait_for(Duration::from_secs(20), "a consumer lag", async || {
        let (_, text) = get(&addr, "/metrics");
        let (sum, n) = lag(&text);
        let read = metric_total(&text, "weir_source_records_total", &["source=\"k\""]);
        (n == 3 && sum > 0.0 && read > 0.0).then_some(sum)
    })
    .await;
    assert!(behind > 100.0, "{behind}");
    let warned = async || {
        let warnings = job.warnings();
        warnings
            .iter()
            .any(|w| w.contains("monitoring.lag-warn"))
            .then_some(())
    };
    wait_for(
        Duration::from_secs(20),
        "a warning when the lag crossed 100",
        warned,
    )
    .await;
    gate.send_replace(true); // lift the throttle: the job catches up and the lag reaches 0
    let caught_up = |want_read: usize, want_late: usize| {
        let addr = addr.clone();
        async move {
            wait_for(Duration::from_secs(60), "the job to catch up", async || {
                let (_, text) = get(&addr, "/metrics");
                let read = metric_total(&text, "weir_source_records_total", &["source=\"k\""]);
                let late = metric_total(&text, "weir_late_rows_total", &["job="]);
                let done = lag(&text) == (0.0, 3) && read == want_read as f64;
                (done && late >= want_late as f64).then_some(text)
            })
            .await
        }
    };
    caught_up(GOOD, 0).await;
    // Readings an hour behind every partition's watermark: each one is late.
    let late: Vec<(i32, String)> = (0..LATE)
        .map(|i| ((i % 3) as i32, format!(r#"{{"v":-1,"ts":{BASE}}}"#)))
        .collect();
    produce_each(&broker, "lagging", &late).await;
    let text = caught_up(GOOD + LATE, LATE).await;
    // Counters equal what was produced: records read, dead letters, late rows.
    let dead = metric_total(&text, "weir_dead_letters_total", &["source=\"k\""]);
    assert_eq!(dead, BAD as f64, "{text}");
    let late = metric_total(&text, "weir_late_rows_total", &["job="]);
    assert_eq!(late, LATE as f64, "{text}");
    // The system tables show the numbers /metrics shows.
    let rows = system(
        &engine,
        "SELECT SUM(lag) AS lag, COUNT(*) AS n FROM weir.kafka_lag",
    )
    .await;
    assert_eq!(rows, vec![serde_json::json!({"lag": 0, "n": 3})]);
    let rows = system(
        &engine,
        "SELECT SUM(value) AS v FROM weir.metrics WHERE metric = 'weir_source_records_total'",
    )
    .await;
    assert_eq!(rows, vec![serde_json::json!({"v": (GOOD + LATE) as f64})]);
    let rows = system(&engine, "SELECT late_rows, bad_records FROM weir.jobs").await;
    assert_eq!(
        rows,
        vec![serde_json::json!({"late_rows": LATE, "bad_records": BAD})]
    );
    job.cancel();
    let _ = job.wait().await;
}

#[tokio::test]
async fn operators_report_open_windows_state_and_watermark_lag() {
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let job = engine
        .submit(
            "CREATE TABLE gen (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
               WITH ('connector' = 'datagen', 'rows-per-second' = '1000',
                     'fields.k.min' = '1', 'fields.k.max' = '5');
             CREATE TABLE sink (k BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO sink SELECT k, COUNT(*) FROM TABLE(TUMBLE(TABLE gen, DESCRIPTOR(ts),
               INTERVAL '1' HOUR)) GROUP BY k, window_start, window_end;",
        )
        .await
        .unwrap();
    let agg = "WindowAggregate\"";
    let text = wait_for(Duration::from_secs(20), "an open window", async || {
        let text = engine.metrics_text();
        let windows = metric(&text, "weir_open_windows", &[agg]);
        let lag = metric(&text, "weir_watermark_lag_seconds", &[agg]);
        (windows >= Some(1.0) && lag.is_some()).then_some(text)
    })
    .await;
    let keys = metric(&text, "weir_state_keys", &[agg]).expect(&text);
    assert!((1.0..=5.0).contains(&keys), "{text}");
    assert!(
        metric(&text, "weir_state_bytes", &[agg]).unwrap() > 0.0,
        "{text}"
    );
    let lag = metric(&text, "weir_watermark_lag_seconds", &[agg]).expect(&text);
    assert!(
        (0.0..60.0).contains(&lag),
        "the watermark follows the wall clock: {lag}"
    );
    job.cancel();
    let _ = job.wait().await;
}

/// A sink that blocks while its gate is closed.
#[derive(Clone)]
pub(crate) struct GatedSink(pub(crate) tokio::sync::watch::Receiver<bool>);

impl weir::SinkFactory for GatedSink {
    fn name(&self) -> &'static str {
        "gated"
    }
    fn validate(&self, _t: &weir::planner::TableDef) -> Result<(), String> {
        Ok(())
    }
    fn guarantee(&self, _t: &weir::planner::TableDef, _ck: bool) -> &'static str {
        "at-least-once"
    }
    fn create(&self, _ctx: weir::SinkContext) -> weir::Result<Box<dyn weir::Sink>> {
        Ok(Box::new(self.clone()))
    }
}

impl weir::Sink for GatedSink {
    fn write(
        &mut self,
        _b: weir::arrow::record_batch::RecordBatch,
    ) -> futures::future::BoxFuture<'_, weir::Result<()>> {
        Box::pin(async move {
            let _ = self.0.wait_for(|open| *open).await;
            Ok(())
        })
    }
    fn finish(&mut self) -> futures::future::BoxFuture<'_, weir::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn health_turns_503_while_the_sink_is_blocked_and_back() {
    let ckpt = std::env::temp_dir().join(format!("weir-obs-gate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ckpt);
    let (gate, rx) = tokio::sync::watch::channel(true);
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.register_sink(std::sync::Arc::new(GatedSink(rx)));
    engine.set_checkpointing(Some(weir::CheckpointConfig {
        interval: Duration::from_millis(100),
        ..weir::CheckpointConfig::new(&ckpt)
    }));
    let job = engine
        .submit(
            "CREATE TABLE gen (v BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '500');
             CREATE TABLE sink (v BIGINT) WITH ('connector' = 'gated');
             INSERT INTO sink SELECT v FROM gen;",
        )
        .await
        .unwrap();
    let max_age = Duration::from_millis(800);
    let addr = weir::metrics_server::serve("127.0.0.1:0".parse().unwrap(), engine.clone(), max_age)
        .unwrap()
        .to_string();
    let wait_until = |healthy: bool| {
        let addr = addr.clone();
        async move {
            let what = format!("health to become {healthy}");
            wait_for(Duration::from_secs(20), &what, async || {
                (get(&addr, "/health").0.contains("200") == healthy).then_some(())
            })
            .await
        }
    };
    assert!(until_checkpoint(&job, 2).await, "checkpoints complete");
    wait_until(true).await;
    gate.send_replace(false); // the sink blocks: barriers stop behind its input
    wait_until(false).await;
    let (status, reason) = get(&addr, "/health");
    assert!(status.contains("503"), "{status}");
    assert!(reason.contains("no checkpoint"), "{reason}");
    let text = engine.metrics_text();
    assert!(
        metric(&text, "weir_checkpoint_size_bytes", &["job="]).unwrap() > 0.0,
        "{text}"
    );
    assert!(
        metric(&text, "weir_sink_commit_seconds", &["job="]).is_some(),
        "{text}"
    );
    let before = job.last_checkpoint().unwrap_or(0);
    gate.send_replace(true); // unblocked: checkpoints resume
    wait_until(true).await;
    assert!(
        job.last_checkpoint().unwrap_or(0) > before,
        "a new checkpoint completed"
    );
    job.cancel();
    let _ = job.wait().await;
    let _ = std::fs::remove_dir_all(&ckpt);
}

#[test]
fn a_silent_or_slow_client_does_not_delay_health_and_is_cut_off() {
    let timeouts = weir::metrics_server::Timeouts {
        header_read: Duration::from_secs(2),
        connection: Duration::from_secs(4),
    };
    let addr = weir::metrics_server::serve_with(
        "127.0.0.1:0".parse().unwrap(),
        weir::Engine::new(),
        Duration::from_secs(60),
        timeouts,
    )
    .unwrap()
    .to_string();
    let t0 = std::time::Instant::now();
    let mut silent = TcpStream::connect(&addr).unwrap();
    // A slowloris: the request line, then a header byte every 100 ms, never finishing.
    let slow_addr = addr.clone();
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(slow_addr).unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n");
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(100));
            if s.write_all(b"X").is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(200)); // both clients are connected
    for _ in 0..3 {
        let asked = std::time::Instant::now();
        assert!(get(&addr, "/health").0.contains("200"));
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "health took {:?} beside the slow clients",
            asked.elapsed()
        );
    }
    // The silent client is disconnected once the header timeout passes.
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 256];
    let read = silent.read(&mut buf);
    let waited = t0.elapsed();
    let timed_out = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    assert!(
        !matches!(&read, Err(e) if timed_out(e)),
        "still open: {read:?}"
    );
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(6)).contains(&waited),
        "cut off after {waited:?}"
    );
    slow.join().unwrap();
}
