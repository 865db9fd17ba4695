#![warn(missing_docs)]
//! `weir-engine`: operators, watermarks, the job runtime and the embeddable `Engine`.
//!
//! Data flows source -> operators -> sink as [`message::Message`]s on bounded channels; each
//! operator is a small synchronous state machine ([`operator::Operator`]) driven by a task.

mod admin;
pub mod changelog;
pub mod checkpoint;
pub mod connector;
pub mod dead_letter;
pub mod engine;
pub mod error;
pub mod health;
pub mod job_history;
mod job_sinks;
pub mod late;
pub mod latency;
pub mod message;
pub mod metrics;
pub mod operator;
pub mod operators;
pub mod prometheus;
pub mod runtime;
pub mod samples;
pub mod state;
mod statements;
pub mod stream;
pub mod system_tables;
pub mod window;

pub use engine::{plan_only, Engine, Output};
pub use error::{EngineError, Result};
pub use stream::{JobHandle, QueryStream};
