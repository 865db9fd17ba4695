//! Session window aggregation: per key, rows closer than the gap chain into one session
//! `[first, last + gap)`; a row that bridges two sessions merges them.
//!
//! Rows are buffered per key (as references into the batches they arrived in) until their
//! session fires (watermark >= end - 1 unit); then the session's rows are gathered with one
//! `interleave` and aggregated in a single pass. A row is late when the session it would join
//! (after merging) has already fired.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, UInt32Array};
use datafusion::arrow::compute::{interleave_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::RowConverter;

use super::groups::{key_converter, output_batch, AggregateSet, GroupTable};
use super::window_aggregate::{key_arrays, key_types, layout, ts_values, GroupCol};
use crate::error::Result;
use crate::late::{LateContext, LateRows};
use crate::message::{Message, StreamBatch};
use crate::operator::Operator;
use crate::runtime::op_metrics::{EventCounts, StateSize};
use crate::state::{decode_columns, encode_columns, StateBackend};
use crate::window::assign::{fire_time_ns, window_time, MissedWindow, TimeContext};
use weir_planner::stream_plan::{PhysExpr, WindowAggregateNode};

#[derive(Default)]
struct KeyState {
    /// Open sessions, as [start, end) wall-clock values; they never overlap.
    sessions: Vec<(i64, i64)>,
    /// Buffered rows: (batch slot, row, time).
    rows: Vec<(u32, u32, i64)>,
}

/// A buffered row of a session that fired.
struct Pick {
    slot: u32,
    row: u32,
    /// The session, [start, end) wall-clock.
    session: (i64, i64),
}

impl KeyState {
    /// Move the rows of every session that watermark `wm` has passed into `picks`.
    fn fire(&mut self, wm: i64, time: &TimeContext, picks: &mut Vec<Pick>) {
        let is_due = |s: &(i64, i64)| fire_time_ns(s.1, time) <= wm;
        if !self.sessions.iter().any(is_due) {
            return;
        }
        let fired: Vec<(i64, i64)> = self.sessions.iter().copied().filter(is_due).collect();
        self.sessions.retain(|s| !is_due(s));
        self.rows.retain(
            |&(slot, row, t)| match fired.iter().find(|s| s.0 <= t && t < s.1) {
                Some(&session) => {
                    picks.push(Pick { slot, row, session });
                    false
                }
                None => true,
            },
        );
    }
}

/// SESSION window aggregation: buffers rows per key until their session fires.
pub struct SessionAggregateOperator {
    start_expr: PhysExpr,
    key_exprs: Vec<PhysExpr>,
    layout: Vec<GroupCol>,
    converter: RowConverter,
    fire_converter: RowConverter,
    aggs: Arc<AggregateSet>,
    gap: i64,
    time: TimeContext,
    keys: HashMap<Box<[u8]>, KeyState, foldhash::fast::RandomState>,
    batches: HashMap<u32, (RecordBatch, usize)>,
    next_slot: u32,
    watermark: i64,
    schema: SchemaRef,
    input_schema: SchemaRef,
    /// Late rows dropped: counted, and kept for the late-data destination.
    late: LateRows,
}

impl SessionAggregateOperator {
    /// The operator for a SESSION window `node`, with time interpreted by `time`.
    pub fn new(node: &WindowAggregateNode, time: TimeContext) -> Result<Self> {
        let (layout, key_exprs) = layout(node);
        let mut types = key_types(node, &layout);
        let converter = key_converter(&types)?;
        types.extend([DataType::Int64, DataType::Int64]);
        let fire_converter = key_converter(&types)?;
        let gap = crate::window::assign::UnitSpec::new(&node.spec, time.unit)
            .map_err(crate::error::EngineError::Execution)?
            .session_gap()
            .ok_or_else(|| crate::error::EngineError::Internal("not a session window".into()))?;
        Ok(Self {
            start_expr: node.group_exprs[node.window_start].0.clone(),
            key_exprs,
            layout,
            converter,
            fire_converter,
            aggs: Arc::new(AggregateSet {
                aggregates: node.aggregates.clone(),
                filters: node.filters.clone(),
            }),
            gap,
            time,
            keys: HashMap::default(),
            batches: HashMap::new(),
            next_slot: 0,
            watermark: i64::MIN,
            schema: node.schema.clone(),
            input_schema: node.input.schema(),
            late: LateRows::default(),
        })
    }

    /// Fire every session that the watermark has passed.
    fn fire(&mut self, out: &mut Vec<Message>) -> Result<()> {
        let mut picks: Vec<Pick> = Vec::new();
        let (wm, time) = (self.watermark, &self.time);
        self.keys.retain(|_, ks| {
            ks.fire(wm, time, &mut picks);
            !ks.sessions.is_empty()
        });
        self.emit(picks, out)
    }

    /// Aggregate and emit the rows of fired sessions.
    fn emit(&mut self, picks: Vec<Pick>, out: &mut Vec<Message>) -> Result<()> {
        if picks.is_empty() {
            return Ok(());
        }
        let batch = self.aggregate(&picks)?;
        for p in &picks {
            self.release(p.slot);
        }
        out.push(Message::Batch(StreamBatch::new(batch)));
        Ok(())
    }

    fn release(&mut self, slot: u32) {
        if let Some(entry) = self.batches.get_mut(&slot) {
            entry.1 -= 1;
            if entry.1 == 0 {
                self.batches.remove(&slot);
            }
        }
    }

    /// Gather the picked rows and aggregate them by (key, session).
    fn aggregate(&self, picks: &[Pick]) -> Result<RecordBatch> {
        let mut slots: Vec<u32> = picks.iter().map(|p| p.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        let batches: Vec<&RecordBatch> = slots.iter().map(|s| &self.batches[s].0).collect();
        let idx: Vec<(usize, usize)> = picks
            .iter()
            .map(|p| (slots.binary_search(&p.slot).unwrap_or(0), p.row as usize))
            .collect();
        let rows = interleave_record_batch(&batches, &idx)?;
        let starts = picks.iter().map(|p| p.session.0);
        let starts: ArrayRef = Arc::new(Int64Array::from_iter_values(starts));
        let ends: ArrayRef = Arc::new(Int64Array::from_iter_values(
            picks.iter().map(|p| p.session.1),
        ));
        let mut keys = key_arrays(&self.key_exprs, &rows)?;
        keys.extend([starts, ends]);
        let key_rows = self.fire_converter.convert_columns(&keys)?;
        let mut table = GroupTable::new(&self.fire_converter, self.aggs.clone())?;
        table.update(&key_rows, &self.aggs.evaluate_inputs(&rows)?)?;
        let (group_rows, aggs) = table.emit()?;
        let cols = self.fire_converter.convert_rows(&group_rows)?;
        self.output(cols, aggs)
    }

    fn output(&self, cols: Vec<ArrayRef>, aggs: Vec<ArrayRef>) -> Result<RecordBatch> {
        let n_keys = cols.len() - 2;
        let (start, end) = (cols[n_keys].clone(), cols[n_keys + 1].clone());
        let end_vals = ts_values(&end)?;
        let times: ArrayRef = Arc::new(Int64Array::from_iter_values(
            end_vals
                .values()
                .iter()
                .map(|e| window_time(*e, &self.time)),
        ));
        let mut out = Vec::with_capacity(self.schema.fields().len());
        for l in &self.layout {
            out.push(match l {
                GroupCol::Start => start.clone(),
                GroupCol::End => end.clone(),
                GroupCol::Time => times.clone(),
                GroupCol::Key(k) => cols[*k].clone(),
            });
        }
        out.extend(aggs);
        output_batch(&self.schema, out)
    }
}

/// The session `[t, t + gap)` merged with every open session it touches.
fn merged(sessions: &[(i64, i64)], t: i64, gap: i64) -> (i64, i64) {
    let (mut s, mut e) = (t, t.saturating_add(gap));
    for &(a, b) in sessions {
        if a < e && s < b {
            s = s.min(a);
            e = e.max(b);
        }
    }
    (s, e)
}

impl Operator for SessionAggregateOperator {
    fn name(&self) -> &'static str {
        "SessionWindowAggregate"
    }

    /// Each row first fires its key's sessions that the watermark at that row has passed (as
    /// a job reading one row at a time would have), so the result does not depend on how rows
    /// are batched; then it opens a session or joins (and merges) open ones, or is late.
    fn process_batch(&mut self, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let b = &batch.batch;
        let n = b.num_rows();
        let times = ts_values(&self.start_expr.evaluate(b)?.into_array(n)?)?;
        let key_rows = self
            .converter
            .convert_columns(&key_arrays(&self.key_exprs, b)?)?;
        let slot = self.next_slot;
        let (mut kept, mut late, mut picks) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            if times.is_null(i) {
                continue;
            }
            let t = times.value(i);
            let row_wm = batch
                .row_watermarks
                .as_ref()
                .map_or(i64::MIN, |w| w.value(i))
                .max(self.watermark);
            let ks = self
                .keys
                .entry(key_rows.row(i).as_ref().into())
                .or_default();
            ks.fire(row_wm, &self.time, &mut picks);
            let (s, e) = merged(&ks.sessions, t, self.gap);
            if fire_time_ns(e, &self.time) <= row_wm {
                late.push(MissedWindow {
                    row: i as u32,
                    start: Some(s),
                    end: Some(e),
                });
                continue;
            }
            ks.sessions.retain(|&(a, b)| !(a < e && s < b));
            ks.sessions.push((s, e));
            ks.rows.push((slot, kept.len() as u32, t));
            kept.push(i as u32);
        }
        let cx = LateContext {
            operator: "SessionWindowAggregate",
            reason: "the session the row belongs to had fired",
            unit: self.time.unit,
        };
        self.late.push(b, &late, &cx)?;
        let count = kept.len();
        if count > 0 {
            // Only the rows a session holds stay buffered (not late or NULL-time ones).
            let rows = match count == n {
                true => b.clone(),
                false => take_record_batch(b, &UInt32Array::from(kept))?,
            };
            self.batches.insert(slot, (rows, count));
            self.next_slot = self.next_slot.wrapping_add(1);
        }
        self.emit(picks, out)
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<Message>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        self.fire(out)?;
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    fn is_stateful(&self) -> bool {
        true
    }

    fn late_rows(&mut self) -> Option<&mut LateRows> {
        Some(&mut self.late)
    }

    fn counts(&self) -> EventCounts {
        EventCounts {
            late_rows: Some(self.late.count()),
            ..Default::default()
        }
    }

    /// Open sessions, keys, and the bytes of the keys, their sessions and row references and
    /// of every batch a buffered row is in.
    fn state_size(&self) -> StateSize {
        use std::mem::size_of;
        let per_key = size_of::<(Box<[u8]>, KeyState)>() + 1;
        let keys: usize = self
            .keys
            .iter()
            .map(|(k, ks)| {
                k.len()
                    + ks.sessions.capacity() * size_of::<(i64, i64)>()
                    + ks.rows.capacity() * size_of::<(u32, u32, i64)>()
            })
            .sum();
        let batches: usize = self
            .batches
            .values()
            .map(|(b, _)| b.get_array_memory_size())
            .sum();
        StateSize {
            open_windows: self.keys.values().map(|ks| ks.sessions.len() as u64).sum(),
            keys: self.keys.len() as u64,
            bytes: (keys + self.keys.capacity() * per_key + batches) as u64,
        }
    }

    /// The rows of every open session, gathered into one batch (sessions are rebuilt from the
    /// rows' times on restore), and the watermark.
    fn snapshot(&mut self, state: &mut dyn StateBackend) -> Result<()> {
        state.put(b"m/watermark", &self.watermark.to_be_bytes())?;
        let mut slots: Vec<u32> = self.batches.keys().copied().collect();
        slots.sort_unstable();
        let idx: Vec<(usize, usize)> = self
            .keys
            .values()
            .flat_map(|ks| ks.rows.iter())
            .map(|(slot, row, _)| (slots.binary_search(slot).unwrap_or(0), *row as usize))
            .collect();
        if idx.is_empty() {
            return state.delete(b"rows");
        }
        let batches: Vec<&RecordBatch> = slots.iter().map(|s| &self.batches[s].0).collect();
        let rows = interleave_record_batch(&batches, &idx)?;
        state.put(b"rows", &encode_columns(rows.columns())?)
    }

    fn restore(&mut self, state: &dyn StateBackend) -> Result<()> {
        if let Some(rows) = state.get(b"rows")? {
            let cols = decode_columns(&rows)?;
            let batch = RecordBatch::try_new(self.input_schema.clone(), cols)?;
            self.process_batch(StreamBatch::new(batch), &mut Vec::new())?;
        }
        if let Some(wm) = state.get(b"m/watermark")? {
            let wm: [u8; 8] = wm.as_slice().try_into().unwrap_or(i64::MIN.to_be_bytes());
            self.watermark = i64::from_be_bytes(wm);
        }
        Ok(())
    }
}
