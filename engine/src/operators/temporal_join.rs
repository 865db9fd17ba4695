//! Event-time temporal joins: each left row with the version of its key that was valid at the
//! row's time, the newest right row with a time at or before it (ties: the later arrival).
//!
//! A left row waits until the right (versions') watermark reaches its time, when every version
//! that could be valid at it has arrived; it is then emitted once, with its version, or (LEFT)
//! NULL-padded without one. Rows of either input at or below their own input's watermark are
//! late: dropped and counted. Versions are kept per key in batch slots (`row_slots.rs`, so
//! checkpoints write each batch once); a version older than the newest one at or below both
//! watermarks can no longer be looked up and goes. Waiting left rows are checkpointed whole.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::RowConverter;

use super::row_slots::RowSlots;
use super::rows::{
    emit_at, keys_converter, mask, own_watermark, padded_rows, pair_schema, take_rows,
};
use super::window_aggregate::key_arrays;
use crate::error::{EngineError, Result};
use crate::late::{LateContext, LateRows};
use crate::message::{Message, StreamBatch, WATERMARK_MAX, WATERMARK_MIN};
use crate::observe::metrics::JobMetrics;
use crate::observe::op_metrics::{EventCounts, StateSize};
use crate::operator::Operator;
use crate::state::{decode_columns, encode_columns, SharedState, StateBackend};
use crate::window::kernels::{timestamp_values, to_ns};
use weir_planner::stream_plan::{JoinKind, JoinTime, PhysExpr, TemporalJoinNode};

const WAITING: &[u8] = b"t/waiting";

/// One version: its time, arrival order, and where its row is.
#[derive(Debug, Clone, Copy)]
struct Version {
    time: i64,
    seq: u64,
    slot: u32,
    row: u32,
}

/// An event-time temporal join.
pub struct TemporalJoinOperator {
    left_outer: bool,
    keys: [Vec<PhysExpr>; 2],
    times: [JoinTime; 2],
    converter: RowConverter,
    filter: Option<PhysExpr>,
    left_schema: SchemaRef,
    right_schema: SchemaRef,
    pair_schema: SchemaRef,
    schema: SchemaRef,
    versions: RowSlots,
    by_key: HashMap<Box<[u8]>, Vec<Version>, foldhash::fast::RandomState>,
    /// Keys holding more than one version (candidates for clean-up).
    crowded: BTreeSet<Box<[u8]>>,
    seq: u64,
    /// Left rows waiting for the versions' watermark.
    waiting: Vec<RecordBatch>,
    wms: [i64; 2],
    out_wm: i64,
    late: LateRows,
    metrics: Arc<JobMetrics>,
}

impl TemporalJoinOperator {
    /// The operator for `node`.
    pub fn new(node: &TemporalJoinNode, metrics: Arc<JobMetrics>) -> Result<Self> {
        let left = node.left.schema();
        let right = node.right.schema();
        Ok(Self {
            left_outer: node.kind == JoinKind::Left,
            keys: [node.left_keys.clone(), node.right_keys.clone()],
            times: [node.left_time.clone(), node.right_time.clone()],
            converter: keys_converter(&node.left_keys, &left)?,
            filter: node.filter.clone(),
            pair_schema: pair_schema(&left, &right),
            versions: RowSlots::with_prefix(right.clone(), b"V"),
            left_schema: left,
            right_schema: right,
            schema: node.schema.clone(),
            by_key: HashMap::default(),
            crowded: BTreeSet::new(),
            seq: 0,
            waiting: Vec::new(),
            wms: [WATERMARK_MIN; 2],
            out_wm: WATERMARK_MIN,
            late: LateRows::default(),
            metrics,
        })
    }

    /// Event times (ns) of `batch` of input `side`, and which rows are neither late nor NULL
    /// in time.
    fn on_time(&mut self, side: usize, b: &StreamBatch) -> Result<(Vec<i64>, Vec<bool>)> {
        let t = &self.times[side];
        let ts = b.batch.column(t.index);
        let raw = timestamp_values(ts, t.unit).map_err(EngineError::Execution)?;
        let times: Vec<i64> = raw.iter().map(|v| to_ns(*v, t.unit)).collect();
        let mut keep = Vec::with_capacity(times.len());
        let mut late_rows = Vec::new();
        for (i, time) in times.iter().enumerate() {
            let own = own_watermark(b, i, self.wms[side]);
            let late = ts.is_valid(i) && *time <= own;
            if late {
                late_rows.push(i as u32);
            }
            keep.push(ts.is_valid(i) && !late);
        }
        let cx = LateContext {
            operator: "TemporalJoin",
            reason: "the row was at or below its input's watermark",
            unit: t.unit,
        };
        self.late.push_rows(&b.batch, &late_rows, &cx)?;
        Ok((times, keep))
    }

    /// Hold the versions of a right batch.
    fn add_versions(&mut self, b: &StreamBatch) -> Result<()> {
        let (_, keep) = self.on_time(1, b)?;
        let batch = filter_record_batch(&b.batch, &BooleanArray::from(keep))?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let slot = self.versions.next_slot();
        self.index_versions(&batch, slot, None)?;
        self.versions.add(batch, &self.metrics)?;
        Ok(())
    }

    /// List the rows of `batch` (slot `slot`; only rows `live` when given) under their keys.
    fn index_versions(
        &mut self,
        batch: &RecordBatch,
        slot: u32,
        live: Option<&[u32]>,
    ) -> Result<()> {
        let keys = key_arrays(&self.keys[1], batch)?;
        let rows = self.converter.convert_columns(&keys)?;
        let t = &self.times[1];
        let raw =
            timestamp_values(batch.column(t.index), t.unit).map_err(EngineError::Execution)?;
        let all: Vec<u32> = (0..batch.num_rows() as u32).collect();
        for &i in live.unwrap_or(&all) {
            if keys.iter().any(|k| k.is_null(i as usize)) {
                continue;
            }
            let key = rows.row(i as usize);
            let v = Version {
                time: to_ns(raw[i as usize], t.unit),
                seq: self.seq,
                slot,
                row: i,
            };
            self.seq += 1;
            let list = self.by_key.entry(key.as_ref().into()).or_default();
            let at = list.partition_point(|x| (x.time, x.seq) <= (v.time, v.seq));
            list.insert(at, v);
            if list.len() > 1 {
                self.crowded.insert(key.as_ref().into());
            }
        }
        Ok(())
    }

    /// Emit the left rows of `batch` with their versions (all of them are due).
    fn join_rows(&self, batch: &RecordBatch, out: &mut Vec<Message>) -> Result<()> {
        let keys = key_arrays(&self.keys[0], batch)?;
        let rows = self.converter.convert_columns(&keys)?;
        let t = &self.times[0];
        let raw =
            timestamp_values(batch.column(t.index), t.unit).map_err(EngineError::Execution)?;
        let mut pairs = Vec::new();
        let mut alone = Vec::new();
        for (i, v) in raw.iter().enumerate() {
            let time = to_ns(*v, t.unit);
            let found = self.by_key.get(rows.row(i).as_ref()).and_then(|list| {
                let n = list.partition_point(|v| v.time <= time);
                n.checked_sub(1).map(|k| list[k])
            });
            match found {
                Some(v) if keys.iter().all(|k| k.is_valid(i)) => pairs.push((i as u32, v)),
                _ => alone.push(i as u32),
            }
        }
        let mut matched = vec![false; batch.num_rows()];
        if !pairs.is_empty() {
            let joined = self.joined(batch, &pairs)?;
            let mask = self.passes(&joined)?;
            for (p, ok) in pairs.iter().zip(mask.iter()) {
                matched[p.0 as usize] = ok == Some(true);
            }
            let cols = filter_record_batch(&joined, &mask)?.columns().to_vec();
            self.emit(RecordBatch::try_new(self.schema.clone(), cols)?, out);
        }
        if self.left_outer {
            let lone: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|i| !matched[*i as usize])
                .collect();
            self.emit(self.padded(batch, &lone)?, out);
        }
        Ok(())
    }

    fn joined(&self, batch: &RecordBatch, pairs: &[(u32, Version)]) -> Result<RecordBatch> {
        let idx: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let own = take_rows(batch, &idx)?;
        let picks: Vec<(u32, u32)> = pairs.iter().map(|p| (p.1.slot, p.1.row)).collect();
        let other = self.versions.gather(&picks)?;
        let cols = [own.columns().to_vec(), other.columns().to_vec()].concat();
        Ok(RecordBatch::try_new(self.pair_schema.clone(), cols)?)
    }

    fn passes(&self, joined: &RecordBatch) -> Result<BooleanArray> {
        let Some(f) = &self.filter else {
            return Ok(BooleanArray::from(vec![true; joined.num_rows()]));
        };
        mask(f, joined)
    }

    fn padded(&self, batch: &RecordBatch, idx: &[u32]) -> Result<RecordBatch> {
        padded_rows(batch, idx, &self.right_schema, &self.schema)
    }

    fn emit(&self, batch: RecordBatch, out: &mut Vec<Message>) {
        emit_at(batch, self.out_wm, out);
    }

    /// Split waiting rows into those due at the versions' watermark and the rest.
    fn release_due(&mut self, out: &mut Vec<Message>) -> Result<()> {
        let wm = self.wms[1];
        let t = self.times[0].clone();
        let mut still = Vec::new();
        for batch in std::mem::take(&mut self.waiting) {
            let raw =
                timestamp_values(batch.column(t.index), t.unit).map_err(EngineError::Execution)?;
            let due = BooleanArray::from_iter(raw.iter().map(|v| Some(to_ns(*v, t.unit) <= wm)));
            self.join_rows(&filter_record_batch(&batch, &due)?, out)?;
            let rest = datafusion::arrow::compute::not(&due)?;
            let rest = filter_record_batch(&batch, &rest)?;
            if rest.num_rows() > 0 {
                still.push(rest);
            }
        }
        self.waiting = still;
        Ok(())
    }

    /// Versions no lookup can reach any more: all but the newest at or below both watermarks.
    fn clean_up(&mut self) {
        let horizon = self.wms[0].min(self.wms[1]);
        for key in std::mem::take(&mut self.crowded) {
            let Some(list) = self.by_key.get_mut(&key) else {
                continue;
            };
            let reachable = list
                .partition_point(|v| v.time <= horizon)
                .saturating_sub(1);
            for v in list.drain(..reachable) {
                self.versions.release(v.slot, v.row);
            }
            if list.len() > 1 {
                self.crowded.insert(key);
            }
        }
    }
}

impl Operator for TemporalJoinOperator {
    fn name(&self) -> &'static str {
        "TemporalJoin"
    }

    fn process_batch(&mut self, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        self.process_input(0, batch, out)
    }

    fn process_input(&mut self, side: usize, b: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        if side == 1 {
            return self.add_versions(&b);
        }
        let (times, keep) = self.on_time(0, &b)?;
        let wm = self.wms[1];
        let due: Vec<bool> = keep
            .iter()
            .zip(&times)
            .map(|(k, t)| *k && *t <= wm)
            .collect();
        let wait: Vec<bool> = keep
            .iter()
            .zip(&times)
            .map(|(k, t)| *k && *t > wm)
            .collect();
        self.join_rows(
            &filter_record_batch(&b.batch, &BooleanArray::from(due))?,
            out,
        )?;
        let wait = filter_record_batch(&b.batch, &BooleanArray::from(wait))?;
        if wait.num_rows() > 0 {
            self.waiting.push(wait);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<Message>) -> Result<()> {
        self.on_input_watermark(0, watermark, out)
    }

    fn on_input_watermark(&mut self, side: usize, wm: i64, out: &mut Vec<Message>) -> Result<()> {
        if wm <= self.wms[side] {
            return Ok(());
        }
        self.wms[side] = wm;
        if side == 1 {
            self.release_due(out)?;
        }
        self.clean_up();
        let next = self.wms[0].min(self.wms[1]);
        if next > self.out_wm && next != WATERMARK_MIN {
            self.out_wm = next;
            out.push(Message::Watermark(next));
        }
        Ok(())
    }

    fn on_end(&mut self, out: &mut Vec<Message>) -> Result<()> {
        self.wms[1] = WATERMARK_MAX;
        self.release_due(out)
    }

    fn state_size(&self) -> StateSize {
        let waiting: usize = self.waiting.iter().map(|b| b.get_array_memory_size()).sum();
        StateSize {
            open_windows: 0,
            keys: self.by_key.len() as u64,
            bytes: (waiting + self.versions.memory_bytes()) as u64,
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

    fn attach_state(&mut self, state: SharedState, memory_limit: usize) -> Result<()> {
        self.versions.attach(state, memory_limit);
        Ok(())
    }

    fn snapshot(&mut self, state: &mut dyn StateBackend) -> Result<()> {
        self.versions.snapshot(state)?;
        let waiting = concat_batches(&self.left_schema, &self.waiting)?;
        state.put(WAITING, &encode_columns(waiting.columns())?)
    }

    /// The versions split by the right key, the waiting rows by the left key.
    fn state_shape(&self) -> Option<crate::state::rescale::StateShape> {
        use crate::state::rescale::{KeyOf, Rule, StateShape};
        Some(StateShape {
            rules: vec![
                Rule::Slots {
                    prefix: b"V".to_vec(),
                    key: KeyOf::Exprs(self.keys[1].clone()),
                    matched: false,
                },
                Rule::Columns {
                    prefix: WAITING.to_vec(),
                    key: KeyOf::Exprs(self.keys[0].clone()),
                },
            ],
        })
    }

    fn restore(&mut self, state: &dyn StateBackend) -> Result<()> {
        let spill = self.versions.pause_spilling();
        let restored = self.versions.restore(state);
        self.versions.resume_spilling(spill);
        for r in restored? {
            self.index_versions(&r.batch, r.slot, Some(&r.live))?;
        }
        if let Some(bytes) = state.get(WAITING)? {
            let batch = RecordBatch::try_new(self.left_schema.clone(), decode_columns(&bytes)?)?;
            if batch.num_rows() > 0 {
                self.waiting.push(batch);
            }
        }
        Ok(())
    }
}
