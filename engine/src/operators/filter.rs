//! `WHERE`: keeps the rows whose predicate is true (NULL counts as false).

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::compute::prep_null_mask_filter;

use crate::error::{EngineError, Result};
use crate::message::{Message, StreamBatch};
use crate::operator::Operator;
use weir_planner::stream_plan::PhysExpr;

/// Keeps the rows of each batch whose predicate is true.
pub struct FilterOperator {
    predicate: PhysExpr,
}

impl FilterOperator {
    /// Filter by `predicate`, a boolean expression over the input columns.
    pub fn new(predicate: PhysExpr) -> Self {
        Self { predicate }
    }
}

impl Operator for FilterOperator {
    fn name(&self) -> &'static str {
        "Filter"
    }

    fn process_batch(&mut self, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let value = self
            .predicate
            .evaluate(&batch.batch)?
            .into_array(batch.num_rows())?;
        let mask = value
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| EngineError::Internal("filter predicate is not boolean".into()))?;
        let mask = if mask.null_count() > 0 {
            prep_null_mask_filter(mask)
        } else {
            mask.clone()
        };
        if mask.true_count() == mask.len() {
            out.push(Message::Batch(batch));
            return Ok(());
        }
        let kept = batch.filter(&mask)?;
        if kept.num_rows() > 0 {
            out.push(Message::Batch(kept));
        }
        Ok(())
    }
}
