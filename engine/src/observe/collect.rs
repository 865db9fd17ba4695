//! Reading the jobs into [`Samples`]: nothing here is counted on the hot path. A reading copies
//! the per-job and per-task counters the tasks already keep (once per batch) into typed
//! samples of the metrics in [`crate::observe::catalog`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::observe::catalog as m;
use crate::observe::latency::Basis;
use crate::observe::metrics::JobMetrics;
use crate::observe::op_metrics::OperatorMetrics;
use crate::observe::samples::{Collector, Samples};
use crate::runtime::job::JobStatus;
use crate::session::stream::JobHandle;

/// The samples of every job in `jobs` and of the process, right now.
pub fn samples(jobs: &[JobHandle]) -> Samples {
    let mut c = Collector::default();
    for j in jobs {
        record_job(&mut c, j);
    }
    record_process(&mut c);
    c.finish()
}

/// The `job` label: `<id>:<name>`.
pub fn job_label(j: &JobHandle) -> String {
    format!("{}:{}", j.id(), j.name())
}

fn load(a: &AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

/// Seconds from the event time `wm` (nanoseconds) to now, when it is a real time.
fn seconds_behind(wm: i64) -> Option<f64> {
    if wm == i64::MIN || wm == i64::MAX {
        return None;
    }
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    Some((now - wm) as f64 / 1e9)
}

fn record_job(c: &mut Collector, j: &JobHandle) {
    let job = job_label(j);
    c.set(&m::JOB_UPTIME, &[&job], j.uptime().as_secs_f64());
    let running = f64::from(u8::from(j.status() == JobStatus::Running));
    c.set(&m::JOB_RUNNING, &[&job], running);
    c.add(&m::SOURCE_BYTES, &[&job], load(&j.metrics().bytes_in));
    for op in j.operator_metrics() {
        record_operator(c, &job, &op);
    }
    record_dead_letters(c, j, &job);
    record_quality(c, j, &job);
    for ((topic, partition), lag) in j.metrics().kafka_lag.lock().expect("lock").iter() {
        let labels = [job.as_str(), topic, &partition.to_string()];
        c.set(&m::KAFKA_LAG, &labels, *lag as f64);
    }
    if let Some(lag) = seconds_behind(j.metrics().watermark.load(Ordering::Relaxed)) {
        c.set(&m::WATERMARK_LAG, &[&job, "sink"], lag);
    }
    record_checkpoint(c, j, &job);
}

/// One task's rows, time, channel fill, events and state (a source's: its partitions).
fn record_operator(c: &mut Collector, job: &str, op: &OperatorMetrics) {
    let name = format!("{}:{}", op.node, op.name);
    let labels = [job, name.as_str()];
    let recent = op.recent();
    if let Some(table) = op.name.strip_prefix("source ") {
        record_partitions(c, job, table, op);
        // Added up: a table read twice (a self-join) has two source tasks.
        c.add(&m::SOURCE_RATE, &[job, table], recent.rows_per_second);
    }
    c.add(&m::BUSY_SECONDS, &labels, load(&op.busy_ns) / 1e9);
    c.add(
        &m::BACKPRESSURED_SECONDS,
        &labels,
        op.blocked_total_ns() as f64 / 1e9,
    );
    // Several subtasks: the busiest one's share (what limits the operator); each subtask's
    // own rows and share have series of their own, so skew shows.
    c.max(&m::BUSY_RATIO, &labels, recent.busy);
    c.max(&m::BACKPRESSURED_RATIO, &labels, recent.backpressured);
    let subtask = op.subtask.to_string();
    let sub_labels = [job, name.as_str(), subtask.as_str()];
    c.add(&m::SUBTASK_ROWS_IN, &sub_labels, load(&op.rows_in));
    c.set(&m::SUBTASK_BUSY_RATIO, &sub_labels, recent.busy);
    let capacity = crate::runtime::job::CHANNEL_CAPACITY as f64;
    c.set(&m::CHANNEL_FILL, &labels, load(&op.queued) / capacity);
    c.add(&m::ROWS_IN, &labels, load(&op.rows_in));
    for (input, counter) in ["left", "right"].into_iter().zip(&op.rows_in_by_input) {
        if let Some(n) = OperatorMetrics::event(counter) {
            c.add(&m::INPUT_ROWS, &[job, name.as_str(), input], n as f64);
        }
    }
    c.add(&m::ROWS_OUT, &labels, load(&op.rows_out));
    if let Some(lag) = seconds_behind(op.watermark.load(Ordering::Relaxed)) {
        c.set(&m::WATERMARK_LAG, &labels, lag);
    }
    let events = [
        (&m::LATE_ROWS, &op.late_rows),
        (&m::LATE_UPDATES, &op.late_updates),
        (&m::EXPIRED_KEYS, &op.expired_keys),
        (&m::LOOKUP_HITS, &op.lookup_hits),
        (&m::LOOKUP_MISSES, &op.lookup_misses),
        (&m::LOOKUP_QUERIES, &op.lookup_queries),
    ];
    for (metric, counter) in events {
        if let Some(n) = OperatorMetrics::event(counter) {
            c.add(metric, &labels, n as f64);
        }
    }
    if let Some(ns) = OperatorMetrics::event(&op.lookup_ns) {
        c.add(&m::LOOKUP_SECONDS, &labels, ns as f64 / 1e9);
    }
    if !op.name.starts_with("source ") {
        // Summed over the operator's subtasks.
        c.add(&m::OPEN_WINDOWS, &labels, load(&op.open_windows));
        c.add(&m::STATE_KEYS, &labels, load(&op.state_keys));
        c.add(&m::STATE_BYTES, &labels, load(&op.state_bytes));
    }
}

/// Records, watermark and idleness of each partition of a source.
fn record_partitions(c: &mut Collector, job: &str, source: &str, op: &OperatorMetrics) {
    for p in op.partitions.lock().expect("lock").values() {
        let labels = [job, source, p.label.as_str()];
        c.add(&m::SOURCE_RECORDS, &labels, p.records as f64);
        if p.watermark != i64::MIN && p.watermark != i64::MAX {
            c.set(&m::SOURCE_WATERMARK, &labels, p.watermark as f64 / 1e9);
        }
        if !p.ended {
            c.set(&m::PARTITION_IDLE, &labels, f64::from(u8::from(p.idle)));
        }
    }
}

/// The last completed checkpoint's duration, age and size, and the sinks' last commit.
fn record_checkpoint(c: &mut Collector, j: &JobHandle, job: &str) {
    let Some(last) = j.checkpoints().last().cloned() else {
        return;
    };
    let age = SystemTime::now()
        .duration_since(last.completed)
        .unwrap_or_default();
    c.set(&m::CHECKPOINT_DURATION, &[job], last.duration.as_secs_f64());
    c.set(&m::CHECKPOINT_AGE, &[job], age.as_secs_f64());
    c.set(&m::CHECKPOINT_BYTES, &[job], last.bytes as f64);
    let commit = load(&j.metrics().last_commit_ns) / 1e9;
    c.set(&m::COMMIT_SECONDS, &[job], commit);
}

/// Latency histograms, sink rows and errors, timestamp corrections, checkpoint failures and
/// the decode error ratio.
fn record_quality(c: &mut Collector, j: &JobHandle, job: &str) {
    let metrics = j.metrics();
    for ((sink, basis), h) in metrics.latency.lock().expect("lock").iter() {
        let metric = match basis {
            Basis::EventTime => &m::END_TO_END_LATENCY,
            Basis::Ingestion => &m::INGESTION_LATENCY,
        };
        c.histogram(metric, &[job, sink], h.clone());
    }
    c.add(&m::SINK_ROWS, &[job], load(&metrics.rows_out));
    c.add(&m::SINK_ERRORS, &[job], load(&metrics.sink_errors));
    let corrections = load(&metrics.timestamp_corrections);
    c.add(&m::TIMESTAMP_CORRECTIONS, &[job], corrections);
    if j.has_checkpointing() {
        c.add(
            &m::CHECKPOINT_FAILURES,
            &[job],
            j.checkpoint_failures() as f64,
        );
    }
    let read = |table: &str| {
        j.operator_metrics()
            .iter()
            .filter(|op| op.name.strip_prefix("source ") == Some(table))
            .map(|op| JobMetrics::get(&op.rows_out))
            .sum::<u64>()
    };
    for (source, dl) in j.dead_letter_sources() {
        let bad = dl.count() as f64;
        let all = bad + read(&source) as f64;
        let ratio = if all > 0.0 { bad / all } else { 0.0 };
        c.set(&m::DECODE_ERROR_RATIO, &[job, &source], ratio);
    }
}

/// Dead letters per source and reason. Reasons are grouped by their text before the first ':'
/// (the kept records); records beyond those kept count as `other`.
fn record_dead_letters(c: &mut Collector, j: &JobHandle, job: &str) {
    for (source, dl) in j.dead_letter_sources() {
        let records = dl.records();
        for r in &records {
            let reason = reason_class(&r.reason);
            c.add(&m::DEAD_LETTERS, &[job, &source, &reason], 1.0);
        }
        let rest = dl.count().saturating_sub(records.len() as u64);
        if rest > 0 || records.is_empty() {
            c.add(&m::DEAD_LETTERS, &[job, &source, "other"], rest as f64);
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

/// RSS, CPU time, uptime and build info of this process (Linux `/proc`; absent elsewhere).
fn record_process(c: &mut Collector) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages = statm.split_whitespace().nth(1);
    if let Some(pages) = pages.and_then(|p| p.parse::<f64>().ok()) {
        c.set(&m::RESIDENT_MEMORY, &[], pages * 4096.0);
    }
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    if let (Some(user), Some(sys)) = (ticks(11), ticks(12)) {
        c.add(&m::CPU_SECONDS, &[], (user + sys) / 100.0);
    }
    let uptime = crate::operators::key_index::process_clock() as f64 / 1e3;
    c.set(&m::PROCESS_UPTIME, &[], uptime);
    c.set(&m::BUILD_INFO, &[env!("CARGO_PKG_VERSION")], 1.0);
}
