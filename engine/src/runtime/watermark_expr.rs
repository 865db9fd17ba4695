//! A source's watermark expression, evaluated per batch.
//!
//! Nearly every table declares `WATERMARK FOR ts AS ts - INTERVAL '5' SECOND`. Arrow evaluates
//! a timestamp minus an interval row by row through calendar arithmetic (an interval may hold
//! months), which cost a third of a tumble job's time. A fixed delay (no months) is plain
//! arithmetic on the nanosecond values instead, with the same results: this module recognises
//! it and hands the rowtime column and the delay to the source's running maximum.

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::scalar::ScalarValue;
use weir_planner::stream_plan::PhysExpr;

use crate::error::Result;

/// How a source computes its watermark values.
#[derive(Debug, Clone)]
pub enum WatermarkExpr {
    /// `column - INTERVAL` of a fixed length: the column's values less `delay_ns`.
    Delay {
        /// The rowtime column.
        column: usize,
        /// The interval in nanoseconds.
        delay_ns: i64,
    },
    /// Any other expression, evaluated by DataFusion.
    Expr(PhysExpr),
}

/// The values a batch's watermark is made of, and what to subtract from each (in ns).
pub struct WatermarkValues {
    /// One value per row (a timestamp column).
    pub values: ArrayRef,
    /// Nanoseconds to subtract from each value.
    pub delay_ns: i64,
}

impl WatermarkExpr {
    /// Recognise a fixed delay in `expr`.
    pub fn new(expr: PhysExpr) -> Self {
        fixed_delay(&expr)
            .map(|(column, delay_ns)| WatermarkExpr::Delay { column, delay_ns })
            .unwrap_or(WatermarkExpr::Expr(expr))
    }

    /// The watermark values of `batch` (the table's full schema).
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<WatermarkValues> {
        Ok(match self {
            WatermarkExpr::Delay { column, delay_ns } => WatermarkValues {
                values: batch.column(*column).clone(),
                delay_ns: *delay_ns,
            },
            WatermarkExpr::Expr(e) => WatermarkValues {
                values: e.evaluate(batch)?.into_array(batch.num_rows())?,
                delay_ns: 0,
            },
        })
    }
}

/// `(column, delay in ns)` of `column - INTERVAL` with no months in the interval.
fn fixed_delay(expr: &PhysExpr) -> Option<(usize, i64)> {
    let bin = expr.downcast_ref::<BinaryExpr>()?;
    if *bin.op() != Operator::Minus {
        return None;
    }
    let column = bin.left().downcast_ref::<Column>()?.index();
    let delay = match bin.right().downcast_ref::<Literal>()?.value() {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => i64::from(v.days)
            .checked_mul(86_400_000_000_000)?
            .checked_add(v.nanoseconds)?,
        ScalarValue::IntervalDayTime(Some(v)) => i64::from(v.days)
            .checked_mul(86_400_000_000_000)?
            .checked_add(i64::from(v.milliseconds).checked_mul(1_000_000)?)?,
        _ => return None,
    };
    Some((column, delay))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array, TimestampMillisecondArray};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::IntervalMonthDayNano;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn minus(months: i32, nanos: i64) -> PhysExpr {
        let interval = IntervalMonthDayNano::new(months, 0, nanos);
        Arc::new(BinaryExpr::new(
            Arc::new(Column::new("ts", 0)),
            Operator::Minus,
            Arc::new(Literal::new(ScalarValue::IntervalMonthDayNano(Some(
                interval,
            )))),
        ))
    }

    #[test]
    fn a_fixed_delay_gives_what_the_expression_gives() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        )]));
        let ts = TimestampMillisecondArray::from(vec![Some(1_704_067_200_123), None, Some(-7)]);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(ts)]).unwrap();
        let expr = minus(0, 5_000_000_000);
        let fast = WatermarkExpr::new(expr.clone());
        assert!(matches!(
            fast,
            WatermarkExpr::Delay {
                column: 0,
                delay_ns: 5_000_000_000
            }
        ));
        let slow = WatermarkExpr::Expr(expr).evaluate(&batch).unwrap();
        let fast = fast.evaluate(&batch).unwrap();
        let ns = |w: &WatermarkValues| -> Vec<Option<i64>> {
            let v = cast(&w.values, &DataType::Int64).unwrap();
            let v = v.as_any().downcast_ref::<Int64Array>().unwrap();
            v.iter()
                .map(|x| x.map(|x| x * 1_000_000 - w.delay_ns))
                .collect()
        };
        assert_eq!(ns(&fast), ns(&slow));
        assert_eq!(fast.values.null_count(), 1);
        // Months are calendar arithmetic: left to the expression.
        assert!(matches!(
            WatermarkExpr::new(minus(1, 0)),
            WatermarkExpr::Expr(_)
        ));
    }
}
