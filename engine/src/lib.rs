#![warn(missing_docs)]
//! `weir-engine`: operators, watermarks, the job runtime and the embeddable `Engine`.
//!
//! Data flows source -> operators -> sink as [`message::Message`]s on bounded channels; each
//! operator is a small synchronous state machine ([`operator::Operator`]) driven by a task.
//! The top-level modules are that data path; [`session`] holds the engine and its statements,
//! [`observe`] the metrics, latency, dead letters and health.

pub mod changelog;
pub mod checkpoint;
pub mod connector;
pub mod error;
pub mod late;
pub mod message;
pub mod observe;
pub mod operator;
pub mod operators;
pub mod runtime;
pub mod session;
pub mod state;
pub mod window;

pub use error::{EngineError, Result};
pub use session::engine::{plan_only, Engine, Output};
pub use session::stream::{JobHandle, QueryStream};
