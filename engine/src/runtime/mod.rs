//! The job runtime: tasks, channels, sources, sinks.

pub mod job;
pub mod partitions;
pub mod source;
pub mod union;
