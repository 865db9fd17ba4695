//! Errors raised while a job runs, split by phase.
//!
//! `Internal` means "this is a bug in Weir"; everything else is the user's input, a connector or
//! state trouble, and carries a sentence a user can act on.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Planning failed (bad SQL, unknown table, a query that cannot run as a stream).
    #[error(transparent)]
    Plan(#[from] weir_planner::PlanError),
    /// A record or expression failed while the job was running.
    #[error("execution error: {0}")]
    Execution(String),
    /// A source or sink failed.
    #[error("connector '{connector}': {message}")]
    Connector { connector: String, message: String },
    /// Operator state could not be read or written.
    #[error("state error: {0}")]
    State(String),
    /// The job was cancelled by the user.
    #[error("job cancelled")]
    Cancelled,
    #[error("arrow error: {0}")]
    Arrow(#[from] ArrowError),
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A bug in Weir: an invariant did not hold.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

impl EngineError {
    pub fn connector(connector: impl Into<String>, message: impl Into<String>) -> Self {
        EngineError::Connector {
            connector: connector.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
