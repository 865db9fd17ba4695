//! Kafka metadata columns: `ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'`, `partition`,
//! `offset`, `topic` and `key`, appended after the decoded value columns (the order the planner
//! expects). A metadata timestamp can be the event-time column.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use weir_engine::{EngineError, Result};
use weir_planner::{ColumnKind, TableDef};

use super::source::{KafkaSource, LineMeta};
use super::NAME;

/// The metadata keys the Kafka source provides.
pub const KEYS: &[&str] = &["timestamp", "partition", "offset", "topic", "key"];

/// `batch` with the table's metadata columns appended, for the rows at `row_lines`.
pub(super) fn append(
    table: &TableDef,
    batch: RecordBatch,
    row_lines: &[usize],
    meta: &[LineMeta],
    src: &KafkaSource,
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
        let rows = row_lines.iter().map(|l| &meta[*l]);
        let a: ArrayRef = match key.as_str() {
            "timestamp" => Arc::new(
                TimestampMillisecondArray::from_iter(rows.map(|m| m.timestamp))
                    .with_timezone("UTC"),
            ),
            "partition" => Arc::new(Int32Array::from_iter_values(
                rows.map(|m| src.parts[m.id as usize].partition),
            )),
            "offset" => Arc::new(Int64Array::from_iter_values(rows.map(|m| m.offset))),
            "topic" => Arc::new(StringArray::from_iter_values(
                rows.map(|m| src.parts[m.id as usize].topic.as_str()),
            )),
            "key" => Arc::new(BinaryArray::from_iter(
                rows.map(|m| m.key.map(|(s, l)| &src.keys[s..s + l])),
            )),
            other => {
                return Err(EngineError::connector(
                    NAME,
                    format!("no metadata key '{other}'"),
                ))
            }
        };
        arrays.push(cast(&a, &c.data_type)?);
        fields.push(Field::new(&c.name, c.data_type.clone(), true));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}
