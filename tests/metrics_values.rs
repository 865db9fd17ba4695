//! Metric values, not only names: a known input gives known counts, a throttled sink a
//! backpressure share above one half, and the numbers follow the rules `docs/metrics.md` gives
//! (bounded job history, `/health` by pipelines, late rows by operator, state bytes of session
//! and GROUP BY operators, expired keys, late updates).

use std::time::{Duration, Instant};

use serde_json::json;
use weir::engine_metrics::{metric, Metric, Samples};

use crate::common::*;
use crate::observability::GatedSink;

/// An engine that prints nothing, at parallelism 1: the values checked here are one task's
/// (shares of its time, seconds of its run), which several subtasks would add up.
fn engine() -> weir::Engine {
    let e = weir::Engine::new();
    e.set_quiet(true);
    e.override_option("parallelism.default", "1")
        .expect("parallelism");
    e
}

/// The rows of the last output of `sql` (a table) as JSON.
async fn table(engine: &weir::Engine, sql: &str) -> Vec<serde_json::Value> {
    match engine.execute(sql).await.unwrap().pop() {
        Some(weir::Output::Table(_, batches)) => to_json(&batches, None),
        _ => panic!("{sql} gives no table"),
    }
}

/// The samples of `metric` whose `operator` label ends with `:{op}`, as (operator label,
/// value).
fn by_operator(samples: &Samples, metric: &'static Metric, op: &str) -> Vec<(String, f64)> {
    samples
        .of(metric)
        .filter_map(|s| {
            let label = s.label("operator")?;
            label
                .ends_with(&format!(":{op}"))
                .then(|| (label.to_string(), s.number()))
        })
        .collect()
}

/// The one sample of `metric` for operator `op` (see [`by_operator`]).
fn op_value(samples: &Samples, metric: &'static Metric, op: &str) -> Option<f64> {
    let found = by_operator(samples, metric, op);
    assert!(found.len() <= 1, "several {op}: {found:?}");
    found.first().map(|f| f.1)
}

const GEN: &str = "CREATE TABLE g (v BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '3',
       'fields.v.min' = '1', 'fields.v.max' = '9');
     CREATE TABLE sink (v BIGINT) WITH ('connector' = 'blackhole');";

#[tokio::test]
async fn finished_jobs_are_bounded_and_only_failed_pipelines_make_health_fail() {
    let engine = engine();
    engine.execute(GEN).await.unwrap();
    for _ in 0..103 {
        let rows = engine.query("SELECT v FROM g").await.unwrap();
        assert_eq!(
            rows.collect()
                .await
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>(),
            3
        );
    }
    let jobs = table(&engine, "SHOW JOBS").await;
    assert_eq!(jobs.len(), 101, "100 ended jobs and the note");
    assert_eq!(jobs[100]["name"], json!("(3 older ended jobs dropped)"));
    assert_eq!(engine.jobs().len(), 100);
    let text = engine.metrics_text();
    assert_eq!(metric_total(&text, "weir_job_running", &["job="]), 0.0);
    assert!(
        !text.contains("job=\""),
        "ended queries leave /metrics: {text}"
    );
    // A failed ad-hoc query does not touch /health.
    let failing = engine
        .query("SELECT 10 / (v - v) AS x FROM g")
        .await
        .unwrap();
    assert!(
        failing.collect().await.is_err(),
        "division by zero fails the query"
    );
    assert_eq!(engine.health(Duration::from_secs(60)), Ok(()));
    // A failed pipeline does, until the same INSERT runs again.
    let bad = engine
        .submit("INSERT INTO sink SELECT 10 / (v - v) FROM g")
        .await
        .unwrap();
    assert!(bad.wait().await.is_err());
    let reason = engine.health(Duration::from_secs(60)).unwrap_err();
    assert!(
        reason.contains(&format!("job {} failed", bad.id())),
        "{reason}"
    );
    let text = engine.metrics_text();
    let label = format!("job=\"{}:insert into sink\"", bad.id());
    assert_eq!(
        metric(&text, "weir_job_running", &[&label]),
        Some(0.0),
        "{text}"
    );
    let good = engine
        .submit("INSERT INTO sink SELECT v FROM g")
        .await
        .unwrap();
    good.wait().await.unwrap();
    assert_eq!(engine.health(Duration::from_secs(60)), Ok(()));
    let text = engine.metrics_text();
    assert!(
        !text.contains(&label),
        "the failed run is superseded: {text}"
    );
    let label = format!("job=\"{}:insert into sink\"", good.id());
    assert_eq!(
        metric(&text, "weir_sink_rows_total", &[&label]),
        Some(3.0),
        "{text}"
    );
    let rows = table(&engine, "SELECT COUNT(*) AS n FROM weir.jobs").await;
    assert_eq!(rows, vec![json!({"n": 100})]);
}

/// The `weir_backpressured_ratio` and `weir_operator_backpressured_seconds_total` of the
/// job's source `gen`.
fn source_backpressure(engine: &weir::Engine) -> (f64, f64) {
    let samples = engine.samples();
    let share = op_value(&samples, &metric::BACKPRESSURED_RATIO, "source gen");
    let total = op_value(&samples, &metric::BACKPRESSURED_SECONDS, "source gen");
    (share.unwrap_or(0.0), total.unwrap_or(0.0))
}

#[tokio::test]
async fn a_throttled_sink_backpressures_the_source_more_than_half_the_time() {
    let engine = engine();
    engine.set_batch_size(10);
    let job = engine
        .submit(
            "CREATE TABLE gen (v BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '5000');
             CREATE TABLE slow (v BIGINT) WITH ('connector' = 'blackhole',
               'sink.rows-per-second' = '500');
             INSERT INTO slow SELECT v FROM gen WHERE v IS NOT NULL;",
        )
        .await
        .unwrap();
    let started = Instant::now();
    // After two seconds, so the share is not that of the first moments.
    let (share, total) = wait_for(
        Duration::from_secs(20),
        "backpressure above 1/2",
        async || {
            let (share, total) = source_backpressure(&engine);
            let settled = started.elapsed() > Duration::from_secs(2);
            (settled && share > 0.5).then_some((share, total))
        },
    )
    .await;
    assert!(share <= 1.0, "{share}");
    // The total is seconds: more than half of the time so far, at most all of it.
    let uptime = started.elapsed().as_secs_f64();
    assert!(
        total > uptime / 2.0 && total <= uptime + 0.1,
        "{total} s in {uptime} s"
    );
    let busy = op_value(&engine.samples(), &metric::BUSY_SECONDS, "source gen").unwrap();
    assert!(
        busy > 0.0 && busy < total,
        "the source works, then waits: {busy} s"
    );
    job.cancel();
    let _ = job.wait().await;
}

#[tokio::test]
async fn the_backpressure_share_recovers_while_its_total_keeps_counting() {
    let (gate, rx) = tokio::sync::watch::channel(false);
    let engine = engine();
    engine.set_batch_size(10);
    engine.register_sink(std::sync::Arc::new(GatedSink(rx)));
    let job = engine
        .submit(
            "CREATE TABLE gen (v BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '1000');
             CREATE TABLE sink (v BIGINT) WITH ('connector' = 'gated');
             INSERT INTO sink SELECT v FROM gen;",
        )
        .await
        .unwrap();
    // The sink stalls: the source's wait in progress counts before it ends.
    let (_, stalled) = wait_for(Duration::from_secs(20), "a stalled source", async || {
        let (share, total) = source_backpressure(&engine);
        (share > 0.5 && total > 1.0).then_some((share, total))
    })
    .await;
    gate.send_replace(true);
    let opened = Instant::now();
    // The gauge is the last 10 s: it falls once the stall is out of the window.
    let (_, total) = wait_for(
        Duration::from_secs(20),
        "backpressure back under 10%",
        async || {
            let (share, total) = source_backpressure(&engine);
            (share < 0.1).then_some((share, total))
        },
    )
    .await;
    let recovered = opened.elapsed();
    assert!(
        recovered > Duration::from_secs(5) && recovered < Duration::from_secs(15),
        "the share covers the last 10 s: back under 10% after {recovered:?}"
    );
    assert!(
        total >= stalled,
        "the counter keeps the stall: {stalled} then {total}"
    );
    job.cancel();
    let _ = job.wait().await;
}

/// A folder holding `input.jsonl` with one JSON object per line.
fn input(name: &str, rows: &[serde_json::Value]) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weir-mv-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let text: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    std::fs::write(d.join("input.jsonl"), text.join("\n") + "\n").unwrap();
    d
}

/// A reading of key `k` at minute `m`, second `s` of 2024-01-01.
fn at(k: &str, m: u32, s: u32) -> serde_json::Value {
    json!({"k": k, "v": 1, "ts": format!("2024-01-01 00:{m:02}:{s:02}.000")})
}

/// Run a script ending in a query, in batches of `batch` rows, to its end; its job and the
/// job's samples (the query has ended, so they come from the job, not from `/metrics`).
async fn run_to_end(sql: &str, batch: usize) -> (weir::JobHandle, Samples) {
    let engine = engine();
    engine.set_batch_size(batch);
    let stream = engine.query(sql).await.unwrap();
    let job = stream.job().clone();
    stream.collect().await.unwrap();
    let samples = weir::engine_metrics::samples(std::slice::from_ref(&job));
    (job, samples)
}

/// Run the query `select` over `rows` (table `t (k, v, ts)`, batches of one row) to its end;
/// the samples of its job.
async fn run_over(name: &str, rows: &[serde_json::Value], set: &str, select: &str) -> Samples {
    let dir = input(name, rows);
    let sql = format!(
        "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         {set} {select}",
        dir.join("input.jsonl").display()
    );
    run_to_end(&sql, 1).await.1
}

#[tokio::test]
async fn late_rows_and_late_updates_are_counted_by_the_operator_that_saw_them() {
    // Minute 0 fires when 00:01:30 arrives; 00:00:30 is then late (accepted within one minute
    // of lateness), and 00:00:40 after 00:02:30 is beyond it (dropped).
    let rows = [
        at("a", 0, 10),
        at("a", 1, 30),
        at("a", 0, 30),
        at("a", 2, 30),
        at("a", 0, 40),
    ];
    let select = "SELECT k, window_start, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE t,
        DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY k, window_start, window_end;";
    let lateness = "SET 'window.allowed-lateness' = '1 min';";
    let s = run_over("late", &rows, lateness, select).await;
    // Window assignment drops the row past the lateness; the aggregation takes the other.
    let late = by_operator(&s, &metric::LATE_ROWS, "WindowAssign");
    assert_eq!(late.len(), 1, "{s:?}");
    let taken = op_value(&s, &metric::LATE_ROWS, "WindowAggregate");
    assert_eq!(taken, Some(0.0), "{s:?}");
    assert_eq!(late[0].1, 1.0, "{s:?}");
    assert!(
        late[0].0.split(':').next().unwrap().parse::<u32>().is_ok(),
        "{late:?}"
    );
    let updates = op_value(&s, &metric::LATE_UPDATES, "WindowAggregate");
    assert_eq!(updates, Some(1.0));
    let windows = |x: &weir::engine_metrics::Sample| x.label("operator") == Some("windows");
    assert!(!s.0.iter().any(windows), "{s:?}");
    // Without lateness both late rows are dropped, and there are no late updates.
    let s = run_over("late0", &rows, "", select).await;
    assert_eq!(s.sum(&metric::LATE_ROWS), 2.0, "{s:?}");
    assert_eq!(s.sum(&metric::LATE_UPDATES), 0.0, "{s:?}");
}

#[tokio::test]
async fn a_session_aggregation_counts_its_late_rows() {
    // Session of `a` [00:00:10, 00:00:40) fires when 00:02:00 arrives; 00:00:20 is then late.
    let rows = [at("a", 0, 10), at("b", 2, 0), at("a", 0, 20), at("b", 3, 0)];
    let select = "SELECT k, COUNT(*) AS n FROM t GROUP BY k, SESSION(ts, INTERVAL '30' SECOND);";
    let s = run_over("session-late", &rows, "", select).await;
    let late = by_operator(&s, &metric::LATE_ROWS, "SessionWindowAggregate");
    assert_eq!(
        late.iter().map(|l| l.1).collect::<Vec<_>>(),
        vec![1.0],
        "{s:?}"
    );
    assert_eq!(s.sum(&metric::LATE_ROWS), 1.0, "{s:?}");
}

#[tokio::test]
async fn a_join_counts_rows_per_input_and_its_late_rows() {
    let left = input(
        "join-left",
        &[at("a", 0, 10), at("a", 0, 30), at("a", 0, 5)],
    );
    let right = input("join-right", &[at("a", 0, 11), at("b", 0, 40)]);
    let table = |name: &str, dir: &std::path::Path| {
        format!(
            "CREATE TABLE {name} (k STRING, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
            dir.join("input.jsonl").display()
        )
    };
    let sql = format!(
        "{} {} SELECT l.k, l.ts, r.ts FROM l JOIN r ON l.k = r.k
         AND r.ts BETWEEN l.ts AND l.ts + INTERVAL '5' SECOND;",
        table("l", &left),
        table("r", &right)
    );
    let (_, s) = run_to_end(&sql, 1).await;
    let mut per_input: Vec<(String, f64)> = s
        .of(&metric::INPUT_ROWS)
        .map(|x| (x.label("input").unwrap().to_string(), x.number()))
        .collect();
    per_input.sort_by(|a, b| a.0.cmp(&b.0));
    let want = vec![("left".to_string(), 3.0), ("right".to_string(), 2.0)];
    assert_eq!(per_input, want, "{s:?}");
    assert_eq!(op_value(&s, &metric::ROWS_IN, "IntervalJoin"), Some(5.0));
    // 00:00:05 after 00:00:30 on the left input is late there.
    assert_eq!(op_value(&s, &metric::LATE_ROWS, "IntervalJoin"), Some(1.0));
}

#[tokio::test]
async fn expired_keys_are_counted_by_the_group_aggregation() {
    // `a`, then a second and a half of `b` (1000 records/s), then `a` again: `a` expires.
    let mut rows = vec![at("a", 0, 0)];
    rows.extend((1..1500).map(|i| at("b", i / 60 % 60, i % 60)));
    rows.push(at("a", 59, 59));
    let dir = input("ttl", &rows);
    let sql = format!(
        "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3))
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json',
           'scan.records-per-second' = '1000');
         SET 'table.exec.state.ttl' = '200 ms';
         SELECT k, COUNT(*) AS n FROM t GROUP BY k;",
        dir.join("input.jsonl").display()
    );
    let (job, samples) = run_to_end(&sql, 100).await;
    let expired: Vec<f64> = samples
        .of(&metric::EXPIRED_KEYS)
        .map(|s| {
            let op = s.label("operator").unwrap_or_default();
            assert!(op.ends_with(":GroupAggregate"), "{s:?}");
            s.number()
        })
        .collect();
    let counted = weir::engine_metrics::get(&job.metrics().expired_keys);
    assert_eq!(expired, vec![counted as f64]);
    assert!(
        (1..=3).contains(&counted),
        "`a` expired once (b too if the run stalled): {counted}"
    );
}

/// Five keys for ever: state that stays while the job runs.
const FIVE_KEYS: &str = "CREATE TABLE gen (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
       WITH ('connector' = 'datagen', 'rows-per-second' = '500',
             'fields.k.min' = '1', 'fields.k.max' = '5');
     CREATE TABLE sink (k BIGINT, n BIGINT) WITH ('connector' = 'blackhole');";

/// Submit `insert` over [`FIVE_KEYS`] and wait until operator `op` holds five keys; then its
/// (open windows, state bytes).
async fn five_keys_state(insert: &str, op: &str) -> (f64, f64) {
    let engine = engine();
    engine.set_batch_size(50);
    let job = engine
        .submit(&format!("{FIVE_KEYS} {insert}"))
        .await
        .unwrap();
    let s = wait_for(Duration::from_secs(20), "five keys", async || {
        let s = engine.samples();
        (op_value(&s, &metric::STATE_KEYS, op) == Some(5.0)).then_some(s)
    })
    .await;
    job.cancel();
    let _ = job.wait().await;
    let windows = op_value(&s, &metric::OPEN_WINDOWS, op).expect("open windows");
    let bytes = op_value(&s, &metric::STATE_BYTES, op).expect("state bytes");
    (windows, bytes)
}

#[tokio::test]
async fn session_and_group_aggregations_report_their_state_bytes() {
    let session = "INSERT INTO sink SELECT k, COUNT(*) FROM gen
        GROUP BY k, SESSION(ts, INTERVAL '1' HOUR);";
    let (sessions, bytes) = five_keys_state(session, "SessionWindowAggregate").await;
    assert_eq!(sessions, 5.0, "one open session per key");
    // The buffered rows' batches at least (8 bytes of k and of ts per row).
    assert!((80.0..64e6).contains(&bytes), "{bytes}");
    let group = "INSERT INTO sink SELECT k, COUNT(*) FROM gen GROUP BY k;";
    let (windows, bytes) = five_keys_state(group, "GroupAggregate").await;
    assert_eq!(windows, 0.0);
    // Five keys in the row format, twice, and a count per key.
    assert!((5.0 * 2.0 * 9.0 + 40.0..1e6).contains(&bytes), "{bytes}");
}

#[tokio::test]
async fn explain_analyze_shows_the_last_ten_seconds_and_source_busy_time() {
    let rows: Vec<serde_json::Value> = (0..2000).map(|i| at("a", i / 60 % 60, i % 60)).collect();
    let dir = input("analyze", &rows);
    let engine = engine();
    let sql = format!(
        "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3))
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
        dir.join("input.jsonl").display()
    );
    engine.execute(&sql).await.unwrap();
    let out = engine
        .execute("EXPLAIN ANALYZE SELECT k, v FROM t WHERE v > 0")
        .await
        .unwrap();
    let Some(weir::Output::Text(text)) = out.into_iter().last() else {
        panic!("EXPLAIN ANALYZE prints text");
    };
    let source = text.lines().find(|l| l.contains("Source:")).expect(&text);
    assert!(source.contains("out=2000"), "{source}");
    let busy_ms: f64 = source
        .split("busy=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .expect(source);
    assert!(
        busy_ms > 0.0,
        "reading and decoding 2000 records is work: {source}"
    );
    assert!(source.contains("last 10 s: busy "), "{source}");
    assert!(
        engine.metrics_text().find("job=\"").is_none(),
        "the ended query left /metrics"
    );
}
