//! Session window aggregation: per key, rows closer than the gap chain into one session
//! `[first, last + gap)`; a row that bridges two sessions merges them.
//!
//! Rows are buffered per key (as references into the batches they arrived in, kept by
//! [`super::row_slots`], which checkpoints them incrementally and spills them beyond the
//! memory limit) until their session fires (watermark >= end - 1 unit); then the session's rows
//! are gathered with one `interleave` and aggregated in a single pass. A row is late when the
//! session it would join (after merging) has already fired.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows};

use super::groups::{key_converter, output_batch, AggregateSet, GroupTable};
use super::row_slots::RowSlots;
use super::session_pending::PendingRows;
use super::window_aggregate::{key_arrays, key_types, layout, ts_values, GroupCol};
use crate::error::Result;
use crate::late::{LateContext, LateRows};
use crate::message::{Message, StreamBatch};
use crate::observe::metrics::JobMetrics;
use crate::observe::op_metrics::{EventCounts, StateSize};
use crate::operator::Operator;
use crate::state::{decode_columns, SharedState, StateBackend};
use crate::window::kernels::{fire_time_ns, window_time, MissedWindow, TimeContext};
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
    /// Hold a row at time `t` (not late): open a session or join and merge open ones.
    fn admit(&mut self, session: (i64, i64), slot: u32, row: u32, t: i64) {
        let (s, e) = session;
        self.sessions.retain(|&(a, b)| !(a < e && s < b));
        self.sessions.push((s, e));
        self.rows.push((slot, row, t));
    }

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
    /// The rows the open sessions hold.
    rows: RowSlots,
    watermark: i64,
    schema: SchemaRef,
    input_schema: SchemaRef,
    metrics: Arc<JobMetrics>,
    /// The restored checkpoint kept every row under one key (before incremental snapshots).
    legacy_rows: bool,
    /// Late rows dropped: counted, and kept for the late-data destination.
    late: LateRows,
    /// Rows waiting for the watermark to pass their row watermarks (`session_pending`).
    pending: PendingRows,
}

impl SessionAggregateOperator {
    /// The operator for a SESSION window `node`, with time interpreted by `time`.
    pub fn new(
        node: &WindowAggregateNode,
        time: TimeContext,
        metrics: Arc<JobMetrics>,
    ) -> Result<Self> {
        let (layout, key_exprs) = layout(node);
        let mut types = key_types(node, &layout);
        let converter = key_converter(&types)?;
        types.extend([DataType::Int64, DataType::Int64]);
        let fire_converter = key_converter(&types)?;
        let gap = crate::window::kernels::UnitSpec::new(&node.spec, time.unit)
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
            rows: RowSlots::new(node.input.schema()),
            watermark: i64::MIN,
            schema: node.schema.clone(),
            input_schema: node.input.schema(),
            metrics,
            legacy_rows: false,
            late: LateRows::default(),
            pending: PendingRows::default(),
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
            self.rows.release(p.slot, p.row);
        }
        out.push(Message::Batch(StreamBatch::new(batch)));
        Ok(())
    }

    /// Gather the picked rows and aggregate them by (key, session).
    fn aggregate(&self, picks: &[Pick]) -> Result<RecordBatch> {
        let at: Vec<(u32, u32)> = picks.iter().map(|p| (p.slot, p.row)).collect();
        let rows = self.rows.gather(&at)?;
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

    /// Each row's event time and its key in row format.
    fn times_and_keys(&self, batch: &RecordBatch) -> Result<(Int64Array, Rows)> {
        let n = batch.num_rows();
        let times = ts_values(&self.start_expr.evaluate(batch)?.into_array(n)?)?;
        let keys = key_arrays(&self.key_exprs, batch)?;
        Ok((times, self.converter.convert_columns(&keys)?))
    }

    /// Each row first fires its key's sessions that the watermark at that row (`row_wms`, else
    /// the operator's) has passed, as a job reading one row at a time would have, so the
    /// result does not depend on how rows are batched; then it opens a session or joins (and
    /// merges) open ones, or is late.
    fn admit_rows(
        &mut self,
        b: &RecordBatch,
        row_wms: Option<&Int64Array>,
        out: &mut Vec<Message>,
    ) -> Result<()> {
        let n = b.num_rows();
        let (times, key_rows) = self.times_and_keys(b)?;
        let slot = self.rows.next_slot();
        let (mut kept, mut late, mut picks) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            if times.is_null(i) {
                continue;
            }
            let t = times.value(i);
            let row_wm = row_wms.map_or(self.watermark, |w| w.value(i));
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
            ks.admit((s, e), slot, kept.len() as u32, t);
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
            self.rows.add(rows, &self.metrics)?;
        }
        self.emit(picks, out)
    }

    /// Hold again the rows a checkpoint kept (`live` of `batch`, in slot `slot`).
    fn readmit(&mut self, slot: u32, batch: &RecordBatch, live: &[u32]) -> Result<()> {
        let (times, key_rows) = self.times_and_keys(batch)?;
        for &i in live {
            let t = times.value(i as usize);
            let ks = self
                .keys
                .entry(key_rows.row(i as usize).as_ref().into())
                .or_default();
            ks.admit(merged(&ks.sessions, t, self.gap), slot, i, t);
        }
        Ok(())
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

    /// Rows with row watermarks wait for the watermark (`session_pending`); others (an input
    /// without them) are taken at once.
    fn process_batch(&mut self, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        match batch.row_watermarks {
            Some(wms) => {
                self.pending.push(batch.batch, wms);
                Ok(())
            }
            None => self.admit_rows(&batch.batch, None, out),
        }
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<Message>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        let schema = self.input_schema.clone();
        let start = self.start_expr.clone();
        let times = |b: &RecordBatch| ts_values(&start.evaluate(b)?.into_array(b.num_rows())?);
        if let Some(due) = self.pending.due(self.watermark, &schema, times)? {
            self.admit_rows(&due.batch, Some(&due.watermarks), out)?;
        }
        self.fire(out)?;
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    fn is_stateful(&self) -> bool {
        true
    }

    fn attach_state(&mut self, state: SharedState, memory_limit: usize) -> Result<()> {
        self.rows.attach(state, memory_limit);
        Ok(())
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
    /// of every in-memory batch a buffered row is in.
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
        let batches = self.rows.memory_bytes() + self.pending.memory_bytes();
        StateSize {
            open_windows: self.keys.values().map(|ks| ks.sessions.len() as u64).sum(),
            keys: self.keys.len() as u64,
            bytes: (keys + self.keys.capacity() * per_key + batches) as u64,
        }
    }

    /// Incremental: the rows that arrived since the last barrier, which rows left, and the
    /// watermark (sessions are rebuilt from the rows' times on restore).
    fn snapshot(&mut self, state: &mut dyn StateBackend) -> Result<()> {
        state.put(b"m/watermark", &self.watermark.to_be_bytes())?;
        state.put(PENDING, &self.pending.encode(&self.input_schema)?)?;
        if std::mem::take(&mut self.legacy_rows) {
            state.delete(LEGACY_ROWS)?;
        }
        self.rows.snapshot(state)
    }

    /// Held rows split by key, the watermark the smallest.
    fn state_shape(&self) -> Option<crate::state::rescale::StateShape> {
        use crate::state::rescale::{KeyOf, Rule, StateShape};
        Some(StateShape {
            rules: vec![
                Rule::MinI64 {
                    key: b"m/watermark".to_vec(),
                },
                Rule::Columns {
                    prefix: PENDING.to_vec(),
                    key: KeyOf::Exprs(self.key_exprs.clone()),
                },
                Rule::Slots {
                    prefix: Vec::new(),
                    key: KeyOf::Exprs(self.key_exprs.clone()),
                    matched: false,
                },
            ],
        })
    }

    fn restore(&mut self, state: &dyn StateBackend) -> Result<()> {
        for r in self.rows.restore(state)? {
            self.readmit(r.slot, &r.batch, &r.live)?;
        }
        if let Some(rows) = state.get(LEGACY_ROWS)? {
            // An older checkpoint: every held row under one key; held again as one new slot.
            // Not spilled now: the runtime holds the backend's lock while restoring.
            let cols = decode_columns(&rows)?;
            let batch = RecordBatch::try_new(self.input_schema.clone(), cols)?;
            let spill = self.rows.pause_spilling();
            let r = self.process_batch(StreamBatch::new(batch), &mut Vec::new());
            self.rows.resume_spilling(spill);
            r?;
            self.legacy_rows = true;
        }
        if let Some(bytes) = state.get(PENDING)? {
            self.pending.restore(&bytes, &self.input_schema)?;
        }
        if let Some(wm) = state.get(b"m/watermark")? {
            let wm: [u8; 8] = wm.as_slice().try_into().unwrap_or(i64::MIN.to_be_bytes());
            self.watermark = i64::from_be_bytes(wm);
        }
        Ok(())
    }
}

/// The rows waiting for the watermark, as Arrow columns with their row watermarks last.
const PENDING: &[u8] = b"q/pending";

/// Where checkpoints before incremental session state kept every held row.
const LEGACY_ROWS: &[u8] = b"rows";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{encode_columns, MemoryBackend};
    use datafusion::arrow::array::{StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::TimeUnit;
    use std::sync::Mutex;
    use weir_planner::StreamNode;

    fn node() -> WindowAggregateNode {
        let sql = "CREATE TABLE t (k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
                   WITH ('connector' = 'x');
                   SELECT k, COUNT(*) AS n FROM t GROUP BY k, SESSION(ts, INTERVAL '5' SECOND)";
        crate::operators::planned(sql, |n| match n {
            StreamNode::WindowAggregate(a) => Some(a.clone()),
            _ => None,
        })
    }

    /// Three rows of keys a, b, c at 1 s, 2 s, 3 s in the node's input columns.
    fn rows(node: &WindowAggregateNode) -> RecordBatch {
        let schema = node.input.schema();
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.data_type() {
                    DataType::Utf8 => Arc::new(StringArray::from(vec!["a", "b", "c"])),
                    DataType::Timestamp(TimeUnit::Millisecond, _) => {
                        Arc::new(TimestampMillisecondArray::from(vec![1000, 2000, 3000]))
                    }
                    other => panic!("unexpected input column type {other}"),
                }
            })
            .collect();
        RecordBatch::try_new(schema, cols).unwrap()
    }

    #[test]
    fn an_older_checkpoint_restores_under_the_backends_lock_and_is_rewritten_as_slots() {
        let node = node();
        let time = crate::runtime::job::time_context(&node.time).unwrap();
        let mut op =
            SessionAggregateOperator::new(&node, time, Arc::new(JobMetrics::default())).unwrap();
        let mut legacy = MemoryBackend::default();
        legacy
            .put(LEGACY_ROWS, &encode_columns(rows(&node).columns()).unwrap())
            .unwrap();
        let shared: SharedState = Arc::new(Mutex::new(Box::new(legacy)));
        // A 1-byte limit: every slot would spill, which takes the lock the restore runs under.
        op.attach_state(shared.clone(), 1).unwrap();
        op.restore(shared.lock().unwrap().as_ref()).unwrap();
        op.snapshot(shared.lock().unwrap().as_mut()).unwrap();
        let state = shared.lock().unwrap();
        assert_eq!(state.get(LEGACY_ROWS).unwrap(), None);
        assert_eq!(state.scan(b"b/").unwrap().len(), 1, "the rows as one slot");
        drop(state);
        // The sessions are back: the final watermark fires all three.
        let mut out = Vec::new();
        op.on_watermark(i64::MAX, &mut out).unwrap();
        let fired: usize = out
            .iter()
            .map(|m| match m {
                Message::Batch(b) => b.batch.num_rows(),
                _ => 0,
            })
            .sum();
        assert_eq!(fired, 3);
    }
}
