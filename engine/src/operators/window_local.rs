//! Local pre-aggregation of a window aggregation's input, before the keyed exchange (Flink's
//! local-global aggregation, `table.optimizer.agg-phase-strategy`).
//!
//! Each input batch is folded, on the input's own subtask, into one partial row per (window,
//! key): the window's end and start, the key columns, every aggregate's state columns (what
//! DataFusion's accumulators give as `state`) and how many input rows the partial row stands
//! for. So a batch of 8,192 readings of 1,000 sensors crosses the exchange as about 1,000 rows,
//! and the global aggregation ([`super::window_aggregate`]) merges the states instead of
//! accumulating rows. Nothing is kept between batches: barriers and watermarks pass through,
//! and the checkpointed state is the global aggregation's, the same as without this step.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows};

use super::groups::{key_converter, AggregateSet, Contribution, GroupTable};
use super::window_aggregate::{for_each_window, key_arrays, layout, ts_values, Windowed};
use crate::error::Result;
use crate::message::StreamBatch;
use weir_planner::stream_plan::{PhysExpr, WindowAggregateNode};

/// Where the parts of a partial row are, for `keys` key columns and `states` state columns.
#[derive(Debug, Clone, Copy)]
pub struct PartialLayout {
    /// Key columns (they follow the window end and start).
    pub keys: usize,
    /// State columns of all aggregates (they follow the keys).
    pub states: usize,
}

impl PartialLayout {
    /// Column of the window end.
    pub const END: usize = 0;
    /// Column of the window start.
    pub const START: usize = 1;

    /// The key columns.
    pub fn key_range(&self) -> std::ops::Range<usize> {
        2..2 + self.keys
    }

    /// The state columns.
    pub fn state_range(&self) -> std::ops::Range<usize> {
        2 + self.keys..2 + self.keys + self.states
    }

    /// The column of how many input rows each partial row stands for.
    pub fn count(&self) -> usize {
        2 + self.keys + self.states
    }
}

/// One window's partial rows from one batch, and their keys in row format (to route by).
pub struct Partial {
    /// The keys of the rows, in Arrow's row format (as the exchange hashes them).
    pub keys: Rows,
    /// The partial rows.
    pub batch: StreamBatch,
}

/// Folds each batch into partial rows per (window, key).
pub struct LocalWindowAggregate {
    start: PhysExpr,
    end: PhysExpr,
    key_exprs: Vec<PhysExpr>,
    aggs: Arc<AggregateSet>,
    /// Made from the first batch's key types (those the exchange hashes).
    converter: Option<RowConverter>,
    /// Refilled and drained per window of each batch (its index and accumulators reused).
    table: Option<GroupTable>,
    schema: Option<SchemaRef>,
}

impl LocalWindowAggregate {
    /// The local step of `node` (a TUMBLE, HOP or CUMULATE aggregation).
    pub fn new(node: &WindowAggregateNode) -> Self {
        let (_, key_exprs) = layout(node);
        Self {
            start: node.group_exprs[node.window_start].0.clone(),
            end: node.group_exprs[node.window_end].0.clone(),
            key_exprs,
            aggs: Arc::new(AggregateSet {
                aggregates: node.aggregates.clone(),
                filters: node.filters.clone(),
            }),
            converter: None,
            table: None,
            schema: None,
        }
    }

    /// The partial rows of `b`, one [`Partial`] per window it touches, in window order.
    pub fn partials(&mut self, b: &StreamBatch) -> Result<Vec<Partial>> {
        let batch = &b.batch;
        let n = batch.num_rows();
        let eval = |e: &PhysExpr| -> Result<ArrayRef> { Ok(e.evaluate(batch)?.into_array(n)?) };
        let w = Windowed {
            starts: ts_values(&eval(&self.start)?)?,
            ends: ts_values(&eval(&self.end)?)?,
            keys: key_arrays(&self.key_exprs, batch)?,
            input: Contribution::Rows(self.aggs.evaluate_inputs(batch)?),
        };
        if self.converter.is_none() {
            let types: Vec<_> = w.keys.iter().map(|k| k.data_type().clone()).collect();
            let converter = key_converter(&types)?;
            self.table = Some(GroupTable::new(&converter, self.aggs.clone())?);
            self.converter = Some(converter);
        }
        let mut out = Vec::new();
        for_each_window(&w, |window, _, keys, input| {
            out.push(self.fold(window, keys, input, b.ingest_ns)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// One window's rows (`keys`, `input`) as partial rows.
    fn fold(
        &mut self,
        (end, start): (i64, i64),
        keys: &[ArrayRef],
        input: &Contribution,
        ingest_ns: i64,
    ) -> Result<Partial> {
        let (Some(converter), Some(table)) = (&self.converter, &mut self.table) else {
            return Err(crate::error::EngineError::Internal(
                "local aggregation before its first batch".into(),
            ));
        };
        let rows = converter.convert_columns(keys)?;
        table.add(&rows, input)?;
        let groups = table.num_groups();
        let mut counts = vec![0i64; groups];
        for g in table.last_groups() {
            counts[*g] += 1;
        }
        let (key_rows, cols) = table.drain(converter)?;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(cols.len() + 3);
        columns.push(Arc::new(Int64Array::from_value(end, groups)));
        columns.push(Arc::new(Int64Array::from_value(start, groups)));
        columns.extend(cols);
        columns.push(Arc::new(Int64Array::from(counts)));
        let schema = self.schema_of(&columns);
        let mut batch = StreamBatch::new(RecordBatch::try_new(schema, columns)?);
        batch.ingest_ns = ingest_ns;
        Ok(Partial {
            keys: key_rows,
            batch,
        })
    }

    /// The partial rows' schema (every column nullable; made once).
    fn schema_of(&mut self, columns: &[ArrayRef]) -> SchemaRef {
        self.schema
            .get_or_insert_with(|| {
                let fields = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Field::new(format!("p{i}"), c.data_type().clone(), true));
                Arc::new(Schema::new(fields.collect::<Vec<_>>()))
            })
            .clone()
    }
}
