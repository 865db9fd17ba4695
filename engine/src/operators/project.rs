//! `SELECT` expressions: computes the output columns of each batch.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::error::Result;
use crate::message::{Message, StreamBatch};
use crate::operator::Operator;
use weir_planner::stream_plan::PhysExpr;

/// Computes the `SELECT` expressions of each batch.
pub struct ProjectOperator {
    exprs: Vec<PhysExpr>,
    schema: SchemaRef,
}

impl ProjectOperator {
    /// Evaluate `exprs` into a batch of `schema` (one expression per field).
    pub fn new(exprs: Vec<PhysExpr>, schema: SchemaRef) -> Self {
        Self { exprs, schema }
    }
}

/// Evaluate `exprs` over `batch` into a batch of `schema`.
pub fn project(batch: &RecordBatch, exprs: &[PhysExpr], schema: &SchemaRef) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let mut columns = Vec::with_capacity(exprs.len());
    for (e, f) in exprs.iter().zip(schema.fields()) {
        let col = e.evaluate(batch)?.into_array(n)?;
        let col = if col.data_type() != f.data_type() {
            datafusion::arrow::compute::cast(&col, f.data_type())?
        } else {
            col
        };
        columns.push(col);
    }
    let opts = RecordBatchOptions::new().with_row_count(Some(n));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &opts,
    )?)
}

impl Operator for ProjectOperator {
    fn name(&self) -> &'static str {
        "Project"
    }

    fn process_batch(&mut self, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let projected = project(&batch.batch, &self.exprs, &self.schema)?;
        out.push(Message::Batch(StreamBatch {
            batch: projected,
            row_watermarks: batch.row_watermarks,
            kinds: batch.kinds,
            ingest_ns: batch.ingest_ns,
        }));
        Ok(())
    }
}
