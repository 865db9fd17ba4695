//! Kafka metadata columns: `ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'`, `partition`,
//! `offset`, `topic`, `key` and `headers` (`MAP<STRING, BYTES>`), appended after the decoded value columns (the order the planner
//! expects). A metadata timestamp can be the event-time column.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BinaryBuilder, Int32Array, Int64Array, MapBuilder, StringArray,
    StringBuilder, TimestampMillisecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::message::{BorrowedHeaders, Headers};
use weir_engine::{EngineError, Result};
use weir_planner::{ColumnKind, TableDef};

use super::source::{KafkaSource, LineMeta};
use super::NAME;

/// The metadata keys the Kafka source provides.
pub const KEYS: &[&str] = &[
    "timestamp",
    "partition",
    "offset",
    "topic",
    "key",
    "headers",
];

/// (key start, key length, value range or None for a null value) into `HeaderStore::bytes`.
type HeaderEntry = (usize, usize, Option<(usize, usize)>);

/// The headers of one poll's messages, laid end to end (no allocation per record).
#[derive(Default)]
pub(super) struct HeaderStore {
    bytes: Vec<u8>,
    entries: Vec<HeaderEntry>,
}

impl HeaderStore {
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
    }

    /// Keep a message's headers; returns (first entry, count).
    pub(super) fn push(&mut self, headers: Option<&BorrowedHeaders>) -> (u32, u32) {
        let first = self.entries.len() as u32;
        for h in headers.into_iter().flat_map(|h| h.iter()) {
            let k = self.bytes.len();
            self.bytes.extend_from_slice(h.key.as_bytes());
            let v = h.value.map(|v| {
                self.bytes.extend_from_slice(v);
                (k + h.key.len(), v.len())
            });
            self.entries.push((k, h.key.len(), v));
        }
        (first, self.entries.len() as u32 - first)
    }

    /// A `MAP<STRING, BYTES>` column of the headers of `rows`.
    fn column<'a>(&self, rows: impl Iterator<Item = &'a LineMeta>) -> Result<ArrayRef> {
        let mut b = MapBuilder::new(None, StringBuilder::new(), BinaryBuilder::new());
        for m in rows {
            let (first, n) = (m.headers.0 as usize, m.headers.1 as usize);
            for (ks, kl, v) in &self.entries[first..first + n] {
                let key = std::str::from_utf8(&self.bytes[*ks..ks + kl]).unwrap_or_default();
                b.keys().append_value(key);
                match v {
                    Some((vs, vl)) => b.values().append_value(&self.bytes[*vs..vs + vl]),
                    None => b.values().append_null(),
                }
            }
            b.append(true)?;
        }
        Ok(Arc::new(b.finish()))
    }
}

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
            "headers" => src.headers.column(rows)?,
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
