//! Dead letters: records that could not be decoded or placed in time.
//!
//! They never stop a job by default and are never silently lost: each one is counted and
//! reported with its raw bytes, the reason and its source position (file/line, or
//! topic/partition/offset). The default destination is the log (stderr, one line each for the
//! first records, then a summary line every 1,000); `'format.on-error' = 'fail'` turns the first
//! one into a job failure instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{EngineError, Result};

/// One record that could not be used.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRecord {
    /// The raw bytes as read.
    pub raw: Vec<u8>,
    /// Why it was rejected.
    pub reason: String,
    /// Where it came from: `file.jsonl:17` or `topic/2@1234`.
    pub position: String,
}

/// What to do with a bad record (`'format.on-error'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Count it, report it in the log and the API, and drop it (the default without a
    /// dead-letter destination).
    #[default]
    Skip,
    /// As `Skip`, and write it to the source's dead-letter destination with the reason and its
    /// origin (the default when the table has one, e.g. `'dead-letter.topic'`).
    DeadLetter,
    /// Stop the job with the record's reason.
    Fail,
}

impl OnError {
    /// Parse `'format.on-error'`: `fail`, `skip` or `dead-letter`; unset means `dead-letter`
    /// when the table names a dead-letter destination, else `skip`.
    pub fn parse_with_default(s: Option<&str>, has_destination: bool) -> Result<OnError, String> {
        match s {
            None if has_destination => Ok(OnError::DeadLetter),
            other => Self::parse(other),
        }
    }

    /// Parse `'format.on-error'` (`skip` when unset).
    pub fn parse(s: Option<&str>) -> Result<OnError, String> {
        match s.map(|s| s.to_ascii_lowercase()) {
            None => Ok(OnError::Skip),
            Some(s) if s == "skip" => Ok(OnError::Skip),
            Some(s) if s == "dead-letter" => Ok(OnError::DeadLetter),
            Some(s) if s == "fail" => Ok(OnError::Fail),
            Some(other) => Err(format!(
                "'format.on-error' must be 'fail', 'skip' or 'dead-letter', not '{other}'"
            )),
        }
    }
}

/// How many bad records get a log line of their own before only summaries are printed.
const VERBOSE_LIMIT: u64 = 10;

/// A handle to a table's dead-letter destination; cheap to clone.
#[derive(Clone, Default)]
pub struct DeadLetters {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    count: AtomicU64,
    on_error: Mutex<OnError>,
    /// Records kept for inspection by the API (bounded).
    kept: Mutex<Vec<BadRecord>>,
    quiet: std::sync::atomic::AtomicBool,
}

/// At most this many records are kept in memory for the API.
const KEEP_LIMIT: usize = 1000;

impl DeadLetters {
    /// A destination that handles bad records as `on_error` says.
    pub fn new(on_error: OnError) -> Self {
        let d = DeadLetters::default();
        *d.inner.on_error.lock().expect("lock") = on_error;
        d
    }

    /// Do not print per-record lines (tests).
    pub fn set_quiet(&self, quiet: bool) {
        self.inner.quiet.store(quiet, Ordering::Relaxed);
    }

    /// Report a bad record; an error when the table says `'format.on-error' = 'fail'`.
    pub fn report(&self, record: BadRecord) -> Result<()> {
        if *self.inner.on_error.lock().expect("lock") == OnError::Fail {
            return Err(EngineError::Execution(format!(
                "bad record at {}: {}",
                record.position, record.reason
            )));
        }
        let n = self.inner.count.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.inner.quiet.load(Ordering::Relaxed) {
            if n <= VERBOSE_LIMIT {
                tracing::warn!(
                    "skipped bad record at {}: {}",
                    record.position,
                    record.reason
                );
            } else if n.is_multiple_of(1000) {
                tracing::warn!("{n} bad records skipped so far");
            }
        }
        let mut kept = self.inner.kept.lock().expect("lock");
        if kept.len() < KEEP_LIMIT {
            kept.push(record);
        }
        Ok(())
    }

    /// Bad records seen so far.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// The first bad records (at most 1,000), for inspection.
    pub fn records(&self) -> Vec<BadRecord> {
        self.inner.kept.lock().expect("lock").clone()
    }
}
