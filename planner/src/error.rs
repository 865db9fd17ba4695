//! Planning errors: everything that can go wrong between SQL text and a streaming plan.
//!
//! Every user-facing error carries the line and column where the problem is, so the shell can
//! draw a caret under it. `Internal` means "this is a bug".

use std::fmt;

use datafusion::error::DataFusionError;

/// A position in the submitted SQL text (1-based; 0 means unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    pub line: u64,
    pub column: u64,
}

impl Location {
    pub fn new(line: u64, column: u64) -> Self {
        Self { line, column }
    }

    pub fn is_known(&self) -> bool {
        self.line > 0
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The text is not valid SQL.
    #[error("SQL parse error at {location}: {message}")]
    Parse { message: String, location: Location },
    /// Valid SQL that names something unknown or mistyped.
    #[error("{}", with_location(message, location))]
    Plan { message: String, location: Location },
    /// Valid SQL that cannot run as a stream; `hint` says what to write instead.
    #[error("{}", unsupported(message, hint, location))]
    Unsupported {
        message: String,
        hint: String,
        location: Location,
    },
    /// A bug in Weir.
    #[error("internal planning error (this is a bug): {0}")]
    Internal(String),
}

fn with_location(message: &str, location: &Location) -> String {
    if location.is_known() {
        format!("{message} (at {location})")
    } else {
        message.to_string()
    }
}

fn unsupported(message: &str, hint: &str, location: &Location) -> String {
    let base = with_location(message, location);
    if hint.is_empty() {
        base
    } else {
        format!("{base}. {hint}")
    }
}

impl PlanError {
    pub fn plan(message: impl Into<String>, location: Location) -> Self {
        PlanError::Plan {
            message: message.into(),
            location,
        }
    }

    pub fn parse(message: impl Into<String>, location: Location) -> Self {
        PlanError::Parse {
            message: message.into(),
            location,
        }
    }

    pub fn unsupported(message: impl Into<String>, hint: impl Into<String>) -> Self {
        PlanError::Unsupported {
            message: message.into(),
            hint: hint.into(),
            location: Location::default(),
        }
    }

    /// The location the error points at, if known.
    pub fn location(&self) -> Option<Location> {
        match self {
            PlanError::Parse { location, .. }
            | PlanError::Plan { location, .. }
            | PlanError::Unsupported { location, .. } => location.is_known().then_some(*location),
            PlanError::Internal(_) => None,
        }
    }

    /// Attach a location when the error has none yet.
    pub fn at(mut self, loc: Location) -> Self {
        match &mut self {
            PlanError::Parse { location, .. }
            | PlanError::Plan { location, .. }
            | PlanError::Unsupported { location, .. } => {
                if !location.is_known() {
                    *location = loc;
                }
            }
            PlanError::Internal(_) => {}
        }
        self
    }
}

impl From<datafusion::arrow::error::ArrowError> for PlanError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        PlanError::Internal(e.to_string())
    }
}

impl From<DataFusionError> for PlanError {
    fn from(e: DataFusionError) -> Self {
        let e = e.find_root().to_string();
        PlanError::Plan {
            message: clean_df_message(&e),
            location: Location::default(),
        }
    }
}

/// DataFusion prefixes messages with its phase ("Error during planning: "); users need the rest.
fn clean_df_message(msg: &str) -> String {
    let mut m = msg;
    for prefix in [
        "Schema error: ",
        "Error during planning: ",
        "SQL error: ",
        "Optimizer rule",
    ] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest;
        }
    }
    m.to_string()
}

pub type Result<T, E = PlanError> = std::result::Result<T, E>;
