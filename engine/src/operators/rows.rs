//! Small row-level helpers the two-input and OVER operators share: key encoders, the
//! watermark a row is judged by, picking rows, boolean masks and a pair's schema.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::RowConverter;

use super::groups::key_converter;
use crate::error::{EngineError, Result};
use crate::message::{Message, StreamBatch};
use weir_planner::stream_plan::PhysExpr;

/// The row-format encoder of key expressions `keys` over `schema` (one constant key when
/// there are none).
pub(crate) fn keys_converter(keys: &[PhysExpr], schema: &Schema) -> Result<RowConverter> {
    let mut types = keys
        .iter()
        .map(|k| Ok(k.data_type(schema)?))
        .collect::<Result<Vec<_>>>()?;
    if types.is_empty() {
        types.push(DataType::Boolean);
    }
    key_converter(&types)
}

/// The watermark row `i` of `b` is judged by: the one in force before it on its input, and
/// at least `operator`, the last one the operator received.
pub(crate) fn own_watermark(b: &StreamBatch, i: usize, operator: i64) -> i64 {
    match &b.row_watermarks {
        Some(w) if w.is_valid(i) => w.value(i).max(operator),
        _ => operator,
    }
}

/// Send `batch` downstream (when it has rows), every row under watermark `wm`: the operator's
/// output watermark before the rows, which none of them is at or below.
pub(crate) fn emit_at(batch: RecordBatch, wm: i64, out: &mut Vec<Message>) {
    if batch.num_rows() > 0 {
        let wms = datafusion::arrow::array::Int64Array::from_value(wm, batch.num_rows());
        out.push(Message::Batch(StreamBatch::with_row_watermarks(batch, wms)));
    }
}

/// Rows `idx` of `batch`.
pub(crate) fn take_rows(batch: &RecordBatch, idx: &[u32]) -> Result<RecordBatch> {
    let idx = UInt32Array::from_iter_values(idx.iter().copied());
    let cols = batch
        .columns()
        .iter()
        .map(|c| take(c, &idx, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), cols)?)
}

/// Rows `own` of `batch` (input `side` of a join) beside `other`, the other input's columns
/// (one row each): a batch of `schema`, the left input's columns then the right's.
pub(crate) fn pair_batch(
    schema: &SchemaRef,
    side: usize,
    batch: &RecordBatch,
    own: &[u32],
    other: Vec<datafusion::arrow::array::ArrayRef>,
) -> Result<RecordBatch> {
    let own = take_rows(batch, own)?.columns().to_vec();
    let cols = match side {
        0 => [own, other].concat(),
        _ => [other, own].concat(),
    };
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Which rows a filter's result keeps (true, not NULL).
pub(crate) fn kept(mask: &BooleanArray) -> Vec<bool> {
    (0..mask.len())
        .map(|i| mask.is_valid(i) && mask.value(i))
        .collect()
}

/// A boolean expression (a filter) evaluated over `batch`.
pub(crate) fn mask(f: &PhysExpr, batch: &RecordBatch) -> Result<BooleanArray> {
    let v = f.evaluate(batch)?.into_array(batch.num_rows())?;
    v.as_any()
        .downcast_ref::<BooleanArray>()
        .cloned()
        .ok_or_else(|| EngineError::Internal("a filter that is not boolean".into()))
}

/// Rows `idx` of `batch` followed by NULLs in the columns of `right`: an outer join's rows
/// without a partner, in `schema`.
pub(crate) fn padded_rows(
    batch: &RecordBatch,
    idx: &[u32],
    right: &Schema,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let own = take_rows(batch, idx)?;
    let nulls = right
        .fields()
        .iter()
        .map(|f| datafusion::arrow::array::new_null_array(f.data_type(), idx.len()));
    let cols: Vec<_> = own.columns().iter().cloned().chain(nulls).collect();
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// The columns of a left row followed by those of a right row.
pub(crate) fn pair_schema(left: &Schema, right: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        [left.fields().to_vec(), right.fields().to_vec()].concat(),
    ))
}
