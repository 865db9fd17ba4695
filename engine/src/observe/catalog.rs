//! Every metric Weir exports, as data: name, kind, help text and label names, in the order
//! `/metrics` lists them. The collector ([`crate::observe::samples`]) records values against
//! these definitions and the exporter ([`crate::observe::prometheus`]) writes them out; nothing
//! else spells a metric's name. `docs/metrics.md` describes each one.

/// How a metric's value behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows while the job runs (exposed with a `_total` suffix).
    Counter,
    /// A current reading.
    Gauge,
    /// A latency distribution (`_bucket`, `_sum` and `_count` series).
    Histogram,
}

/// One metric's definition.
#[derive(Debug, PartialEq, Eq)]
pub struct Metric {
    /// The family name, without the `_total` a counter's samples carry.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// What it measures (one line).
    pub help: &'static str,
    /// Its label names; a sample's label values come in this order.
    pub labels: &'static [&'static str],
}

impl Metric {
    /// The name its (non-histogram) samples are exposed under: `_total` added to counters.
    pub fn sample_name(&self) -> String {
        match self.kind {
            Kind::Counter => format!("{}_total", self.name),
            _ => self.name.to_string(),
        }
    }
}

const JOB: &[&str] = &["job"];
const OPERATOR: &[&str] = &["job", "operator"];
const SOURCE: &[&str] = &["job", "source"];
const PARTITION: &[&str] = &["job", "source", "partition"];

macro_rules! metrics {
    ($($id:ident: $name:literal, $kind:ident, $labels:expr, $help:literal;)*) => {
        $(
            #[doc = $help]
            pub static $id: Metric = Metric {
                name: $name,
                kind: Kind::$kind,
                help: $help,
                labels: $labels,
            };
        )*
        /// Every metric, in the order `/metrics` lists them.
        pub static ALL: &[&Metric] = &[$(&$id),*];
    };
}

metrics! {
    SOURCE_RECORDS: "weir_source_records", Counter, PARTITION,
        "Records read by a source";
    DEAD_LETTERS: "weir_dead_letters", Counter, &["job", "source", "reason"],
        "Records rejected by a source, by reason";
    ROWS_IN: "weir_operator_rows_in", Counter, OPERATOR,
        "Rows an operator received";
    INPUT_ROWS: "weir_operator_input_rows", Counter, &["job", "operator", "input"],
        "Rows a two-input operator (a join) received, per input: left or right";
    ROWS_OUT: "weir_operator_rows_out", Counter, OPERATOR,
        "Rows an operator sent downstream";
    SOURCE_BYTES: "weir_source_bytes", Counter, JOB,
        "Bytes the job's sources read";
    TIMESTAMP_CORRECTIONS: "weir_timestamp_unit_corrections", Counter, JOB,
        "Epoch event times read in another unit than the column's ('timestamp.unit' = 'auto')";
    CHECKPOINT_FAILURES: "weir_checkpoint_failures", Counter, JOB,
        "Checkpoints that failed or timed out";
    SINK_ROWS: "weir_sink_rows", Counter, JOB,
        "Rows the job's sinks received";
    SINK_ERRORS: "weir_sink_errors", Counter, JOB,
        "Errors returned by the job's sinks";
    LATE_ROWS: "weir_late_rows", Counter, OPERATOR,
        "Rows an operator dropped because their windows had fired";
    LATE_UPDATES: "weir_late_updates", Counter, OPERATOR,
        "Late rows an operator accepted within 'window.allowed-lateness'";
    EXPIRED_KEYS: "weir_expired_keys", Counter, OPERATOR,
        "Keys an operator dropped from its state by 'table.exec.state.ttl'";
    LOOKUP_HITS: "weir_lookup_cache_hits", Counter, OPERATOR,
        "Rows a lookup join answered from its cache";
    LOOKUP_MISSES: "weir_lookup_cache_misses", Counter, OPERATOR,
        "Rows a lookup join had to look up in the table";
    LOOKUP_QUERIES: "weir_lookup_queries", Counter, OPERATOR,
        "Queries a lookup join sent (one per batch with misses)";
    LOOKUP_SECONDS: "weir_lookup_query_seconds", Counter, OPERATOR,
        "Seconds a lookup join's queries took, in all (divide by weir_lookup_queries_total)";
    BUSY_SECONDS: "weir_operator_busy_seconds", Counter, OPERATOR,
        "Seconds an operator spent processing (a source: reading and decoding)";
    BACKPRESSURED_SECONDS: "weir_operator_backpressured_seconds", Counter, OPERATOR,
        "Seconds an operator waited on a full output channel";
    BUSY_RATIO: "weir_operator_busy_ratio", Gauge, OPERATOR,
        "Share of the last 10 s an operator was processing (its busiest subtask's)";
    SUBTASK_ROWS_IN: "weir_subtask_rows_in", Counter, &["job", "operator", "subtask"],
        "Rows one subtask of an operator received (skew: one far above the others)";
    SUBTASK_BUSY_RATIO: "weir_subtask_busy_ratio", Gauge, &["job", "operator", "subtask"],
        "Share of the last 10 s one subtask of an operator was processing";
    BACKPRESSURED_RATIO: "weir_backpressured_ratio", Gauge, OPERATOR,
        "Share of the last 10 s an operator waited on a full output channel";
    WATERMARK_LAG: "weir_watermark_lag_seconds", Gauge, OPERATOR,
        "Wall clock minus the watermark at the sinks";
    CHECKPOINT_DURATION: "weir_checkpoint_duration_seconds", Gauge, JOB,
        "Duration of the last completed checkpoint";
    CHECKPOINT_AGE: "weir_last_checkpoint_age_seconds", Gauge, JOB,
        "Seconds since the last completed checkpoint";
    KAFKA_LAG: "weir_kafka_consumer_lag_records", Gauge, &["job", "topic", "partition"],
        "Log end offset minus the source's position, per partition";
    OPEN_WINDOWS: "weir_open_windows", Gauge, OPERATOR,
        "Windows an operator holds open";
    STATE_KEYS: "weir_state_keys", Gauge, OPERATOR,
        "Keys (or window groups) an operator holds";
    STATE_BYTES: "weir_state_bytes", Gauge, OPERATOR,
        "Approximate bytes of operator state in memory";
    CHECKPOINT_BYTES: "weir_checkpoint_size_bytes", Gauge, JOB,
        "Size of the last completed checkpoint";
    COMMIT_SECONDS: "weir_sink_commit_seconds", Gauge, JOB,
        "Duration of the sinks' last commit";
    JOB_UPTIME: "weir_job_uptime_seconds", Gauge, JOB,
        "Seconds since the job started";
    JOB_RUNNING: "weir_job_running", Gauge, JOB,
        "1 while the job runs, 0 once it finished, failed or was stopped";
    SOURCE_WATERMARK: "weir_source_watermark_seconds", Gauge, PARTITION,
        "A source partition's watermark (event time, seconds since the epoch)";
    SOURCE_RATE: "weir_source_records_per_second", Gauge, SOURCE,
        "Records a source read per second over the last 10 s";
    PARTITION_IDLE: "weir_source_partition_idle", Gauge, PARTITION,
        "1 while a source partition is idle and does not hold the watermark back";
    CHANNEL_FILL: "weir_channel_fill_ratio", Gauge, OPERATOR,
        "Messages waiting in an operator's output channel, as a share of its capacity";
    DECODE_ERROR_RATIO: "weir_decode_error_ratio", Gauge, SOURCE,
        "Dead letters as a share of all records a source read, since the job started";
    END_TO_END_LATENCY: "weir_end_to_end_latency_seconds", Histogram, &["job", "sink"],
        "Wall clock when a row became visible at the sink minus its event time";
    INGESTION_LATENCY: "weir_ingestion_latency_seconds", Histogram, &["job", "sink"],
        "Wall clock when a row became visible at the sink minus when the source read it";
    RESIDENT_MEMORY: "weir_process_resident_memory_bytes", Gauge, &[],
        "Resident memory";
    CPU_SECONDS: "weir_process_cpu_seconds", Counter, &[],
        "CPU time, user and system";
    PROCESS_UPTIME: "weir_process_uptime_seconds", Gauge, &[],
        "Seconds since the engine started";
    BUILD_INFO: "weir_build_info", Gauge, &["version"],
        "The running version";
}

/// The metric named `name` (family name, as in [`Metric::name`]).
pub fn find(name: &str) -> Option<&'static Metric> {
    ALL.iter().copied().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed() {
        for (i, m) in ALL.iter().enumerate() {
            assert!(m.name.starts_with("weir_"), "{}", m.name);
            assert!(!m.name.ends_with("_total"), "{}", m.name);
            assert_eq!(
                find(m.name).map(|f| f as *const _),
                Some(ALL[i] as *const _)
            );
        }
        assert_eq!(SOURCE_RECORDS.sample_name(), "weir_source_records_total");
        assert_eq!(BUSY_RATIO.sample_name(), "weir_operator_busy_ratio");
    }
}
