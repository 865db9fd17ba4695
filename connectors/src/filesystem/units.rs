//! Decoded units, for the threads that read a file's segments (`split_source.rs`): about
//! `batch_size` whole lines decoded straight from the file's buffer into one batch plus its
//! bad lines, whose indexes count from the unit's first line.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use weir_engine::{EngineError, Result};

use super::decode::{BadLine, SegmentDecoder};
use super::{CsvOptions, Format, NAME};

/// A decoded unit: its rows, and its bad lines (indexes relative to the unit's first line).
pub(crate) struct DecodedUnit {
    pub batch: Option<RecordBatch>,
    pub bad: Vec<BadLine>,
    pub name: Arc<str>,
    pub first_line: u64,
    pub len: usize,
}

/// How a reading thread builds its decoder.
#[derive(Clone)]
pub(crate) struct DecoderSpec {
    pub schema: SchemaRef,
    pub format: Format,
    pub csv: CsvOptions,
    pub batch_size: usize,
}

impl DecoderSpec {
    pub(crate) fn decoder(&self) -> Result<SegmentDecoder> {
        SegmentDecoder::new(self.schema.clone(), self.format, self.csv, self.batch_size)
            .map_err(|e| EngineError::connector(NAME, e.to_string()))
    }
}
