//! OVER aggregates: each row with aggregates over its partition's rows in a frame before it
//! (`RANGE BETWEEN INTERVAL .. PRECEDING AND CURRENT ROW` or `ROWS BETWEEN n PRECEDING AND
//! CURRENT ROW`), in event-time order.
//!
//! A row waits until the watermark passes its time (no earlier row of its partition can come
//! after that) and is then emitted once, append-only. A row at or below the watermark in force
//! before it is late: dropped and counted. Aggregation is incremental: each partition keeps
//! DataFusion sliding accumulators and the rows of its frame; rows entering the frame are
//! added, rows leaving it retracted (MIN and MAX keep their own value multiset). FIRST_VALUE
//! and LAST_VALUE are read off the frame itself: its first or last non-NULL value, as Flink's
//! (so they need no accumulator). In a RANGE frame every row with the same time is in the
//! frame.
//!
//! A checkpoint holds the rows still to be emitted and the rows of every frame; a restore
//! replays the frames into fresh accumulators. A RANGE frame's partition whose newest row is a
//! frame's length behind the watermark is dropped, so state follows the keys seen recently.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BinaryArray, BooleanArray};
use datafusion::arrow::compute::{concat_batches, filter, interleave_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::rows::{emit_at, keys_converter, mask, own_watermark};
use super::window_aggregate::key_arrays;
use crate::error::{EngineError, Result};
use crate::late::{LateContext, LateRows};
use crate::message::{Message, StreamBatch, WATERMARK_MIN};
use crate::observe::op_metrics::{EventCounts, StateSize};
use crate::operator::Operator;
use crate::state::{decode_columns, encode_columns, StateBackend};
use crate::window::kernels::{timestamp_values, to_ns};
use weir_planner::stream_plan::{OverFrame, OverNode, PhysExpr};

const PENDING: &[u8] = b"o/pending";
const FRAMES: &[u8] = b"o/frames";

/// One aggregate's arguments over a batch, and its FILTER's mask.
struct Arguments {
    values: Vec<ArrayRef>,
    mask: Option<BooleanArray>,
}

impl Arguments {
    /// The arguments of rows `offset..offset + len`, FILTER applied.
    fn slice(&self, offset: usize, len: usize) -> Result<Vec<ArrayRef>> {
        let values = self.values.iter().map(|v| v.slice(offset, len));
        match &self.mask {
            None => Ok(values.collect()),
            Some(m) => {
                let m = m.slice(offset, len);
                values.map(|v| Ok(filter(&v, &m)?)).collect()
            }
        }
    }
}

/// Rows of one time (a RANGE frame) or one row (ROWS) that entered a partition's frame.
struct Entry {
    time: i64,
    /// The rows themselves (for checkpoints).
    rows: RecordBatch,
    /// Per aggregate: its arguments over those rows (FILTER applied), to retract them.
    args: Vec<Vec<ArrayRef>>,
}

/// An OVER function read off the frame's rows instead of accumulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Positional {
    /// FIRST_VALUE: the frame's first non-NULL value.
    First,
    /// LAST_VALUE: the frame's last non-NULL value.
    Last,
}

impl Positional {
    fn of(a: &AggregateFunctionExpr) -> Option<Positional> {
        match a.fun().name() {
            "first_value" => Some(Positional::First),
            "last_value" => Some(Positional::Last),
            _ => None,
        }
    }

    /// The value of aggregate `k` over `frame`: its first or last non-NULL argument, or NULL of
    /// type `t`.
    fn value(self, frame: &VecDeque<Entry>, k: usize, t: &DataType) -> Result<ScalarValue> {
        let pick = |e: &Entry| {
            let a = &e.args[k][0];
            let mut valid = (0..a.len()).filter(|i| a.is_valid(*i));
            match self {
                Positional::First => valid.next(),
                Positional::Last => valid.next_back(),
            }
            .map(|i| (a.clone(), i))
        };
        let found = match self {
            Positional::First => frame.iter().find_map(pick),
            Positional::Last => frame.iter().rev().find_map(pick),
        };
        Ok(match found {
            Some((a, i)) => ScalarValue::try_from_array(&a, i)?,
            None => ScalarValue::try_from(t)?,
        })
    }
}

/// One partition's frame and accumulators.
struct Partition {
    key: Box<[u8]>,
    accs: Vec<Box<dyn Accumulator>>,
    frame: VecDeque<Entry>,
    rows_in_frame: usize,
    /// The newest time of a row that came (emitted or not).
    last_time: i64,
    /// False once dropped for idleness (the slot waits to be reused).
    alive: bool,
}

/// Rows not emitted yet: a batch, their times and partitions.
struct Pending {
    batch: RecordBatch,
    times: Vec<i64>,
    parts: Vec<u32>,
}

/// Rows due for emission, sorted by partition and time.
struct Due {
    rows: RecordBatch,
    parts: Vec<u32>,
    times: Vec<i64>,
}

/// OVER aggregation of one window.
pub struct OverAggregateOperator {
    partition: Vec<PhysExpr>,
    time_index: usize,
    unit: datafusion::arrow::datatypes::TimeUnit,
    frame: OverFrame,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Per aggregate: read off the frame (FIRST_VALUE, LAST_VALUE) rather than accumulated.
    positional: Vec<Option<Positional>>,
    filters: Vec<Option<PhysExpr>>,
    converter: RowConverter,
    index: HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>,
    parts: Vec<Partition>,
    pending: Vec<Pending>,
    input_schema: SchemaRef,
    schema: SchemaRef,
    watermark: i64,
    late: LateRows,
    /// Slots of dropped partitions, to reuse.
    free: Vec<u32>,
    /// The watermark at the last look for idle partitions.
    swept_at: i64,
}

impl OverAggregateOperator {
    /// The operator for `node`.
    pub fn new(node: &OverNode) -> Result<Self> {
        let input_schema = node.input.schema();
        Ok(Self {
            partition: node.partition.clone(),
            time_index: node.time_index,
            unit: node.unit,
            frame: node.frame,
            aggregates: node.aggregates.clone(),
            positional: node.aggregates.iter().map(|a| Positional::of(a)).collect(),
            filters: node.filters.clone(),
            converter: keys_converter(&node.partition, &input_schema)?,
            index: HashMap::default(),
            parts: Vec::new(),
            pending: Vec::new(),
            input_schema,
            schema: node.schema.clone(),
            watermark: WATERMARK_MIN,
            late: LateRows::default(),
            free: Vec::new(),
            swept_at: WATERMARK_MIN,
        })
    }

    /// The partition of each row of `batch` (created when new), and the rows' times.
    fn place(&mut self, batch: &RecordBatch) -> Result<(Vec<u32>, Vec<i64>)> {
        let keys = key_arrays(&self.partition, batch)?;
        let rows: Rows = self.converter.convert_columns(&keys)?;
        let mut parts = Vec::with_capacity(rows.num_rows());
        for row in rows.iter() {
            let id = match self.index.get(row.as_ref()) {
                Some(id) => *id,
                None => self.new_partition(row.as_ref())?,
            };
            parts.push(id);
        }
        let ts = batch.column(self.time_index);
        let raw = timestamp_values(ts, self.unit).map_err(EngineError::Execution)?;
        let times: Vec<i64> = raw.iter().map(|v| to_ns(*v, self.unit)).collect();
        for (p, t) in parts.iter().zip(&times) {
            let part = &mut self.parts[*p as usize];
            part.last_time = part.last_time.max(*t);
        }
        Ok((parts, times))
    }

    fn new_partition(&mut self, key: &[u8]) -> Result<u32> {
        // FIRST_VALUE and LAST_VALUE are read off the frame: their accumulator is never fed.
        let accs = self
            .aggregates
            .iter()
            .zip(&self.positional)
            .map(|(a, p)| match p {
                Some(_) => Ok(a.create_accumulator()?),
                None => Ok(a.create_sliding_accumulator()?),
            })
            .collect::<Result<Vec<_>>>()?;
        let part = Partition {
            key: key.into(),
            accs,
            frame: VecDeque::new(),
            rows_in_frame: 0,
            last_time: WATERMARK_MIN,
            alive: true,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.parts[id as usize] = part;
                id
            }
            None => {
                self.parts.push(part);
                self.parts.len() as u32 - 1
            }
        };
        self.index.insert(key.into(), id);
        Ok(id)
    }

    /// Per aggregate: its arguments over `batch`, and its FILTER's mask.
    fn arguments(&self, batch: &RecordBatch) -> Result<Vec<Arguments>> {
        let n = batch.num_rows();
        let mut out = Vec::with_capacity(self.aggregates.len());
        for (a, f) in self.aggregates.iter().zip(&self.filters) {
            let values = super::groups::input_exprs(a)
                .iter()
                .map(|e| Ok(e.evaluate(batch)?.into_array(n)?))
                .collect::<Result<Vec<ArrayRef>>>()?;
            let mask = f.as_ref().map(|f| mask(f, batch)).transpose()?;
            out.push(Arguments { values, mask });
        }
        Ok(out)
    }

    /// Add `rows` (of one time, or one row) to partition `p`'s frame, take out what left it,
    /// and give the aggregates' values for them.
    /// `all` holds the arguments of a batch that `rows` is the slice at `offset` of.
    fn advance(
        &mut self,
        p: usize,
        time: i64,
        rows: RecordBatch,
        all: &[Arguments],
        offset: usize,
    ) -> Result<Vec<ScalarValue>> {
        let len = rows.num_rows();
        let args = all
            .iter()
            .map(|a| a.slice(offset, len))
            .collect::<Result<Vec<_>>>()?;
        let frame = self.frame;
        let part = &mut self.parts[p];
        let accumulated = |k: &usize| self.positional[*k].is_none();
        for k in (0..args.len()).filter(accumulated) {
            part.accs[k].update_batch(&args[k])?;
        }
        part.rows_in_frame += rows.num_rows();
        part.frame.push_back(Entry { time, rows, args });
        loop {
            let leaves = match (frame, part.frame.front()) {
                (OverFrame::Range(r), Some(e)) => e.time < time.saturating_sub(r),
                (OverFrame::Rows(n), Some(e)) => {
                    part.rows_in_frame - e.rows.num_rows() > n as usize
                }
                (_, None) => false,
            };
            if !leaves {
                break;
            }
            let e = part.frame.pop_front().expect("front");
            part.rows_in_frame -= e.rows.num_rows();
            for k in (0..e.args.len()).filter(accumulated) {
                part.accs[k].retract_batch(&e.args[k])?;
            }
        }
        let mut values = Vec::with_capacity(part.accs.len());
        for (k, acc) in part.accs.iter_mut().enumerate() {
            values.push(match self.positional[k] {
                Some(p) => p.value(&part.frame, k, self.aggregates[k].field().data_type())?,
                None => acc.evaluate()?,
            });
        }
        Ok(values)
    }

    /// The pending rows at or below `wm`, in partition and time order, taken out of pending.
    fn due(&mut self, wm: i64) -> Result<Option<Due>> {
        let mut picks = Vec::new();
        for (b, p) in self.pending.iter().enumerate() {
            for (i, t) in p.times.iter().enumerate() {
                if *t <= wm {
                    picks.push((p.parts[i], *t, b, i));
                }
            }
        }
        if picks.is_empty() {
            return Ok(None);
        }
        picks.sort_unstable();
        let batches: Vec<&RecordBatch> = self.pending.iter().map(|p| &p.batch).collect();
        let idx: Vec<(usize, usize)> = picks.iter().map(|p| (p.2, p.3)).collect();
        let rows = interleave_record_batch(&batches, &idx)?;
        let parts = picks.iter().map(|p| p.0).collect();
        let times = picks.iter().map(|p| p.1).collect();
        self.keep_pending_after(wm)?;
        Ok(Some(Due { rows, parts, times }))
    }

    fn keep_pending_after(&mut self, wm: i64) -> Result<()> {
        let mut kept = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            let mask = BooleanArray::from_iter(p.times.iter().map(|t| Some(*t > wm)));
            if mask.true_count() == 0 {
                continue;
            }
            let keep = |i: usize| mask.value(i);
            kept.push(Pending {
                batch: datafusion::arrow::compute::filter_record_batch(&p.batch, &mask)?,
                times: (0..p.times.len())
                    .filter(|i| keep(*i))
                    .map(|i| p.times[i])
                    .collect(),
                parts: (0..p.parts.len())
                    .filter(|i| keep(*i))
                    .map(|i| p.parts[i])
                    .collect(),
            });
        }
        self.pending = kept;
        Ok(())
    }

    /// Emit the due rows (sorted by partition and time) with their aggregates.
    fn emit_due(&mut self, due: Due, out: &mut Vec<Message>) -> Result<()> {
        let Due { rows, parts, times } = due;
        let args = self.arguments(&rows)?;
        let mut values: Vec<Vec<ScalarValue>> = vec![Vec::new(); self.aggregates.len()];
        let mut start = 0;
        while start < rows.num_rows() {
            let same = |i: usize| {
                parts[i] == parts[start]
                    && times[i] == times[start]
                    && matches!(self.frame, OverFrame::Range(_))
            };
            let mut end = start + 1;
            while end < rows.num_rows() && same(end) {
                end += 1;
            }
            let group = rows.slice(start, end - start);
            let v = self.advance(parts[start] as usize, times[start], group, &args, start)?;
            for (col, x) in values.iter_mut().zip(v) {
                col.extend(std::iter::repeat_n(x, end - start));
            }
            start = end;
        }
        let mut cols = rows.columns().to_vec();
        for (col, field) in values.into_iter().zip(&self.schema.fields()[cols.len()..]) {
            let arr = ScalarValue::iter_to_array(col)?;
            cols.push(datafusion::arrow::compute::cast(&arr, field.data_type())?);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), cols)?;
        emit_at(batch, self.watermark, out);
        Ok(())
    }

    /// A RANGE frame's partitions whose newest row is at least the frame's length before the
    /// watermark: any row still to come would empty their frame, so they go (their slot is
    /// reused). Looked at each time the watermark has moved a quarter of the frame. (A ROWS
    /// frame keeps its last rows for the partition's next row, however late.)
    fn drop_idle_partitions(&mut self, wm: i64) {
        let OverFrame::Range(range) = self.frame else {
            return;
        };
        if wm.saturating_sub(self.swept_at) < (range / 4).max(1) {
            return;
        }
        self.swept_at = wm;
        let horizon = wm.saturating_sub(range);
        for (id, p) in self.parts.iter_mut().enumerate() {
            if p.alive && p.last_time <= horizon {
                self.index.remove(&p.key);
                *p = Partition {
                    key: Box::default(),
                    accs: Vec::new(),
                    frame: VecDeque::new(),
                    rows_in_frame: 0,
                    last_time: WATERMARK_MIN,
                    alive: false,
                };
                self.free.push(id as u32);
            }
        }
    }

    fn frame_rows(&self) -> usize {
        self.parts.iter().map(|p| p.rows_in_frame).sum()
    }
}

impl Operator for OverAggregateOperator {
    fn name(&self) -> &'static str {
        "OverAggregate"
    }

    fn process_batch(&mut self, b: StreamBatch, _out: &mut Vec<Message>) -> Result<()> {
        let (parts, times) = self.place(&b.batch)?;
        let ts = b.batch.column(self.time_index);
        let keep: Vec<bool> = (0..times.len())
            .map(|i| {
                let own = own_watermark(&b, i, self.watermark);
                ts.is_valid(i) && times[i] > own
            })
            .collect();
        let late: Vec<u32> = (0..keep.len() as u32)
            .filter(|i| !keep[*i as usize])
            .collect();
        let cx = LateContext {
            operator: "OverAggregate",
            reason: "the row was at or below the watermark (or had no event time)",
            unit: self.unit,
        };
        self.late.push_rows(&b.batch, &late, &cx)?;
        if late.len() == keep.len() {
            return Ok(());
        }
        let mask = BooleanArray::from(keep.clone());
        let pick = |v: &[i64]| (0..v.len()).filter(|i| keep[*i]).map(|i| v[i]).collect();
        self.pending.push(Pending {
            batch: datafusion::arrow::compute::filter_record_batch(&b.batch, &mask)?,
            times: pick(&times),
            parts: (0..parts.len())
                .filter(|i| keep[*i])
                .map(|i| parts[i])
                .collect(),
        });
        Ok(())
    }

    fn on_watermark(&mut self, wm: i64, out: &mut Vec<Message>) -> Result<()> {
        if wm <= self.watermark {
            return Ok(());
        }
        if let Some(due) = self.due(wm)? {
            self.emit_due(due, out)?;
        }
        self.watermark = wm;
        self.drop_idle_partitions(wm);
        out.push(Message::Watermark(wm));
        Ok(())
    }

    fn state_size(&self) -> StateSize {
        let pending: usize = self
            .pending
            .iter()
            .map(|p| p.batch.get_array_memory_size())
            .sum();
        let pending_rows: usize = self.pending.iter().map(|p| p.batch.num_rows()).sum();
        let per_row = pending.checked_div(pending_rows).unwrap_or(64);
        StateSize {
            open_windows: 0,
            keys: self.index.len() as u64,
            bytes: (pending + self.frame_rows() * per_row) as u64,
        }
    }

    fn counts(&self) -> EventCounts {
        EventCounts {
            late_rows: Some(self.late.count()),
            ..Default::default()
        }
    }

    fn is_stateful(&self) -> bool {
        true
    }

    fn late_rows(&mut self) -> Option<&mut LateRows> {
        Some(&mut self.late)
    }

    fn snapshot(&mut self, state: &mut dyn StateBackend) -> Result<()> {
        let pending: Vec<&RecordBatch> = self.pending.iter().map(|p| &p.batch).collect();
        let pending = concat_batches(&self.input_schema, pending)?;
        state.put(PENDING, &encode_columns(pending.columns())?)?;
        let mut keys = Vec::new();
        let mut frames = Vec::new();
        for p in &self.parts {
            for e in &p.frame {
                keys.extend(std::iter::repeat_n(p.key.as_ref(), e.rows.num_rows()));
                frames.push(&e.rows);
            }
        }
        let frames = concat_batches(&self.input_schema, frames)?;
        let mut cols = frames.columns().to_vec();
        cols.push(Arc::new(BinaryArray::from_iter_values(keys)));
        state.put(FRAMES, &encode_columns(&cols)?)
    }

    /// Waiting rows and frames split by partition key (the frames' last column, the key's
    /// bytes, is not read: the partition expressions are evaluated over the rows).
    fn state_shape(&self) -> Option<crate::state::rescale::StateShape> {
        use crate::state::rescale::{KeyOf, Rule, StateShape};
        let columns = |prefix: &[u8]| Rule::Columns {
            prefix: prefix.to_vec(),
            key: KeyOf::Exprs(self.partition.clone()),
        };
        Some(StateShape {
            rules: vec![columns(PENDING), columns(FRAMES)],
        })
    }

    fn restore(&mut self, state: &dyn StateBackend) -> Result<()> {
        if let Some(bytes) = state.get(FRAMES)? {
            let mut cols = decode_columns(&bytes)?;
            cols.pop();
            let rows = RecordBatch::try_new(self.input_schema.clone(), cols)?;
            let (parts, times) = self.place(&rows)?;
            let mut order: Vec<usize> = (0..rows.num_rows()).collect();
            order.sort_by_key(|i| (parts[*i], times[*i]));
            let args = self.arguments(&rows)?;
            for i in order {
                self.advance(parts[i] as usize, times[i], rows.slice(i, 1), &args, i)?;
            }
        }
        if let Some(bytes) = state.get(PENDING)? {
            let batch = RecordBatch::try_new(self.input_schema.clone(), decode_columns(&bytes)?)?;
            if batch.num_rows() > 0 {
                let (parts, times) = self.place(&batch)?;
                self.pending.push(Pending {
                    batch,
                    times,
                    parts,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "over_aggregate_tests.rs"]
mod tests;
