//! A small task per job that wakes once a second while the job runs: it takes each task's
//! reading for the 10 s meters (rows per second, busy and backpressured shares; see
//! [`crate::observe::op_metrics`]), and checks the threshold warnings
//! `SET 'monitoring.lag-warn' = '10000'` (Kafka consumer lag, records over all partitions of the
//! job) and `SET 'monitoring.latency-warn' = '5 s'` (watermark lag at the sinks). It warns once
//! when a number crosses its threshold, and again only after it fell back below. Warnings go to
//! stderr (unless quiet) and are kept on the job (`JobHandle::warnings`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{EngineError, Result};
use crate::runtime::job::JobShared;

/// `SET` key of the consumer-lag threshold (records).
pub const LAG_WARN: &str = "monitoring.lag-warn";
/// `SET` key of the watermark-lag threshold (a duration).
pub const LATENCY_WARN: &str = "monitoring.latency-warn";

/// Thresholds of one job.
#[derive(Debug, Clone, Copy, Default)]
pub struct Thresholds {
    /// Records of Kafka consumer lag.
    pub lag: Option<i64>,
    /// Watermark lag at the sinks, ns.
    pub latency_ns: Option<i64>,
}

impl Thresholds {
    /// The thresholds the job's settings ask for.
    pub fn parse(settings: &std::collections::BTreeMap<String, String>) -> Result<Self> {
        let bad = |k: &str, v: &str| EngineError::Execution(format!("'{k}' = '{v}' is not valid"));
        let lag = match settings.get(LAG_WARN) {
            Some(v) => Some(v.trim().parse::<i64>().map_err(|_| bad(LAG_WARN, v))?),
            None => None,
        };
        let latency_ns = match settings.get(LATENCY_WARN) {
            Some(v) => {
                Some(weir_planner::interval::parse_duration(v).map_err(|_| bad(LATENCY_WARN, v))?)
            }
            None => None,
        };
        Ok(Self { lag, latency_ns })
    }
}

/// Watch `job` until it ends.
pub fn spawn(job: &Arc<JobShared>, t: Thresholds, quiet: bool) {
    let job = job.clone();
    tokio::spawn(async move {
        let (mut lag_high, mut latency_high) = (false, false);
        while !job.is_done() {
            job.operators().iter().for_each(|m| m.tick());
            if let Some(limit) = t.lag {
                let lag: i64 = job.metrics.kafka_lag.lock().expect("lock").values().sum();
                let msg =
                    format!("Kafka consumer lag {lag} records is above '{LAG_WARN}' = {limit}");
                check(&job, lag > limit, &mut lag_high, msg, quiet);
            }
            if let Some(limit) = t.latency_ns {
                let wm = job.metrics.watermark.load(Ordering::Relaxed);
                let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
                let late = wm != i64::MIN && wm != i64::MAX && now - wm > limit;
                let secs = (now.saturating_sub(wm)) as f64 / 1e9;
                let msg = format!("watermark lag {secs:.1} s is above '{LATENCY_WARN}'");
                check(&job, late, &mut latency_high, msg, quiet);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

fn check(job: &JobShared, above: bool, was_above: &mut bool, msg: String, quiet: bool) {
    if above && !*was_above {
        let line = format!("job {}: {msg}", job.id);
        if !quiet {
            tracing::warn!(job = job.id, "{line}");
        }
        job.warnings.lock().expect("lock").push(line);
    }
    *was_above = above;
}
