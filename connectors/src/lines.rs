//! Message payloads decoded as the lines of one region, shared by the message sources (Kafka,
//! MQTT): the payloads of a poll are laid end to end, one per line, and the segment decoder
//! turns the region into Arrow; each bad line, and each row the timestamp policy drops, is
//! handed back by its line so the source can report it with the message's origin.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};

use weir_planner::{ColumnKind, TableDef};

use crate::filesystem::decode::SegmentDecoder;
use crate::timestamps::TimePolicy;

/// A line that could not be used, by its index in the region.
pub(crate) struct BadRow {
    pub(crate) line: usize,
    pub(crate) reason: String,
    /// The line's bytes when the decoder had them (else the caller cuts them from the region).
    pub(crate) raw: Option<Vec<u8>>,
}

/// The decoded rows of a region, the line each row came from, and the lines left out.
pub(crate) struct DecodedLines {
    pub(crate) batches: Vec<RecordBatch>,
    pub(crate) row_lines: Vec<usize>,
    pub(crate) bad: Vec<BadRow>,
}

/// Decode every line of `region`. `name` is the connector named in decoder errors.
pub(crate) fn decode_lines(
    decoder: &mut SegmentDecoder,
    region: &[u8],
    name: &str,
) -> Result<DecodedLines> {
    let mut out = DecodedLines {
        batches: Vec::new(),
        row_lines: Vec::new(),
        bad: Vec::new(),
    };
    let (mut pos, mut line) = (0usize, 0usize);
    while pos < region.len() {
        let seg = decoder
            .next_segment(&region[pos..])
            .map_err(|e| EngineError::connector(name, e.to_string()))?;
        let bad_lines: Vec<usize> = seg.decoded.bad.iter().map(|b| b.index).collect();
        out.bad.extend(seg.decoded.bad.into_iter().map(|b| BadRow {
            line: line + b.index,
            reason: b.reason,
            raw: Some(b.raw),
        }));
        out.row_lines.extend(
            (0..seg.lines as usize)
                .filter(|i| !bad_lines.contains(i))
                .map(|i| line + i),
        );
        out.batches.extend(seg.decoded.batch);
        pos += seg.len;
        line += seg.lines as usize;
    }
    Ok(out)
}

/// What [`apply_time_policy`] works with.
pub(crate) struct Timed<'a> {
    pub(crate) policy: &'a TimePolicy,
    pub(crate) schema: &'a SchemaRef,
    pub(crate) metrics: &'a JobMetrics,
    pub(crate) name: &'a str,
}

/// Epoch-number conversion and timestamp bounds: the batch in the table's schema, and the rows
/// dropped (by line; they leave `row_lines` too).
pub(crate) fn apply_time_policy(
    t: Timed<'_>,
    batch: RecordBatch,
    row_lines: &mut Vec<usize>,
) -> Result<(RecordBatch, Vec<BadRow>)> {
    let mut corrections = 0;
    let (batch, dropped) = t
        .policy
        .apply(&batch, t.schema, &mut corrections)
        .map_err(|e| EngineError::connector(t.name, e.to_string()))?;
    JobMetrics::add(&t.metrics.timestamp_corrections, corrections as usize);
    let bad = dropped
        .iter()
        .filter_map(|(row, reason)| {
            Some(BadRow {
                line: *row_lines.get(*row)?,
                reason: reason.clone(),
                raw: None,
            })
        })
        .collect();
    let mut k = 0;
    row_lines.retain(|_| {
        k += 1;
        dropped.binary_search_by_key(&(k - 1), |b| b.0).is_err()
    });
    Ok((batch, bad))
}

/// The bytes of line `line` of `region` (without its `\n`), given where each line starts.
pub(crate) fn line_bytes(region: &[u8], starts: &[usize], line: usize) -> Vec<u8> {
    let end = starts
        .get(line + 1)
        .map_or(region.len(), |n| *n)
        .saturating_sub(1);
    region
        .get(starts.get(line).copied().unwrap_or(end)..end)
        .unwrap_or_default()
        .to_vec()
}

/// Append `payload` as one line of `region`; line ends inside it would split it, so they
/// become spaces. Returns where the line starts.
pub(crate) fn push_payload_line(region: &mut Vec<u8>, payload: &[u8]) -> usize {
    let start = region.len();
    region.extend(payload.iter().map(|b| match b {
        b'\n' | b'\r' => b' ',
        b => *b,
    }));
    region.push(b'\n');
    start
}

/// `batch` with the table's metadata columns appended: each column's values are what
/// `column(key)` gives for the batch's rows (its `METADATA FROM 'key'`), cast to the declared
/// type.
pub(crate) fn append_metadata(
    table: &TableDef,
    batch: RecordBatch,
    mut column: impl FnMut(&str) -> Result<ArrayRef>,
) -> Result<RecordBatch> {
    let cols = table.metadata_columns();
    if cols.is_empty() {
        return Ok(batch);
    }
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    for c in cols {
        let ColumnKind::Metadata { key, .. } = &c.kind else {
            continue;
        };
        arrays.push(cast(&column(key)?, &c.data_type)?);
        fields.push(Field::new(&c.name, c.data_type.clone(), true));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_lines_keep_their_bytes_without_line_ends() {
        let mut region = Vec::new();
        let starts = vec![
            push_payload_line(&mut region, b"{\"a\":\n1}"),
            push_payload_line(&mut region, b""),
            push_payload_line(&mut region, b"x\r\ny"),
        ];
        assert_eq!(region, b"{\"a\": 1}\n\nx  y\n");
        assert_eq!(line_bytes(&region, &starts, 0), b"{\"a\": 1}");
        assert_eq!(line_bytes(&region, &starts, 1), b"");
        assert_eq!(line_bytes(&region, &starts, 2), b"x  y");
        assert_eq!(line_bytes(&region, &starts, 7), b"");
    }
}
