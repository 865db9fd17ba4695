//! Per-job counters, updated once per batch (never per row). Bad records are counted by each
//! source's [`crate::observe::dead_letter::DeadLetters`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters of one running job, shared by its operators and readable from the API.
#[derive(Debug)]
pub struct JobMetrics {
    /// Rows read by the sources.
    pub rows_in: AtomicU64,
    /// Bytes the sources read (record values / file bytes), counted per batch.
    pub bytes_in: AtomicU64,
    /// Rows written by the sinks or delivered to a [`crate::QueryStream`].
    pub rows_out: AtomicU64,
    /// Rows dropped because they arrived after their windows fired.
    pub late_rows: AtomicU64,
    /// Windows (and batches of rows session windows hold) moved from memory to RocksDB because
    /// of `state.memory-limit`.
    pub spilled_windows: AtomicU64,
    /// Late rows accepted within `window.allowed-lateness` (they update emitted windows).
    pub late_updates: AtomicU64,
    /// Keys dropped from updating state by `table.exec.state.ttl`.
    pub expired_keys: AtomicU64,
    /// Current watermark of the job's sinks (ns), `i64::MIN` when none yet.
    pub watermark: AtomicI64,
    /// How long the sinks' last commit (publishing a checkpoint's output) took, ns.
    pub last_commit_ns: AtomicU64,
    /// Kafka consumer lag in records per (topic, partition), refreshed every few seconds.
    pub kafka_lag: std::sync::Mutex<std::collections::BTreeMap<(String, i32), i64>>,
    /// Errors a sink returned (the job fails on them; counted before it does).
    pub sink_errors: AtomicU64,
    /// Epoch-number event times read in a unit other than the column's (`'timestamp.unit' =
    /// 'auto'` corrected them), counted per batch.
    pub timestamp_corrections: AtomicU64,
    /// End-to-end latency histograms per (sink, basis); see [`crate::observe::latency`].
    pub latency: std::sync::Mutex<
        std::collections::BTreeMap<
            (std::sync::Arc<str>, crate::observe::latency::Basis),
            crate::observe::latency::LatencyHistogram,
        >,
    >,
}

impl Default for JobMetrics {
    fn default() -> Self {
        Self {
            rows_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            late_rows: AtomicU64::new(0),
            spilled_windows: AtomicU64::new(0),
            late_updates: AtomicU64::new(0),
            expired_keys: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            kafka_lag: Default::default(),
            last_commit_ns: AtomicU64::new(0),
            timestamp_corrections: AtomicU64::new(0),
            sink_errors: AtomicU64::new(0),
            latency: Default::default(),
        }
    }
}

impl JobMetrics {
    /// Add `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: usize) {
        if n > 0 {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// The current value of `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A watermark for people: `2024-01-01 00:05:00.000` (UTC), or `-` when there is none yet.
pub fn format_watermark(ns: i64) -> String {
    if ns == i64::MIN {
        return "-".into();
    }
    if ns == i64::MAX {
        return "end".into();
    }
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}
