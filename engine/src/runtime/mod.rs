//! The job runtime: tasks, channels, sources, sinks.

pub mod chain;
pub mod checkpointed;
pub mod exchange;
pub mod idleness;
pub mod inputs;
pub mod job;
mod job_source;
pub mod lookup;
pub mod ordered;
pub mod partitions;
pub mod segments;
pub mod sink;
pub mod source;
pub mod task;
pub mod throttle;
pub mod union;
pub mod watermark_expr;
