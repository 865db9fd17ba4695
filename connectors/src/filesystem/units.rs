//! Units of whole lines and their decoding, for the threads that read a file's segments
//! (`split_source.rs`): a unit is `batch_size` lines cut with a cheap line-end scan, decoded
//! into one batch plus its bad lines, whose indexes count from the unit's first line.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use weir_engine::{EngineError, Result};

use super::decode::{BadLine, SegmentDecoder};
use super::{CsvOptions, Format, NAME};

/// Whole lines cut from a file, to be decoded.
pub(crate) struct Unit {
    pub bytes: Vec<u8>,
    /// The file's name in record positions, and the line number of the unit's first line.
    pub name: Arc<str>,
    pub first_line: u64,
}

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

/// Decode every segment of a unit; bad lines keep their line index within the unit.
pub(crate) fn decode_unit(decoder: &mut SegmentDecoder, unit: Unit) -> Result<DecodedUnit> {
    let (mut pos, mut line) = (0usize, 0usize);
    let mut batches = Vec::new();
    let mut bad = Vec::new();
    while pos < unit.bytes.len() {
        let segment = decoder
            .next_segment(&unit.bytes[pos..])
            .map_err(|e| EngineError::connector(NAME, format!("{}: {e}", unit.name)))?;
        bad.extend(segment.decoded.bad.into_iter().map(|mut b| {
            b.index += line;
            b
        }));
        batches.extend(segment.decoded.batch);
        pos += segment.len;
        line += segment.lines as usize;
    }
    let batch = match batches.len() {
        0 => None,
        1 => batches.pop(),
        _ => Some(datafusion::arrow::compute::concat_batches(
            &batches[0].schema(),
            &batches,
        )?),
    };
    Ok(DecodedUnit {
        batch,
        bad,
        name: unit.name,
        first_line: unit.first_line,
        len: unit.bytes.len(),
    })
}
