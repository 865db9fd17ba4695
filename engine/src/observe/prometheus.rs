//! The engine's numbers in the Prometheus text exposition format, and a health verdict.
//!
//! Nothing here is counted on the hot path: a scrape reads the per-job, per-task counters the
//! tasks already keep (once per batch) and encodes them with `prometheus-client`. Metric names
//! follow `docs/metrics.md`.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};

use crate::observe::latency::{Basis, LatencyHistogram, BUCKETS};

use crate::observe::metrics::JobMetrics;
use crate::observe::op_metrics::{OperatorMetrics, Recent};
use crate::runtime::job::JobStatus;
use crate::session::stream::JobHandle;

type Labels = Vec<(String, String)>;
type Counters = Family<Labels, Counter>;
type Seconds = Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>>;
type Gauges = Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>;
type Histograms = Family<Labels, Hist>;

/// A latency histogram copied out of the job's metrics for one scrape.
#[derive(Debug, Default)]
struct Hist(std::sync::Mutex<LatencyHistogram>);

impl TypedMetric for Hist {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Hist {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = self.0.lock().expect("lock");
        let mut buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(h.counts).collect();
        buckets.push((f64::MAX, h.counts[BUCKETS.len()]));
        encoder.encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The metric families of one scrape.
#[derive(Default)]
struct Families {
    source_records: Counters,
    source_bytes: Counters,
    dead_letters: Counters,
    late_rows: Counters,
    late_updates: Counters,
    expired_keys: Counters,
    busy_seconds: Seconds,
    backpressured_seconds: Seconds,
    rows_in: Counters,
    rows_out: Counters,
    busy: Gauges,
    backpressured: Gauges,
    watermark_lag: Gauges,
    checkpoint_duration: Gauges,
    checkpoint_age: Gauges,
    checkpoint_bytes: Gauges,
    commit_seconds: Gauges,
    uptime: Gauges,
    open_windows: Gauges,
    state_keys: Gauges,
    state_bytes: Gauges,
    kafka_lag: Gauges,
    running: Gauges,
    source_watermark: Gauges,
    source_rate: Gauges,
    partition_idle: Gauges,
    end_to_end: Histograms,
    ingestion_latency: Histograms,
    timestamp_corrections: Counters,
    checkpoint_failures: Counters,
    queue_fill: Gauges,
    sink_rows: Counters,
    sink_errors: Counters,
    decode_error_ratio: Gauges,
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every job's metrics as Prometheus text.
pub fn render(jobs: &[JobHandle]) -> String {
    let f = Families::default();
    for j in jobs {
        record_job(&f, j);
    }
    let mut r = Registry::default();
    register(&mut r, f);
    register_process(&mut r);
    let mut out = String::new();
    let _ = encode(&mut out, &r);
    out
}

/// RSS, CPU time, uptime and build info of this process (Linux `/proc`; absent elsewhere).
fn register_process(r: &mut Registry) {
    let gauge = |v: f64| {
        let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
        g.set(v);
        g
    };
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    if let Some(pages) = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<f64>().ok())
    {
        r.register(
            "weir_process_resident_memory_bytes",
            "Resident memory",
            gauge(pages * 4096.0),
        );
    }
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    if let (Some(user), Some(sys)) = (ticks(11), ticks(12)) {
        let cpu: Counter<f64, std::sync::atomic::AtomicU64> = Counter::default();
        cpu.inc_by((user + sys) / 100.0);
        r.register("weir_process_cpu_seconds", "CPU time, user and system", cpu);
    }
    let uptime = crate::operators::key_index::process_clock() as f64 / 1e3;
    r.register(
        "weir_process_uptime_seconds",
        "Seconds since the engine started",
        gauge(uptime),
    );
    let info: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
    info.get_or_create(&l(&[("version", env!("CARGO_PKG_VERSION"))]))
        .set(1.0);
    r.register("weir_build_info", "The running version", info);
}

/// Register every family under its name and help text.
fn register(r: &mut Registry, f: Families) {
    let counters: [(&str, &str, &Counters); 9] = [
        (
            "weir_source_records",
            "Records read by a source",
            &f.source_records,
        ),
        (
            "weir_dead_letters",
            "Records rejected by a source, by reason",
            &f.dead_letters,
        ),
        (
            "weir_operator_rows_in",
            "Rows an operator received",
            &f.rows_in,
        ),
        (
            "weir_operator_rows_out",
            "Rows an operator sent downstream",
            &f.rows_out,
        ),
        (
            "weir_source_bytes",
            "Bytes the job's sources read",
            &f.source_bytes,
        ),
        (
            "weir_timestamp_unit_corrections",
            "Epoch event times read in another unit than the column's ('timestamp.unit' = 'auto')",
            &f.timestamp_corrections,
        ),
        (
            "weir_checkpoint_failures",
            "Checkpoints that failed or timed out",
            &f.checkpoint_failures,
        ),
        (
            "weir_sink_rows",
            "Rows the job's sinks received",
            &f.sink_rows,
        ),
        (
            "weir_sink_errors",
            "Errors returned by the job's sinks",
            &f.sink_errors,
        ),
    ];
    register_all(r, &counters);
    register_operator_events(r, &f);
    let gauges: [(&str, &str, &Gauges); 18] = [
        (
            "weir_operator_busy_ratio",
            "Share of the last 10 s an operator was processing",
            &f.busy,
        ),
        (
            "weir_backpressured_ratio",
            "Share of the last 10 s an operator waited on a full output channel",
            &f.backpressured,
        ),
        (
            "weir_watermark_lag_seconds",
            "Wall clock minus the watermark at the sinks",
            &f.watermark_lag,
        ),
        (
            "weir_checkpoint_duration_seconds",
            "Duration of the last completed checkpoint",
            &f.checkpoint_duration,
        ),
        (
            "weir_last_checkpoint_age_seconds",
            "Seconds since the last completed checkpoint",
            &f.checkpoint_age,
        ),
        (
            "weir_kafka_consumer_lag_records",
            "Log end offset minus the source's position, per partition",
            &f.kafka_lag,
        ),
        (
            "weir_open_windows",
            "Windows an operator holds open",
            &f.open_windows,
        ),
        (
            "weir_state_keys",
            "Keys (or window groups) an operator holds",
            &f.state_keys,
        ),
        (
            "weir_state_bytes",
            "Approximate bytes of operator state in memory",
            &f.state_bytes,
        ),
        (
            "weir_checkpoint_size_bytes",
            "Size of the last completed checkpoint",
            &f.checkpoint_bytes,
        ),
        (
            "weir_sink_commit_seconds",
            "Duration of the sinks' last commit",
            &f.commit_seconds,
        ),
        (
            "weir_job_uptime_seconds",
            "Seconds since the job started",
            &f.uptime,
        ),
        (
            "weir_job_running",
            "1 while the job runs, 0 once it finished, failed or was stopped",
            &f.running,
        ),
        (
            "weir_source_watermark_seconds",
            "A source partition's watermark (event time, seconds since the epoch)",
            &f.source_watermark,
        ),
        (
            "weir_source_records_per_second",
            "Records a source read per second over the last 10 s",
            &f.source_rate,
        ),
        (
            "weir_source_partition_idle",
            "1 while a source partition is idle and does not hold the watermark back",
            &f.partition_idle,
        ),
        (
            "weir_channel_fill_ratio",
            "Messages waiting in an operator's output channel, as a share of its capacity",
            &f.queue_fill,
        ),
        (
            "weir_decode_error_ratio",
            "Dead letters as a share of all records a source read, since the job started",
            &f.decode_error_ratio,
        ),
    ];
    register_all(r, &gauges);
    let histograms: [(&str, &str, &Histograms); 2] = [
        (
            "weir_end_to_end_latency_seconds",
            "Wall clock when a row became visible at the sink minus its event time",
            &f.end_to_end,
        ),
        (
            "weir_ingestion_latency_seconds",
            "Wall clock when a row became visible at the sink minus when the source read it",
            &f.ingestion_latency,
        ),
    ];
    register_all(r, &histograms);
}

/// Register each `(name, help, family)`.
fn register_all<M: Metric + Clone>(r: &mut Registry, families: &[(&str, &str, &M)]) {
    for (name, help, m) in families {
        r.register(*name, *help, (*m).clone());
    }
}

/// Per-operator counters: late rows, late updates, expired keys, busy and backpressured time.
fn register_operator_events(r: &mut Registry, f: &Families) {
    let counters: [(&str, &str, &Counters); 3] = [
        (
            "weir_late_rows",
            "Rows an operator dropped because their windows had fired",
            &f.late_rows,
        ),
        (
            "weir_late_updates",
            "Late rows an operator accepted within 'window.allowed-lateness'",
            &f.late_updates,
        ),
        (
            "weir_expired_keys",
            "Keys an operator dropped from its state by 'table.exec.state.ttl'",
            &f.expired_keys,
        ),
    ];
    register_all(r, &counters);
    let seconds: [(&str, &str, &Seconds); 2] = [
        (
            "weir_operator_busy_seconds",
            "Seconds an operator spent processing (a source: reading and decoding)",
            &f.busy_seconds,
        ),
        (
            "weir_operator_backpressured_seconds",
            "Seconds an operator waited on a full output channel",
            &f.backpressured_seconds,
        ),
    ];
    register_all(r, &seconds);
}

/// The `job` label: `<id>:<name>`.
pub fn job_label(j: &JobHandle) -> String {
    format!("{}:{}", j.id(), j.name())
}

fn record_job(f: &Families, j: &JobHandle) {
    let job = job_label(j);
    let uptime = j.uptime().as_secs_f64();
    f.uptime.get_or_create(&l(&[("job", &job)])).set(uptime);
    let running = f64::from(u8::from(j.status() == JobStatus::Running));
    f.running.get_or_create(&l(&[("job", &job)])).set(running);
    let bytes = JobMetrics::get(&j.metrics().bytes_in);
    f.source_bytes
        .get_or_create(&l(&[("job", &job)]))
        .inc_by(bytes);
    for m in j.operator_metrics() {
        let op = format!("{}:{}", m.node, m.name);
        let labels = l(&[("job", &job), ("operator", &op)]);
        let recent = m.recent();
        if let Some(table) = m.name.strip_prefix("source ") {
            record_partitions(f, &job, table, &m);
            // Added up: a table read twice (a self-join) has two source tasks.
            f.source_rate
                .get_or_create(&l(&[("job", &job), ("source", table)]))
                .inc_by(recent.rows_per_second);
        }
        record_operator_time(f, &labels, &m, recent);
        let queued = m.queued.load(Ordering::Relaxed) as f64;
        let capacity = crate::runtime::job::CHANNEL_CAPACITY as f64;
        f.queue_fill.get_or_create(&labels).set(queued / capacity);
        f.rows_in
            .get_or_create(&labels)
            .inc_by(m.rows_in.load(Ordering::Relaxed));
        f.rows_out
            .get_or_create(&labels)
            .inc_by(m.rows_out.load(Ordering::Relaxed));
        let wm = m.watermark.load(Ordering::Relaxed);
        if wm != i64::MIN && wm != i64::MAX {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
            f.watermark_lag
                .get_or_create(&labels)
                .set((now - wm) as f64 / 1e9);
        }
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        if !m.name.starts_with("source ") {
            f.open_windows
                .get_or_create(&labels)
                .set(load(&m.open_windows));
            f.state_keys.get_or_create(&labels).set(load(&m.state_keys));
            f.state_bytes
                .get_or_create(&labels)
                .set(load(&m.state_bytes));
        }
    }
    record_dead_letters(f, j, &job);
    record_quality(f, j, &job);
    for ((topic, partition), lag) in j.metrics().kafka_lag.lock().expect("lock").iter() {
        let labels = l(&[
            ("job", &job),
            ("topic", topic),
            ("partition", &partition.to_string()),
        ]);
        f.kafka_lag.get_or_create(&labels).set(*lag as f64);
    }
    let wm = j.metrics().watermark.load(Ordering::Relaxed);
    if wm != i64::MIN && wm != i64::MAX {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let lag = (now - wm) as f64 / 1e9;
        f.watermark_lag
            .get_or_create(&l(&[("job", &job), ("operator", "sink")]))
            .set(lag);
    }
    if let Some(last) = j.checkpoints().last() {
        let labels = l(&[("job", &job)]);
        f.checkpoint_duration
            .get_or_create(&labels)
            .set(last.duration.as_secs_f64());
        let age = SystemTime::now()
            .duration_since(last.completed)
            .unwrap_or_default();
        f.checkpoint_age
            .get_or_create(&labels)
            .set(age.as_secs_f64());
        f.checkpoint_bytes
            .get_or_create(&labels)
            .set(last.bytes as f64);
        let commit = j.metrics().last_commit_ns.load(Ordering::Relaxed) as f64 / 1e9;
        f.commit_seconds.get_or_create(&labels).set(commit);
    }
}

/// Busy and backpressured time of a task (totals and last-10 s shares), and its operator's
/// late rows, late updates and expired keys (those it counts).
fn record_operator_time(f: &Families, labels: &Labels, m: &OperatorMetrics, recent: Recent) {
    let busy = m.busy_ns.load(Ordering::Relaxed) as f64 / 1e9;
    f.busy_seconds.get_or_create(labels).inc_by(busy);
    let blocked = m.blocked_total_ns() as f64 / 1e9;
    f.backpressured_seconds
        .get_or_create(labels)
        .inc_by(blocked);
    f.busy.get_or_create(labels).set(recent.busy);
    f.backpressured
        .get_or_create(labels)
        .set(recent.backpressured);
    let events = [
        (&f.late_rows, &m.late_rows),
        (&f.late_updates, &m.late_updates),
        (&f.expired_keys, &m.expired_keys),
    ];
    for (family, counter) in events {
        if let Some(n) = OperatorMetrics::event(counter) {
            family.get_or_create(labels).inc_by(n);
        }
    }
}

/// Records, watermark and idleness of each partition of a source.
fn record_partitions(f: &Families, job: &str, source: &str, m: &OperatorMetrics) {
    for p in m.partitions.lock().expect("lock").values() {
        let labels = l(&[("job", job), ("source", source), ("partition", &p.label)]);
        f.source_records.get_or_create(&labels).inc_by(p.records);
        if p.watermark != i64::MIN && p.watermark != i64::MAX {
            f.source_watermark
                .get_or_create(&labels)
                .set(p.watermark as f64 / 1e9);
        }
        if !p.ended {
            let idle = f64::from(u8::from(p.idle));
            f.partition_idle.get_or_create(&labels).set(idle);
        }
    }
}

/// Latency histograms, sink rows and errors, timestamp corrections, checkpoint failures and
/// the decode error ratio.
fn record_quality(f: &Families, j: &JobHandle, job: &str) {
    let m = j.metrics();
    for ((sink, basis), h) in m.latency.lock().expect("lock").iter() {
        let family = match basis {
            Basis::EventTime => &f.end_to_end,
            Basis::Ingestion => &f.ingestion_latency,
        };
        let labels = l(&[("job", job), ("sink", &**sink)]);
        *family.get_or_create(&labels).0.lock().expect("lock") = h.clone();
    }
    let job_only = l(&[("job", job)]);
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    f.sink_rows
        .get_or_create(&job_only)
        .inc_by(get(&m.rows_out));
    f.sink_errors
        .get_or_create(&job_only)
        .inc_by(get(&m.sink_errors));
    f.timestamp_corrections
        .get_or_create(&job_only)
        .inc_by(get(&m.timestamp_corrections));
    if j.has_checkpointing() {
        f.checkpoint_failures
            .get_or_create(&job_only)
            .inc_by(j.checkpoint_failures());
    }
    let records: std::collections::BTreeMap<String, u64> = j
        .operator_metrics()
        .iter()
        .filter_map(|m| {
            let table = m.name.strip_prefix("source ")?;
            Some((table.to_string(), m.rows_out.load(Ordering::Relaxed)))
        })
        .collect();
    for (source, dl) in j.dead_letter_sources() {
        let bad = dl.count() as f64;
        let all = bad + records.get(&source).copied().unwrap_or(0) as f64;
        let ratio = if all > 0.0 { bad / all } else { 0.0 };
        f.decode_error_ratio
            .get_or_create(&l(&[("job", job), ("source", &source)]))
            .set(ratio);
    }
}

/// Dead letters per source and reason. Reasons are grouped by their text before the first ':'
/// (the kept records); records beyond those kept count as `other`.
fn record_dead_letters(f: &Families, j: &JobHandle, job: &str) {
    for (source, dl) in j.dead_letter_sources() {
        let records = dl.records();
        for r in &records {
            let reason = reason_class(&r.reason);
            f.dead_letters
                .get_or_create(&l(&[
                    ("job", job),
                    ("source", &source),
                    ("reason", &reason),
                ]))
                .inc();
        }
        let rest = dl.count().saturating_sub(records.len() as u64);
        if rest > 0 || records.is_empty() {
            f.dead_letters
                .get_or_create(&l(&[
                    ("job", job),
                    ("source", &source),
                    ("reason", "other"),
                ]))
                .inc_by(rest);
        }
    }
}

/// A short, low-cardinality class of a dead letter's reason.
pub fn reason_class(reason: &str) -> String {
    let head = reason.split(':').next().unwrap_or(reason);
    let class: String = head
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    class.trim_matches('_').to_string()
}
