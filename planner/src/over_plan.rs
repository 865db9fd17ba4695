//! The OVER aggregation node of the streaming plan: per partition, each row with aggregates
//! over the rows before it (a time range or a number of rows), in event-time order.

use std::sync::Arc;

use datafusion::arrow::datatypes::{SchemaRef, TimeUnit};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::stream_plan::{PhysExpr, StreamNode};
use crate::window_spec::format_duration;

/// Which earlier rows a row's aggregates cover (always up to the row itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverFrame {
    /// `RANGE BETWEEN INTERVAL .. PRECEDING AND CURRENT ROW`: rows with a time at most this many
    /// ns earlier, and every row with the same time.
    Range(i64),
    /// `ROWS BETWEEN n PRECEDING AND CURRENT ROW`: the n rows before, in time order.
    Rows(u64),
}

/// `AGG(x) OVER (PARTITION BY .. ORDER BY ts <frame>)`, one output row per input row.
#[derive(Debug, Clone)]
pub struct OverNode {
    pub input: Box<StreamNode>,
    pub partition: Vec<PhysExpr>,
    /// The ORDER BY column (the input's event time) and its unit.
    pub time_index: usize,
    pub unit: TimeUnit,
    pub frame: OverFrame,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// `FILTER (WHERE ...)` per aggregate.
    pub filters: Vec<Option<PhysExpr>>,
    /// Output: the input's columns, then one per aggregate.
    pub schema: SchemaRef,
}

impl OverNode {
    /// The EXPLAIN line.
    pub fn describe(&self) -> String {
        let part: Vec<String> = self.partition.iter().map(|e| e.to_string()).collect();
        let aggs: Vec<String> = self
            .aggregates
            .iter()
            .map(|a| a.human_display().unwrap_or(a.name()).to_string())
            .collect();
        let frame = match self.frame {
            OverFrame::Range(ns) => format!("RANGE {} PRECEDING", format_duration(ns)),
            OverFrame::Rows(n) => format!("ROWS {n} PRECEDING"),
        };
        let time = self.input.schema().field(self.time_index).name().clone();
        format!(
            "OverAggregate: partition=[{}] order={time} frame={frame} aggregates=[{}] \
             emits=each row once the watermark passes it state=rows of each partition's frame",
            part.join(", "),
            aggs.join(", ")
        )
    }
}
