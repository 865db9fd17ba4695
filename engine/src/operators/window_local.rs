//! Local pre-aggregation of a window aggregation's input, before the keyed exchange (Flink's
//! local-global aggregation, `table.optimizer.agg-phase-strategy`).
//!
//! Each input batch is folded, on the input's own subtask, into one partial row per (window,
//! key): the window's end and start, the key columns, every aggregate's state columns (what
//! DataFusion's accumulators give as `state`) and how many input rows the partial row stands
//! for. So a batch of 8,192 readings of 1,000 sensors crosses the exchange as about 1,000 rows,
//! and the global aggregation ([`super::window_aggregate`]) merges the states instead of
//! accumulating rows. Partial rows are kept across batches, as Flink's mini-batches, and go
//! out when a watermark reaches their window's firing time (just before it, so the global step
//! never finds them late), before a checkpoint barrier or the end, and otherwise once a second
//! or a million input rows after the first row they hold, so the global step's state and
//! metrics stay current for long windows. Then one partial row per window and key leaves the
//! subtask, however many batches it saw. Nothing is kept across a barrier, so the
//! checkpointed state is the global aggregation's, the same as without this step.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows};

use super::groups::{key_converter, AggregateSet, Contribution, GroupTable};
use super::window_aggregate::{for_each_window, key_arrays, layout, ts_values, Windowed};
use crate::error::Result;
use crate::message::{Message, StreamBatch};
use crate::window::kernels::{fire_time_ns, TimeContext};
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

/// How long partial rows are held at most, counted from the first row held.
const HOLD_AT_MOST: Duration = Duration::from_secs(1);

/// How many input rows are folded at most before every partial row goes out.
const HOLD_ROWS: usize = 1_000_000;

/// How many emptied tables are kept for the next windows (about as many as are open at once).
const SPARE_TABLES: usize = 4;

/// One window's partial aggregates so far.
struct OpenWindow {
    table: GroupTable,
    /// How many input rows each group stands for.
    counts: Vec<i64>,
}

/// Folds batches into partial rows per (window, key), kept until they are due.
pub struct LocalWindowAggregate {
    start: PhysExpr,
    end: PhysExpr,
    key_exprs: Vec<PhysExpr>,
    aggs: Arc<AggregateSet>,
    time: TimeContext,
    /// Made from the first batch's key types (those the exchange hashes).
    converter: Option<RowConverter>,
    /// The open windows, by (end, start).
    windows: BTreeMap<(i64, i64), OpenWindow>,
    /// Tables of windows gone out, emptied with their capacity kept, for the next windows.
    spare: Vec<GroupTable>,
    /// The latest ingestion time among the batches folded since the last flush.
    ingest_ns: i64,
    /// When the first row held now was folded, and how many rows are held.
    held_since: Option<Instant>,
    held_rows: usize,
    schema: Option<SchemaRef>,
}

impl LocalWindowAggregate {
    /// The local step of `node` (a TUMBLE, HOP or CUMULATE aggregation).
    pub fn new(node: &WindowAggregateNode, time: TimeContext) -> Self {
        let (_, key_exprs) = layout(node);
        Self {
            start: node.group_exprs[node.window_start].0.clone(),
            end: node.group_exprs[node.window_end].0.clone(),
            key_exprs,
            aggs: Arc::new(AggregateSet {
                aggregates: node.aggregates.clone(),
                filters: node.filters.clone(),
            }),
            time,
            converter: None,
            windows: BTreeMap::new(),
            spare: Vec::new(),
            ingest_ns: 0,
            held_since: None,
            held_rows: 0,
            schema: None,
        }
    }

    /// Fold the rows of `b` into their windows' partial aggregates.
    pub fn fold(&mut self, b: &StreamBatch) -> Result<()> {
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
            self.converter = Some(key_converter(&types)?);
        }
        self.ingest_ns = self.ingest_ns.max(b.ingest_ns);
        self.held_since.get_or_insert_with(Instant::now);
        self.held_rows += n;
        for_each_window(&w, |window, _, keys, input| self.add(window, keys, input))
    }

    /// Add one window's rows (`keys`, `input`).
    fn add(&mut self, window: (i64, i64), keys: &[ArrayRef], input: &Contribution) -> Result<()> {
        let Some(converter) = &self.converter else {
            return Err(crate::error::EngineError::Internal(
                "local aggregation before its first batch".into(),
            ));
        };
        let open = match self.windows.entry(window) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let table = match self.spare.pop() {
                    Some(t) => t,
                    None => GroupTable::new(converter, self.aggs.clone())?,
                };
                v.insert(OpenWindow {
                    table,
                    counts: Vec::new(),
                })
            }
        };
        open.table.add(&converter.convert_columns(keys)?, input)?;
        open.counts.resize(open.table.num_groups(), 0);
        for g in open.table.last_groups() {
            open.counts[*g] += 1;
        }
        Ok(())
    }

    /// Every window's partial rows when they have been held long enough (a second, or a
    /// million input rows); else none.
    pub fn due_now(&mut self) -> Result<Vec<Partial>> {
        let long = self.held_since.is_some_and(|t| t.elapsed() >= HOLD_AT_MOST);
        match long || self.held_rows >= HOLD_ROWS {
            true => self.flush(self.windows.keys().copied().collect()),
            false => Ok(Vec::new()),
        }
    }

    /// The partial rows due before `m` passes (one [`Partial`] per window, in window order):
    /// the windows a watermark fires, and every window before a barrier or the end.
    pub fn due_before(&mut self, m: &Message) -> Result<Vec<Partial>> {
        let due: Vec<(i64, i64)> = match m {
            Message::Watermark(w) => {
                let time = &self.time;
                let fired = |k: &&(i64, i64)| fire_time_ns(k.0, time) <= *w;
                self.windows.keys().filter(fired).copied().collect()
            }
            Message::Barrier(_) | Message::EndOfStream => self.windows.keys().copied().collect(),
            Message::Batch(_) | Message::Idle => Vec::new(),
        };
        self.flush(due)
    }

    /// The partial rows of windows `due`, taken out.
    fn flush(&mut self, due: Vec<(i64, i64)>) -> Result<Vec<Partial>> {
        let mut out = Vec::with_capacity(due.len());
        for window in due {
            if let Some(open) = self.windows.remove(&window) {
                out.push(self.partial(window, open)?);
            }
        }
        if self.windows.is_empty() {
            self.held_since = None;
            self.held_rows = 0;
        }
        Ok(out)
    }

    /// A window's partial rows.
    fn partial(&mut self, (end, start): (i64, i64), mut open: OpenWindow) -> Result<Partial> {
        let Some(converter) = &self.converter else {
            return Err(crate::error::EngineError::Internal("no converter".into()));
        };
        let groups = open.table.num_groups();
        let (key_rows, cols) = open.table.drain(converter)?;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(cols.len() + 3);
        columns.push(Arc::new(Int64Array::from_value(end, groups)));
        columns.push(Arc::new(Int64Array::from_value(start, groups)));
        columns.extend(cols);
        columns.push(Arc::new(Int64Array::from(open.counts)));
        if self.spare.len() < SPARE_TABLES {
            self.spare.push(open.table);
        }
        let schema = self.schema_of(&columns);
        let mut batch = StreamBatch::new(RecordBatch::try_new(schema, columns)?);
        batch.ingest_ns = self.ingest_ns;
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::DataType;

    use super::*;
    use crate::message::Barrier;

    const MS: i64 = 1_000_000;

    fn node() -> WindowAggregateNode {
        crate::operators::minute_counts()
    }

    /// Rows of `keys` in the minute starting at `minute`.
    fn rows(node: &WindowAggregateNode, keys: &[&str], minute: i64) -> StreamBatch {
        let schema = node.input.schema();
        let n = keys.len();
        let start = minute * 60_000;
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                let ms = |v: i64| Arc::new(TimestampMillisecondArray::from(vec![v; n])) as ArrayRef;
                match (f.name().as_str(), f.data_type()) {
                    (_, DataType::Utf8) => Arc::new(StringArray::from(keys.to_vec())),
                    ("window_end", _) => ms(start + 60_000),
                    ("window_time", _) => ms(start + 59_999),
                    _ => ms(start),
                }
            })
            .collect();
        StreamBatch::new(RecordBatch::try_new(schema, cols).unwrap())
    }

    /// (window start in the time column's unit, ms, and rows) of each partial.
    fn shape(parts: &[Partial]) -> Vec<(i64, usize)> {
        let start = |p: &Partial| {
            let c = p.batch.batch.column(PartialLayout::START);
            let c = c.as_any().downcast_ref::<Int64Array>().expect("start");
            c.value(0)
        };
        parts
            .iter()
            .map(|p| (start(p), p.batch.num_rows()))
            .collect()
    }

    #[test]
    fn partial_rows_wait_for_the_watermark_that_fires_their_window_or_a_barrier() {
        let node = node();
        let time = crate::runtime::job::time_context(&node.time).unwrap();
        let mut local = LocalWindowAggregate::new(&node, time);
        local.fold(&rows(&node, &["a", "b", "a"], 0)).unwrap();
        local.fold(&rows(&node, &["b", "a"], 0)).unwrap();
        local.fold(&rows(&node, &["c"], 1)).unwrap();
        assert!(local.due_now().unwrap().is_empty(), "held: young and few");
        let before = |local: &mut LocalWindowAggregate, m: Message| local.due_before(&m).unwrap();
        assert!(before(&mut local, Message::Watermark(59_998 * MS)).is_empty());
        // The first minute fires at 59.999 s: its two keys, one partial row each.
        let fired = before(&mut local, Message::Watermark(59_999 * MS));
        assert_eq!(shape(&fired), vec![(0, 2)]);
        let counts = fired[0]
            .batch
            .batch
            .column(PartialLayout { keys: 1, states: 1 }.count());
        let counts = counts.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(counts.values().iter().sum::<i64>(), 5, "rows folded");
        // A barrier takes the rest, so nothing is held across a checkpoint.
        let barrier = Message::Barrier(Barrier { checkpoint_id: 1 });
        assert_eq!(shape(&before(&mut local, barrier)), vec![(60_000, 1)]);
        assert!(before(&mut local, Message::EndOfStream).is_empty());
    }
}
