//! Observability: the numbers an operator watches. Per-job counters ([`metrics`]), per-task
//! meters ([`op_metrics`], sampled by [`monitor`]), end-to-end latency ([`latency`]) and dead
//! letters ([`dead_letter`]) are kept by the tasks. A reading ([`collect`]) copies them into
//! typed [`samples`] of the metrics the [`catalog`] defines; `/metrics` writes those as
//! Prometheus text ([`prometheus`]), and `weir.metrics` and the progress line read them
//! directly. `/health` ([`health`]) judges the jobs themselves.

pub mod catalog;
pub mod collect;
pub mod dead_letter;
pub mod health;
pub mod latency;
pub mod metrics;
pub mod monitor;
pub mod op_metrics;
pub mod prometheus;
pub mod samples;
