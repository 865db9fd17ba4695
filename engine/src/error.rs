//! Errors raised while a job runs, split by phase.
//!
//! `Internal` means "this is a bug in Weir"; everything else is the user's input, a connector or
//! state trouble, and carries a sentence a user can act on.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// Every error the engine reports.
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
    Connector {
        /// The connector's name (`'connector'` value).
        connector: String,
        /// What went wrong.
        message: String,
    },
    /// Operator state could not be read or written.
    #[error("state error: {0}")]
    State(String),
    /// The job was cancelled by the user.
    #[error("job cancelled")]
    Cancelled,
    /// An Arrow kernel or batch operation failed.
    #[error("arrow error: {0}")]
    Arrow(#[from] ArrowError),
    /// Evaluating a DataFusion expression or function failed.
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    /// A file or network operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A bug in Weir: an invariant did not hold.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

impl EngineError {
    /// An [`EngineError::Connector`] error of connector `connector`.
    pub fn connector(connector: impl Into<String>, message: impl Into<String>) -> Self {
        EngineError::Connector {
            connector: connector.into(),
            message: message.into(),
        }
    }
}

/// A result whose error defaults to [`EngineError`].
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
