//! The session and API side: the embeddable [`engine::Engine`] with its catalog and settings,
//! statements (DDL, SHOW, SET, EXPLAIN, INSERT planning), job control, the handles an embedding
//! program holds, the `weir.*` system tables, and opening a job's sinks.

pub mod admin;
pub mod engine;
pub mod job_history;
pub(crate) mod job_sinks;
pub(crate) mod statements;
pub mod stream;
pub mod system_tables;
