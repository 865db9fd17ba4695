//! Observability: the numbers an operator watches. Per-job counters ([`metrics`]), per-task
//! meters ([`op_metrics`], sampled by [`monitor`]), end-to-end latency ([`latency`]), dead
//! letters ([`dead_letter`]), and how they are served: Prometheus text ([`prometheus`]), the
//! samples `weir.metrics` and the progress line read ([`samples`]), and `/health` ([`health`]).

pub mod dead_letter;
pub mod health;
pub mod latency;
pub mod metrics;
pub mod monitor;
pub mod op_metrics;
pub mod prometheus;
pub mod samples;
