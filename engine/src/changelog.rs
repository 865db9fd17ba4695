//! Changelog rows: the kind of change a row is (Flink's `RowKind`), and how it travels.
//!
//! Inside the pipeline a batch of an updating stream carries its kinds beside the rows (see
//! [`crate::message::StreamBatch::kinds`]); an append-only stream carries none, so plans that never
//! update pay nothing. Where rows leave the engine (sinks, [`crate::QueryStream`]) the kinds become
//! a first column named `op` holding `+I`, `-U`, `+U` or `-D`, marked in its field metadata so that
//! sinks can tell it from a user column.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::array::{Array, ArrayRef, StringArray, UInt32Array};
use datafusion::arrow::compute::kernels::cmp::distinct;
use datafusion::arrow::compute::{concat_batches, or, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{EngineError, Result};
use crate::message::StreamBatch;

/// What a changelog row does to the result table (Flink's byte values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum RowKind {
    /// `+I`: a new row.
    Insert = 0,
    /// `-U`: the previous value of an updated row, taken out before its `+U`.
    UpdateBefore = 1,
    /// `+U`: the new value of an updated row.
    UpdateAfter = 2,
    /// `-D`: a row removed from the result.
    Delete = 3,
}

impl RowKind {
    /// Flink's short string: `+I`, `-U`, `+U`, `-D`.
    pub fn short(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    /// The kind for Flink's byte value; unknown values count as [`RowKind::Insert`].
    pub fn from_i8(v: i8) -> RowKind {
        match v {
            1 => RowKind::UpdateBefore,
            2 => RowKind::UpdateAfter,
            3 => RowKind::Delete,
            _ => RowKind::Insert,
        }
    }

    /// Parse Flink's short string (`+I`, `-U`, `+U`, `-D`); `None` for anything else.
    pub fn from_short(s: &str) -> Option<RowKind> {
        Some(match s {
            "+I" => RowKind::Insert,
            "-U" => RowKind::UpdateBefore,
            "+U" => RowKind::UpdateAfter,
            "-D" => RowKind::Delete,
            _ => return None,
        })
    }

    /// True for `-U` and `-D`: the row is taken out of the result.
    pub fn is_retraction(self) -> bool {
        matches!(self, RowKind::UpdateBefore | RowKind::Delete)
    }
}

/// The name of the kind column where rows leave the engine.
pub const OP_COLUMN: &str = "op";
const OP_META: &str = "weir.changelog";

/// The `op` field of an updating result.
pub fn op_field() -> Field {
    Field::new(OP_COLUMN, DataType::Utf8, false).with_metadata(HashMap::from([(
        OP_META.to_string(),
        "row-kind".to_string(),
    )]))
}

/// True when `f` is the kind column added by [`with_op_schema`].
pub fn is_op_field(f: &Field) -> bool {
    f.metadata().contains_key(OP_META)
}

/// `schema` with the `op` column in front.
pub fn with_op_schema(schema: &SchemaRef) -> SchemaRef {
    let mut fields = vec![Arc::new(op_field())];
    fields.extend(schema.fields().iter().cloned());
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// True when the first column of `schema` is the kind column.
pub fn has_op(schema: &Schema) -> bool {
    schema.fields().first().is_some_and(|f| is_op_field(f))
}

/// The batch as it leaves the engine: `op` first (rows without kinds are `+I`).
pub fn to_output(b: StreamBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let n = b.num_rows();
    let ops: StringArray = match &b.kinds {
        Some(k) => k
            .iter()
            .map(|v| Some(RowKind::from_i8(*v).short()))
            .collect(),
        None => std::iter::repeat_n(Some("+I"), n).collect(),
    };
    let mut cols: Vec<ArrayRef> = vec![Arc::new(ops)];
    cols.extend(b.batch.columns().iter().cloned());
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Split a batch with an `op` column into its kinds and the remaining columns.
pub fn split_op(batch: &RecordBatch) -> Result<(Vec<RowKind>, RecordBatch)> {
    let ops = batch
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| EngineError::Internal("the op column is not a string".into()))?;
    let kinds = (0..ops.len())
        .map(|i| RowKind::from_short(ops.value(i)).unwrap_or(RowKind::Insert))
        .collect();
    let mut rest = batch.clone();
    rest.remove_column(0);
    Ok((kinds, rest))
}

/// Collects changelog rows taken from two batches of the same schema: the values before a change
/// (`old`) and after it (`new`), in the order changes are pushed.
#[derive(Default)]
pub struct ChangeBuilder {
    /// Row indices into `old ++ new`.
    rows: Vec<u32>,
    kinds: Vec<i8>,
}

impl ChangeBuilder {
    /// Append the change `kind` of row `row` (an index into `old ++ new`).
    pub fn push(&mut self, row: u32, kind: RowKind) {
        self.rows.push(row);
        self.kinds.push(kind as i8);
    }

    /// True when no change has been pushed.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The changes as one batch; `new` rows are numbered after the `old` ones.
    pub fn build(self, old: &RecordBatch, new: &RecordBatch) -> Result<Option<StreamBatch>> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        let both = concat_batches(&new.schema(), [old, new])?;
        let batch = take_record_batch(&both, &UInt32Array::from(self.rows))?;
        Ok(Some(StreamBatch::new(batch).with_kinds(self.kinds)))
    }
}

/// Rows where any column differs between `a` and `b` (same schema and length).
pub fn changed_rows(a: &RecordBatch, b: &RecordBatch, from_col: usize) -> Result<BooleanArray> {
    let mut acc = BooleanArray::from(vec![false; a.num_rows()]);
    for i in from_col..a.num_columns() {
        acc = or(&acc, &distinct(a.column(i), b.column(i))?)?;
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_the_op_column() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(datafusion::arrow::array::Int64Array::from(vec![
                1, 2,
            ]))],
        )
        .unwrap();
        let sb = StreamBatch::new(b).with_kinds(vec![1i8, 2]);
        let out_schema = with_op_schema(&schema);
        assert!(has_op(&out_schema));
        let out = to_output(sb, &out_schema).unwrap();
        let (kinds, rest) = split_op(&out).unwrap();
        assert_eq!(kinds, vec![RowKind::UpdateBefore, RowKind::UpdateAfter]);
        assert_eq!(rest.num_columns(), 1);
    }
}
