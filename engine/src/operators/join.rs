//! Joins of two streams on equal keys, INNER, LEFT, RIGHT, FULL, SEMI or ANTI: interval joins (event
//! times within bounds of each other, `right.ts - left.ts` in `[lower, upper]`) and regular
//! joins (no time condition).
//!
//! A regular join never drops a row as late and holds each row until the other input has
//! ended (for ever when it does not): an outer side's unmatched rows are emitted then, so with
//! a bounded other input (the planner requires one) the result stays append-only.
//!
//! Each row is judged against its own input's watermark (the one in force before it on that
//! input): at or below it, the row is late and dropped. A row that is not late is matched with
//! the other input's held rows, then held itself while a row of the other input that is not
//! late could still match it. The other input's watermark frees it: a left row once the right
//! watermark reaches `ts + upper`, a right row once the left watermark reaches `ts - lower`. An
//! unmatched row of an outer side is emitted NULL-padded when it is freed. So results depend
//! neither on batching nor on how the inputs interleave (`docs/semantics.md`).
//!
//! A semi join emits a left row once, when it first matches; an anti join emits the left rows
//! that never matched, when they go (as an outer join's unmatched rows, without NULLs).
//!
//! Both time columns stay event-time columns in the output; the output watermark is the
//! smaller input watermark held back by the larger bound, so no joined row is late downstream.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows};

use super::join_side::{JoinSide, RestoredRow};
use super::key_index::Clock;
use super::row_slots::Restored;
use super::rows::{
    emit_at, kept, keys_converter, mask, own_watermark, pair_batch, pair_schema, take_rows,
};
use super::window_aggregate::key_arrays;
use crate::error::{EngineError, Result};
use crate::late::{LateContext, LateRows};
use crate::message::{Message, StreamBatch, WATERMARK_MAX, WATERMARK_MIN};
use crate::observe::metrics::JobMetrics;
use crate::observe::op_metrics::{EventCounts, StateSize};
use crate::operator::Operator;
use crate::state::{SharedState, StateBackend};
use crate::window::kernels::{timestamp_values, to_ns};
use weir_planner::stream_plan::{JoinKind, JoinNode, JoinTime, PhysExpr};

/// One input's plan: key expressions and event-time column (an interval join's).
struct Input {
    keys: Vec<PhysExpr>,
    time: Option<JoinTime>,
    schema: SchemaRef,
}

/// A join of two streams (interval, window, regular, semi or anti).
pub struct JoinOperator {
    kind: JoinKind,
    inputs: [Input; 2],
    sides: [JoinSide; 2],
    /// `(lower, upper)` of an interval join; `None` for a regular join.
    bounds: Option<(i64, i64)>,
    /// A window join (an interval join on equal window ends).
    window: bool,
    delay: i64,
    converter: RowConverter,
    filter: Option<PhysExpr>,
    null_aware: bool,
    /// Both inputs' columns: what the filter reads.
    pair_schema: SchemaRef,
    schema: SchemaRef,
    wms: [i64; 2],
    out_wm: i64,
    late: LateRows,
    metrics: Arc<JobMetrics>,
}

/// The rows of one input batch that take part: their keys and times, the rows that can match
/// (neither late nor with a NULL key), and those with a NULL key (they never match).
struct Probe {
    rows: Rows,
    times: Vec<i64>,
    live: Vec<u32>,
    null_key: Vec<u32>,
}

impl JoinOperator {
    /// The operator for `node`; a regular join's input whose rows no watermark frees (the other
    /// input does not end) drops them `ttl[side]` ms of `clock` after they came, when set.
    pub fn new(
        node: &JoinNode,
        metrics: Arc<JobMetrics>,
        ttl: [Option<u64>; 2],
        clock: Clock,
    ) -> Result<Self> {
        let left = node.left.schema();
        let right = node.right.schema();
        let b = node.interval.as_ref();
        let mut op = Self {
            kind: node.kind,
            inputs: [
                Input {
                    keys: node.left_keys.clone(),
                    time: b.map(|b| b.left.clone()),
                    schema: left.clone(),
                },
                Input {
                    keys: node.right_keys.clone(),
                    time: b.map(|b| b.right.clone()),
                    schema: right.clone(),
                },
            ],
            sides: [
                JoinSide::new(left.clone(), b"L", node.kind.tracks_matches(0)),
                JoinSide::new(right.clone(), b"R", node.kind.tracks_matches(1)),
            ],
            bounds: b.map(|b| (b.lower_ns, b.upper_ns)),
            window: node.window,
            delay: b.map_or(0, |b| b.output_delay_ns()),
            converter: keys_converter(&node.left_keys, &left)?,
            filter: node.filter.clone(),
            null_aware: node.null_aware,
            pair_schema: pair_schema(&left, &right),
            schema: node.schema.clone(),
            wms: [WATERMARK_MIN; 2],
            out_wm: WATERMARK_MIN,
            late: LateRows::default(),
            metrics,
        };
        for (side, ttl) in ttl.into_iter().enumerate() {
            if let (None, false, Some(ms)) = (&node.interval, node.bounded[1 - side], ttl) {
                op.sides[side].set_ttl(ms, clock);
            }
        }
        Ok(op)
    }

    /// Rows held longer than the TTL go (silently: their side never emits unmatched rows).
    fn drop_idle(&mut self) {
        for side in &mut self.sides {
            let gone = side.drop_idle();
            side.release(&gone);
        }
    }

    /// When a row of input `side` at `time` can go: the other input's watermark from which no
    /// row of it that is not late can match.
    fn expires(&self, side: usize, time: i64) -> i64 {
        expires_at(side, time, self.bounds)
    }

    /// Keys, times and the rows that take part, of a batch of input `side`.
    fn probe(&mut self, side: usize, b: &StreamBatch) -> Result<Probe> {
        let input = &self.inputs[side];
        let keys = key_arrays(&input.keys, &b.batch)?;
        let rows = self.converter.convert_columns(&keys)?;
        let (times, valid) = event_times(&b.batch, input.time.as_ref())?;
        let judged = input.time.is_some();
        let mut probe = Probe {
            rows,
            times,
            live: Vec::with_capacity(valid.len()),
            null_key: Vec::new(),
        };
        let mut late = Vec::new();
        for (i, ok) in valid.iter().enumerate() {
            let own = own_watermark(b, i, self.wms[side]);
            if !ok {
                continue;
            }
            if judged && probe.times[i] <= own {
                late.push(i as u32);
            } else if keys.iter().all(|k| k.is_valid(i)) {
                probe.live.push(i as u32);
            } else {
                probe.null_key.push(i as u32);
            }
        }
        self.keep_late(&b.batch, &late)?;
        Ok(probe)
    }

    /// Count and keep the late rows `late` of `batch`.
    fn keep_late(&mut self, batch: &RecordBatch, late: &[u32]) -> Result<()> {
        let reason = match self.window {
            true => "the row's window had already been joined",
            false => "the row was at or below its input's watermark",
        };
        let cx = LateContext {
            operator: self.name(),
            reason,
            unit: TimeUnit::Millisecond, // of the missed window columns, NULL here
        };
        self.late.push_rows(batch, late, &cx)
    }

    /// The pairs of `probe`'s rows with the other input's held rows within the bounds:
    /// (row in the batch, slot, row in the slot).
    fn pairs(&self, side: usize, probe: &Probe) -> Vec<(u32, u32, u32)> {
        let other = &self.sides[1 - side];
        let mut pairs = Vec::new();
        for &i in &probe.live {
            let t = probe.times[i as usize];
            for h in other.candidates(probe.rows.row(i as usize)) {
                let d = if side == 0 { h.time - t } else { t - h.time };
                if self
                    .bounds
                    .is_none_or(|(lower, upper)| (lower..=upper).contains(&d))
                {
                    pairs.push((i, h.slot, h.row));
                }
            }
        }
        pairs
    }

    /// The joined rows of `pairs` that pass the filter, and which pairs those are.
    fn joined(
        &self,
        side: usize,
        batch: &RecordBatch,
        pairs: &[(u32, u32, u32)],
    ) -> Result<(RecordBatch, Vec<bool>)> {
        let own: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let picks: Vec<(u32, u32)> = pairs.iter().map(|p| (p.1, p.2)).collect();
        let other = self.sides[1 - side].rows.gather(&picks)?;
        let joined = pair_batch(
            &self.pair_schema,
            side,
            batch,
            &own,
            other.columns().to_vec(),
        )?;
        let Some(f) = &self.filter else {
            return Ok((joined, vec![true; pairs.len()]));
        };
        let mask = mask(f, &joined)?;
        let keep = kept(&mask);
        Ok((filter_record_batch(&joined, &mask)?, keep))
    }

    /// Rows of input `side` with NULLs for the other input's columns (a semi or anti join's
    /// left rows as they are).
    fn padded(&self, side: usize, own: RecordBatch) -> Result<RecordBatch> {
        if !self.kind.emits_pairs() {
            return Ok(RecordBatch::try_new(
                self.schema.clone(),
                own.columns().to_vec(),
            )?);
        }
        let n = own.num_rows();
        let nulls: Vec<ArrayRef> = self.inputs[1 - side]
            .schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), n))
            .collect();
        let cols = match side {
            0 => [own.columns().to_vec(), nulls].concat(),
            _ => [nulls, own.columns().to_vec()].concat(),
        };
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }

    /// Send `batch` downstream, its rows under the current output watermark.
    fn emit(&self, batch: RecordBatch, out: &mut Vec<Message>) {
        emit_at(batch, self.out_wm, out);
    }

    /// Hold the rows of `probe` that may still match; emit now the unmatched rows of an outer
    /// side that cannot (a NULL key, or the other input's watermark already past them).
    fn hold(
        &mut self,
        side: usize,
        batch: &RecordBatch,
        probe: &Probe,
        matched: &[bool],
        out: &mut Vec<Message>,
    ) -> Result<()> {
        let other_wm = self.wms[1 - side];
        let outer = self.kind.keeps_unmatched(side);
        let mut keep = Vec::new();
        let mut alone = if outer && !self.null_aware {
            probe.null_key.clone()
        } else {
            vec![]
        };
        for &i in &probe.live {
            let expires = self.expires(side, probe.times[i as usize]);
            if expires > other_wm {
                keep.push(i);
            } else if outer && !matched[i as usize] {
                alone.push(i);
            }
        }
        if !alone.is_empty() {
            let padded = self.padded(side, take_rows(batch, &alone)?)?;
            self.emit(padded, out);
        }
        if keep.is_empty() {
            return Ok(());
        }
        let keys: Vec<_> = keep.iter().map(|i| probe.rows.row(*i as usize)).collect();
        let at = |v: &dyn Fn(usize) -> i64| keep.iter().map(|i| v(*i as usize)).collect::<Vec<_>>();
        let times = at(&|i| probe.times[i]);
        let expires = at(&|i| self.expires(side, probe.times[i]));
        let was: Vec<bool> = keep.iter().map(|i| matched[*i as usize]).collect();
        let held = take_rows(batch, &keep)?;
        self.sides[side].hold(held, &keys, &times, &expires, &was, &self.metrics)
    }

    /// A semi join's left rows that matched for the first time: those of an incoming left
    /// batch with a match, or the held left rows an incoming right batch matched.
    fn emit_semi(
        &self,
        side: usize,
        batch: &RecordBatch,
        matched: &[bool],
        newly: &[(u32, u32)],
        out: &mut Vec<Message>,
    ) -> Result<()> {
        let rows = match side {
            0 => {
                let idx: Vec<u32> = (0..matched.len() as u32)
                    .filter(|i| matched[*i as usize])
                    .collect();
                take_rows(batch, &idx)?
            }
            _ => self.sides[0].rows.gather(newly)?,
        };
        let rows = self.padded(0, rows)?;
        self.emit(rows, out);
        Ok(())
    }

    /// Input `other`'s rows that can go at watermark `wm`: freed, and the unmatched ones of an
    /// outer side emitted.
    fn free(&mut self, other: usize, wm: i64, out: &mut Vec<Message>) -> Result<()> {
        let gone = self.sides[other].expire(wm);
        if self.kind.keeps_unmatched(other) {
            let picks: Vec<(u32, u32)> = gone
                .iter()
                .filter(|g| !g.matched)
                .map(|g| (g.slot, g.row))
                .collect();
            if !picks.is_empty() {
                let own = self.sides[other].rows.gather(&picks)?;
                let padded = self.padded(other, own)?;
                self.emit(padded, out);
            }
        }
        self.sides[other].release(&gone);
        Ok(())
    }
}

/// When a row of input `side` at `time` can go (see [`JoinOperator::expires`]), for
/// bounds `(lower, upper)`; a regular join's rows once the other input has ended.
fn expires_at(side: usize, time: i64, bounds: Option<(i64, i64)>) -> i64 {
    match (bounds, side) {
        (None, _) => WATERMARK_MAX,
        (Some((_, upper)), 0) => time.saturating_add(upper),
        (Some((lower, _)), _) => time.saturating_sub(lower),
    }
}

/// The rows a restored slot of `input` (input number `side`) held, placed as
/// [`JoinSide::hold`] had them.
fn placed(
    input: &Input,
    converter: &RowConverter,
    side: usize,
    bounds: Option<(i64, i64)>,
    r: &Restored,
) -> Result<Vec<RestoredRow>> {
    let keys = key_arrays(&input.keys, &r.batch)?;
    let rows = converter.convert_columns(&keys)?;
    let (times, _) = event_times(&r.batch, input.time.as_ref())?;
    Ok(r.live
        .iter()
        .map(|&row| {
            let time = times[row as usize];
            RestoredRow {
                key: rows.row(row as usize).as_ref().to_vec(),
                time,
                row,
                expires: expires_at(side, time, bounds),
            }
        })
        .collect())
}

/// Event times (ns) of a batch, and which are not NULL (a regular join's rows: 0, all valid).
fn event_times(batch: &RecordBatch, time: Option<&JoinTime>) -> Result<(Vec<i64>, Vec<bool>)> {
    let Some(time) = time else {
        let n = batch.num_rows();
        return Ok((vec![0; n], vec![true; n]));
    };
    let ts = batch.column(time.index);
    let raw = timestamp_values(ts, time.unit).map_err(EngineError::Execution)?;
    let times = raw.iter().map(|v| to_ns(*v, time.unit)).collect();
    let valid = (0..ts.len()).map(|i| ts.is_valid(i)).collect();
    Ok((times, valid))
}

impl Operator for JoinOperator {
    fn name(&self) -> &'static str {
        match (self.window, self.bounds) {
            (true, _) => "WindowJoin",
            (false, Some(_)) => "IntervalJoin",
            (false, None) => "Join",
        }
    }

    fn process_batch(&mut self, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        self.process_input(0, batch, out)
    }

    fn process_input(&mut self, side: usize, b: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        self.drop_idle();
        let probe = self.probe(side, &b)?;
        let pairs = self.pairs(side, &probe);
        let mut matched = vec![false; b.num_rows()];
        if !pairs.is_empty() {
            let (joined, keep) = self.joined(side, &b.batch, &pairs)?;
            let mut newly = Vec::new();
            for (p, k) in pairs.iter().zip(keep) {
                if k {
                    matched[p.0 as usize] = true;
                    if self.sides[1 - side].set_matched(p.1, p.2) {
                        newly.push((p.1, p.2));
                    }
                }
            }
            match self.kind {
                JoinKind::Semi => self.emit_semi(side, &b.batch, &matched, &newly, out)?,
                JoinKind::Anti => {}
                _ => {
                    let cols = joined.columns().to_vec();
                    self.emit(RecordBatch::try_new(self.schema.clone(), cols)?, out);
                }
            }
        }
        self.hold(side, &b.batch, &probe, &matched, out)
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<Message>) -> Result<()> {
        self.on_input_watermark(0, watermark, out)
    }

    fn on_input_watermark(&mut self, side: usize, wm: i64, out: &mut Vec<Message>) -> Result<()> {
        self.drop_idle();
        if wm <= self.wms[side] {
            return Ok(());
        }
        self.wms[side] = wm;
        self.free(1 - side, wm, out)?;
        let next = match self.wms[0].min(self.wms[1]) {
            WATERMARK_MIN => return Ok(()),
            WATERMARK_MAX => WATERMARK_MAX,
            m => m.saturating_sub(self.delay),
        };
        if next > self.out_wm {
            self.out_wm = next;
            out.push(Message::Watermark(next));
        }
        Ok(())
    }

    fn state_size(&self) -> StateSize {
        StateSize {
            open_windows: 0,
            keys: self.sides.iter().map(|s| s.keys() as u64).sum(),
            bytes: self
                .sides
                .iter()
                .map(|s| s.rows.memory_bytes() as u64)
                .sum(),
        }
    }

    fn counts(&self) -> EventCounts {
        let dropped: u64 = self.sides.iter().map(|s| s.dropped()).sum();
        EventCounts {
            late_rows: Some(self.late.count()),
            expired_keys: (self.bounds.is_none()).then_some(dropped),
            ..Default::default()
        }
    }

    fn is_stateful(&self) -> bool {
        true
    }

    fn late_rows(&mut self) -> Option<&mut LateRows> {
        self.bounds.is_some().then_some(&mut self.late)
    }

    fn attach_state(&mut self, state: SharedState, memory_limit: usize) -> Result<()> {
        for s in &mut self.sides {
            s.attach(state.clone(), memory_limit / 2);
        }
        Ok(())
    }

    fn snapshot(&mut self, state: &mut dyn StateBackend) -> Result<()> {
        for s in &mut self.sides {
            s.snapshot(state)?;
        }
        Ok(())
    }

    /// Each input's held rows split by its join key.
    fn state_shape(&self) -> Option<crate::state::rescale::StateShape> {
        use crate::state::rescale::{KeyOf, Rule, StateShape};
        let side = |i: usize, prefix: &[u8]| Rule::Slots {
            prefix: prefix.to_vec(),
            key: KeyOf::Exprs(self.inputs[i].keys.clone()),
            matched: self.sides[i].tracks_matches(),
        };
        Some(StateShape {
            rules: vec![side(0, b"L"), side(1, b"R")],
        })
    }

    fn restore(&mut self, state: &dyn StateBackend) -> Result<()> {
        let bounds = self.bounds;
        for side in 0..2 {
            let (input, converter) = (&self.inputs[side], &self.converter);
            let place = |r: &Restored| placed(input, converter, side, bounds, r);
            self.sides[side].restore(state, place)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "join_tests.rs"]
mod tests;
