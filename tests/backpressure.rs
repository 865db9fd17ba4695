//! Backpressure, end to end in a real `weir run` process: a slow sink slows the Kafka source
//! instead of letting the topic pile up in memory, and nothing is lost on the way.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::kafka::Broker;
use crate::common::{wait_for, weir_bin};

const RECORDS: usize = 1_000_000;
/// Each value carries this much padding, so the topic (~230 MB) is far larger than the bound.
const PADDING: usize = 160;
/// Peak RSS the job must stay under (the debug build idles at about 40 MB; librdkafka may
/// prefetch 16 MB per partition).
// Two source subtasks (one per core) each keep librdkafka's 16 MB prefetch window.
const RSS_BOUND_MB: u64 = 256;

/// Peak resident memory (VmHWM) of a running process, in MB.
fn peak_rss_mb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

fn job(broker: &Broker, ends: &str, out: &std::path::Path) -> String {
    format!(
        "CREATE TABLE readings (id BIGINT, sensor_id STRING, temperature DOUBLE, pad STRING)
         WITH ('connector' = 'kafka', 'topic' = 'bp', 'format' = 'json',
               'properties.bootstrap.servers' = '{}', 'scan.startup.mode' = 'earliest-offset',
               'scan.bounded.mode' = 'specific-offsets', 'scan.bounded.specific-offsets' = '{ends}');
         CREATE TABLE slow (id BIGINT, sensor_id STRING)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv',
               'sink.rows-per-second' = '60000');
         INSERT INTO slow SELECT id, sensor_id FROM readings;",
        broker.bootstrap,
        out.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_bounds_memory_and_loses_nothing() {
    let broker = Broker::start();
    broker.create_topic("bp", 3).await;
    let pad = "x".repeat(PADDING);
    let ends = broker
        .produce_many("bp", RECORDS, 3, |i| {
            let v = format!(
                r#"{{"id":{i},"sensor_id":"s-{}","temperature":{}.5,"pad":"{pad}"}}"#,
                i % 1000,
                i % 40
            );
            ((i % 3) as i32, v.into_bytes())
        })
        .await;
    let dir = std::env::temp_dir().join(format!("weir-bp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (sql_path, out) = (dir.join("job.sql"), dir.join("out.csv"));
    std::fs::write(&sql_path, job(&broker, &ends, &out)).unwrap();

    let started = Instant::now();
    let mut child = Command::new(weir_bin())
        .args(["run", "-q"])
        .arg(&sql_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let status = wait_for(Duration::from_secs(300), "the job to end", async || {
        peak = peak.max(peak_rss_mb(pid).unwrap_or(0));
        child.try_wait().unwrap()
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    let stderr: Vec<String> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(status.success(), "weir run failed: {stderr:?}");
    eprintln!("backpressure: {RECORDS} records in {secs:.1} s, peak RSS {peak} MB");
    // The sink's rate makes the job take at least RECORDS / 60k = 16.7 s: the source was held
    // back for most of the run while the topic held far more than the bound.
    assert!(secs >= 16.0, "the sink was not slow ({secs:.1} s)");
    assert!(peak > 0 && peak < RSS_BOUND_MB, "peak RSS {peak} MB");

    let text = std::fs::read_to_string(&out).unwrap();
    let mut seen = HashSet::with_capacity(RECORDS);
    for line in text.lines().filter(|l| !l.is_empty()) {
        let id: usize = line.split(',').next().unwrap().parse().unwrap();
        assert!(seen.insert(id), "id {id} written twice");
    }
    assert_eq!(seen.len(), RECORDS, "records lost");
    let _ = std::fs::remove_dir_all(&dir);
}
