//! Window aggregation for TUMBLE, HOP and CUMULATE: one group table per window, fired when the
//! watermark reaches the window's end - 1 unit.
//!
//! Rows arrive already placed in their windows (by `WindowAssign`, which also drops rows whose
//! windows have all fired). State is keyed by (window end, window start), so firing pops windows
//! in end order and frees their state at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::RowConverter;

use super::groups::{key_converter, output_batch, AggregateSet, Contribution, GroupTable};
use super::spill::Spill;
use super::window_local::PartialLayout;
use super::window_updates::WindowUpdates;
use crate::error::Result;
use crate::late::{LateContext, LateRows};
use crate::message::{Message, StreamBatch};
use crate::observe::metrics::JobMetrics;
use crate::operator::Operator;
use crate::state::{
    decode_columns, encode_columns, i64_from_key, i64_key, SharedState, StateBackend,
};
use crate::window::kernels::{fire_time_ns, window_time, MissedWindow, TimeContext};
use weir_planner::stream_plan::{PhysExpr, WindowAggregateNode};

mod updates;

/// Which output column a group expression is.
#[derive(Clone, Copy)]
pub(crate) enum GroupCol {
    Start,
    End,
    Time,
    Key(usize),
}

/// Where windows go when memory runs short.
struct SpillTo {
    spill: Spill,
    state: SharedState,
    limit: usize,
}

/// TUMBLE, HOP and CUMULATE aggregation: a group table per window, fired by the watermark.
pub struct WindowAggregateOperator {
    group_exprs: Vec<PhysExpr>,
    layout: Vec<GroupCol>,
    start: usize,
    end: usize,
    key_exprs: Vec<PhysExpr>,
    converter: RowConverter,
    aggs: Arc<AggregateSet>,
    time: TimeContext,
    windows: BTreeMap<(i64, i64), GroupTable>,
    /// Windows changed (updated or fired) since the last snapshot.
    dirty: BTreeSet<(i64, i64)>,
    /// Windows moved to RocksDB because memory ran short (checkpointing jobs).
    spilled: BTreeSet<(i64, i64)>,
    spill: Option<SpillTo>,
    n_keys: usize,
    watermark: i64,
    /// The last watermark sent downstream (intermediate ones included), so none goes back.
    emitted_watermark: i64,
    /// Allowed lateness and early firing (updating results).
    updates: WindowUpdates,
    /// Retained (fired) windows changed since the last snapshot.
    late_dirty: BTreeSet<(i64, i64)>,
    schema: SchemaRef,
    metrics: Arc<JobMetrics>,
    /// Late rows accepted within the allowed lateness so far.
    late_updates: u64,
    /// Late rows dropped: counted, and kept for the late-data destination.
    late: LateRows,
    /// The input is partial rows of a local pre-aggregation, laid out so.
    partial: Option<PartialLayout>,
    /// The input's schema (rows held for a window that is about to fire).
    input_schema: SchemaRef,
}

/// A batch's windows (end, start per row), keys and contribution.
pub(crate) struct Windowed {
    pub starts: Int64Array,
    pub ends: Int64Array,
    pub keys: Vec<ArrayRef>,
    pub input: Contribution,
}

/// Call `f` for each window of `w`, in window order, with the window (end, start), its rows
/// (`None`: the whole batch is one window), and their keys and contribution.
pub(crate) fn for_each_window(
    w: &Windowed,
    mut f: impl FnMut((i64, i64), Option<&UInt32Array>, &[ArrayRef], &Contribution) -> Result<()>,
) -> Result<()> {
    let (s, e) = (w.starts.values(), w.ends.values());
    if s.is_empty() {
        return Ok(());
    }
    if s.iter().all(|v| *v == s[0]) && e.iter().all(|v| *v == e[0]) {
        return f((e[0], s[0]), None, &w.keys, &w.input);
    }
    // Rows of one window mostly come in runs: looked up only where the window changes.
    let mut parts: Vec<((i64, i64), Vec<u32>)> = Vec::new();
    let mut index: HashMap<(i64, i64), usize> = HashMap::new();
    let mut last = usize::MAX;
    for i in 0..s.len() {
        let window = (e[i], s[i]);
        if parts.get(last).is_none_or(|p| p.0 != window) {
            last = *index.entry(window).or_insert_with(|| {
                parts.push((window, Vec::new()));
                parts.len() - 1
            });
        }
        parts[last].1.push(i as u32);
    }
    parts.sort_unstable_by_key(|p| p.0);
    for (window, rows) in parts {
        let idx = UInt32Array::from(rows);
        let keys: Vec<ArrayRef> = w
            .keys
            .iter()
            .map(|c| take(c, &idx, None))
            .collect::<Result<_, _>>()?;
        f(window, Some(&idx), &keys, &w.input.take(&idx)?)?;
    }
    Ok(())
}

/// Row `row` missed the window `key` (end, start).
fn missed_window(row: usize, (end, start): (i64, i64)) -> MissedWindow {
    MissedWindow {
        row: row as u32,
        start: Some(start),
        end: Some(end),
    }
}

/// Group-column layout of a window aggregation and the key expressions.
pub(crate) fn layout(node: &WindowAggregateNode) -> (Vec<GroupCol>, Vec<PhysExpr>) {
    let mut layout = Vec::new();
    let mut keys = Vec::new();
    for (i, (e, _)) in node.group_exprs.iter().enumerate() {
        layout.push(if i == node.window_start {
            GroupCol::Start
        } else if i == node.window_end {
            GroupCol::End
        } else if Some(i) == node.window_time {
            GroupCol::Time
        } else {
            keys.push(e.clone());
            GroupCol::Key(keys.len() - 1)
        });
    }
    (layout, keys)
}

/// Key column types; a constant BOOLEAN stands in when there are no keys.
pub(crate) fn key_types(node: &WindowAggregateNode, layout: &[GroupCol]) -> Vec<DataType> {
    let t: Vec<DataType> = layout
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l, GroupCol::Key(_)))
        .map(|(i, _)| node.schema.field(i).data_type().clone())
        .collect();
    if t.is_empty() {
        vec![DataType::Boolean]
    } else {
        t
    }
}

/// Key columns of `batch`; a constant column when the aggregation has no keys.
pub(crate) fn key_arrays(exprs: &[PhysExpr], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    let n = batch.num_rows();
    if exprs.is_empty() {
        return Ok(vec![Arc::new(
            datafusion::arrow::array::BooleanArray::from(vec![true; n]),
        )]);
    }
    exprs
        .iter()
        .map(|e| Ok(e.evaluate(batch)?.into_array(n)?))
        .collect()
}

/// Values of a timestamp column as i64.
pub(crate) fn ts_values(a: &ArrayRef) -> Result<Int64Array> {
    let c = cast(a, &DataType::Int64)?;
    Ok(c.as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .expect("int64"))
}

impl WindowAggregateOperator {
    /// The operator for `node`, with time interpreted by `time`.
    pub fn new(
        node: &WindowAggregateNode,
        time: TimeContext,
        metrics: Arc<JobMetrics>,
    ) -> Result<Self> {
        let (layout, key_exprs) = layout(node);
        let types = key_types(node, &layout);
        let converter = key_converter(&types)?;
        let aggs = Arc::new(AggregateSet {
            aggregates: node.aggregates.clone(),
            filters: node.filters.clone(),
        });
        Ok(Self {
            group_exprs: node.group_exprs.iter().map(|(e, _)| e.clone()).collect(),
            layout,
            start: node.window_start,
            end: node.window_end,
            key_exprs,
            converter,
            aggs,
            time,
            windows: BTreeMap::new(),
            dirty: BTreeSet::new(),
            spilled: BTreeSet::new(),
            spill: None,
            n_keys: types.len(),
            watermark: i64::MIN,
            emitted_watermark: i64::MIN,
            updates: WindowUpdates::new(node.emit),
            late_dirty: BTreeSet::new(),
            schema: node.schema.clone(),
            metrics,
            late_updates: 0,
            late: LateRows::default(),
            partial: None,
            input_schema: node.input.schema(),
        })
    }

    /// The global step of a local-global aggregation: the input is the partial rows of
    /// [`super::window_local::LocalWindowAggregate`], whose states are merged.
    pub fn with_partial_input(mut self) -> Result<Self> {
        let keys = self.key_exprs.len();
        let states = super::groups::state_types(&self.aggs)?.len();
        self.partial = Some(PartialLayout { keys, states });
        Ok(self)
    }

    /// Add rows to the window `key` (end, start); `false` when they were dropped as late.
    fn update_window(
        &mut self,
        key: (i64, i64),
        keys: &[ArrayRef],
        input: &Contribution,
    ) -> Result<bool> {
        let n = keys[0].len();
        if fire_time_ns(key.0, &self.time) <= self.watermark {
            let rows = self.converter.convert_columns(keys)?;
            let Some(t) = self.updates.late_table(key) else {
                return Ok(false); // counted when the caller passes the rows to `late`
            };
            t.add(&rows, input)?;
            self.late_dirty.insert(key);
            self.late_updates += n as u64;
            return Ok(true);
        }
        if self.updates.config.early_fire_ns.is_some() {
            self.updates.early_dirty.insert(key);
        }
        let rows = self.converter.convert_columns(keys)?;
        if self.spilled.contains(&key) {
            self.settle(key)?;
            let sp = self.spill.as_ref().expect("spilled windows have a backend");
            let mut state = sp.state.lock().expect("state lock");
            sp.spill
                .update(&mut **state, key, &rows, input, &self.converter)?;
            return Ok(true);
        }
        self.dirty.insert(key);
        let table = match self.windows.get_mut(&key) {
            Some(t) => t,
            None => {
                let t = GroupTable::new(&self.converter, self.aggs.clone())?;
                self.windows.entry(key).or_insert(t)
            }
        };
        table.add(&rows, input)?;
        self.enforce_limit()?;
        Ok(true)
    }

    /// Over the memory limit: move the largest windows to RocksDB until under it.
    fn enforce_limit(&mut self) -> Result<()> {
        let Some(sp) = &self.spill else { return Ok(()) };
        loop {
            let sizes: Vec<((i64, i64), usize)> = self
                .windows
                .iter()
                .map(|(k, t)| (*k, t.memory_size()))
                .collect();
            let total: usize = sizes.iter().map(|(_, s)| s).sum();
            let Some((largest, _)) = sizes.iter().max_by_key(|(_, s)| *s) else {
                return Ok(());
            };
            if total <= sp.limit {
                return Ok(());
            }
            let table = self.windows.remove(largest).expect("present");
            let mut state = sp.state.lock().expect("state lock");
            sp.spill
                .spill(&mut **state, *largest, table, &self.converter)?;
            self.dirty.insert(*largest);
            self.spilled.insert(*largest);
            JobMetrics::add(&self.metrics.spilled_windows, 1);
        }
    }

    /// A window both spilled and in memory (restored at another parallelism from subtasks
    /// that had and had not spilled it; their keys differ): its groups in memory join the
    /// spilled ones, so that updates and firing see each group once.
    fn settle(&mut self, key: (i64, i64)) -> Result<()> {
        let (Some(sp), Some(table)) = (&self.spill, self.windows.remove(&key)) else {
            return Ok(());
        };
        let mut state = sp.state.lock().expect("state lock");
        sp.spill.spill(&mut **state, key, table, &self.converter)?;
        self.dirty.insert(key);
        Ok(())
    }

    /// Fire a spilled window, chunk by chunk.
    fn fire_spilled(&mut self, key: (i64, i64), out: &mut Vec<Message>) -> Result<()> {
        self.settle(key)?;
        self.spilled.remove(&key);
        let Some(sp) = &self.spill else { return Ok(()) };
        let mut state = sp.state.lock().expect("state lock");
        sp.spill.fire(&mut **state, key, &self.converter, |table| {
            let batch = self.emit(key, table)?;
            if batch.num_rows() > 0 {
                out.push(Message::Batch(StreamBatch::new(batch)));
            }
            Ok(())
        })
    }

    fn emit(&self, key: (i64, i64), table: GroupTable) -> Result<RecordBatch> {
        let (rows, aggs) = table.emit()?;
        let n = rows.num_rows();
        let keys = self.converter.convert_rows(&rows)?;
        let (end, start) = key;
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for l in &self.layout {
            cols.push(match l {
                GroupCol::Start => Arc::new(Int64Array::from_value(start, n)),
                GroupCol::End => Arc::new(Int64Array::from_value(end, n)),
                GroupCol::Time => Arc::new(Int64Array::from_value(window_time(end, &self.time), n)),
                GroupCol::Key(k) => keys[*k].clone(),
            });
        }
        cols.extend(aggs);
        output_batch(&self.schema, cols)
    }
}

impl WindowAggregateOperator {
    /// A batch's windows, keys and what it adds: its rows' aggregate inputs, or, from a
    /// local pre-aggregation, partial states.
    fn windowed(&self, b: &RecordBatch) -> Result<Windowed> {
        if let Some(p) = self.partial {
            let col = |i: usize| b.column(i).clone();
            return Ok(Windowed {
                starts: ts_values(&col(PartialLayout::START))?,
                ends: ts_values(&col(PartialLayout::END))?,
                keys: p.key_range().map(col).collect(),
                input: Contribution::States(p.state_range().map(col).collect()),
            });
        }
        let n = b.num_rows();
        let eval = |e: &PhysExpr| -> Result<ArrayRef> { Ok(e.evaluate(b)?.into_array(n)?) };
        Ok(Windowed {
            starts: ts_values(&eval(&self.group_exprs[self.start])?)?,
            ends: ts_values(&eval(&self.group_exprs[self.end])?)?,
            keys: key_arrays(&self.key_exprs, b)?,
            input: Contribution::Rows(self.aggs.evaluate_inputs(b)?),
        })
    }

    /// Add a batch's rows to their windows; with allowed lateness, rows whose row watermark
    /// has already reached their window's firing time wait for it to fire.
    fn apply_batch(&mut self, batch: &StreamBatch) -> Result<()> {
        match (
            &batch.row_watermarks,
            self.updates.config.allowed_lateness_ns > 0,
        ) {
            (Some(wms), true) if self.partial.is_none() => {
                let now = self.hold_early_late(&batch.batch, wms)?;
                self.apply_rows(&now)
            }
            _ => self.apply_rows(&batch.batch),
        }
    }

    fn apply_rows(&mut self, b: &RecordBatch) -> Result<()> {
        let n = b.num_rows();
        let w = self.windowed(b)?;
        let mut missed = Vec::new();
        for_each_window(&w, |window, rows, keys, input| {
            if !self.update_window(window, keys, input)? {
                match rows {
                    None => missed.extend((0..n).map(|i| missed_window(i, window))),
                    Some(idx) => missed.extend(
                        idx.values()
                            .iter()
                            .map(|i| missed_window(*i as usize, window)),
                    ),
                }
            }
            Ok(())
        })?;
        self.keep_late(b, &missed)
    }

    fn keep_late(&mut self, input: &RecordBatch, missed: &[MissedWindow]) -> Result<()> {
        if let Some(p) = self.partial {
            // Partial rows stand for input rows that are gone: count those (the planner
            // pre-aggregates only where late rows have no destination to be written to).
            let counts = ts_values(input.column(p.count()))?;
            let late: i64 = missed.iter().map(|m| counts.value(m.row as usize)).sum();
            self.late.add_count(late.max(0) as u64);
            return Ok(());
        }
        let cx = LateContext {
            operator: "WindowAggregate",
            reason: "the row's window had fired",
            unit: self.time.unit,
        };
        self.late.push(input, missed, &cx)
    }
}

impl Operator for WindowAggregateOperator {
    fn name(&self) -> &'static str {
        "WindowAggregate"
    }

    fn process_batch(&mut self, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        self.apply_batch(&batch)?;
        if self.updates.is_updating() {
            self.flush_updates(out)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<Message>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        loop {
            let mem = self.windows.keys().next().copied();
            let disk = self.spilled.iter().next().copied();
            let Some(key) = mem.into_iter().chain(disk).min() else {
                break;
            };
            let fires_at = fire_time_ns(key.0, &self.time);
            if fires_at > self.watermark {
                break;
            }
            if self.spilled.contains(&key) {
                self.settle(key)?;
            }
            match self.windows.remove(&key) {
                Some(table) => {
                    self.dirty.insert(key);
                    self.fire(key, table, out)?;
                }
                None => self.fire_spilled(key, out)?,
            }
            self.release_held(key, out)?;
            // Several windows firing at once (a jump of the watermark, the end of the input):
            // each window's rows are followed by the watermark that fires it, so what comes
            // after (a sink merging subtasks) sees them in window order.
            if fires_at < watermark && fires_at > self.emitted_watermark {
                self.emitted_watermark = fires_at;
                out.push(Message::Watermark(fires_at));
            }
        }
        if self.updates.is_updating() {
            // Rows held for windows that had no rows of their own to fire: late, dropped.
            let time = &self.time;
            let wm = self.watermark;
            for key in self.updates.held_windows(|k| fire_time_ns(k.0, time) <= wm) {
                self.release_held(key, out)?;
            }
            self.expire_retained();
            self.flush_updates(out)?;
        }
        self.emitted_watermark = self.emitted_watermark.max(watermark);
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    fn attach_state(&mut self, state: SharedState, memory_limit: usize) -> Result<()> {
        let spill = Spill::new(self.aggs.clone(), self.n_keys)?;
        self.spill = Some(SpillTo {
            spill,
            state,
            limit: memory_limit,
        });
        Ok(())
    }

    fn is_stateful(&self) -> bool {
        true
    }

    fn late_rows(&mut self) -> Option<&mut LateRows> {
        Some(&mut self.late)
    }

    fn counts(&self) -> crate::observe::op_metrics::EventCounts {
        crate::observe::op_metrics::EventCounts {
            late_rows: Some(self.late.count()),
            late_updates: Some(self.late_updates),
            expired_keys: None,
        }
    }

    fn state_size(&self) -> crate::observe::op_metrics::StateSize {
        crate::observe::op_metrics::StateSize {
            open_windows: (self.windows.len() + self.spilled.len()) as u64,
            keys: self.windows.values().map(|t| t.num_groups() as u64).sum(),
            bytes: self.windows.values().map(|t| t.memory_size() as u64).sum(),
        }
    }

    /// Incremental: only windows that changed since the last barrier are written (or deleted
    /// when they fired); the backend keeps the others from earlier checkpoints.
    fn snapshot(&mut self, state: &mut dyn StateBackend) -> Result<()> {
        state.put(WATERMARK_KEY, &self.watermark.to_be_bytes())?;
        for key in std::mem::take(&mut self.dirty) {
            let k = window_key(key);
            match self.windows.get_mut(&key) {
                Some(t) => state.put(&k, &encode_columns(&t.snapshot(&self.converter)?)?)?,
                None => state.delete(&k)?,
            }
        }
        if self.updates.is_updating() {
            self.snapshot_updates(state)?;
        }
        Ok(())
    }

    /// Windows' groups split by key (keys first in a window's columns; at their group
    /// positions in emitted rows), spilled groups by key, the watermark the smallest.
    fn state_shape(&self) -> Option<crate::state::rescale::StateShape> {
        use crate::state::rescale::{KeyOf, Rule, StateShape};
        let keys = KeyOf::Columns((0..self.n_keys).collect());
        let emitted = self.layout.iter().enumerate();
        let emitted = emitted.filter(|(_, l)| matches!(l, GroupCol::Key(_)));
        let columns = |prefix: &[u8], key: KeyOf| Rule::Columns {
            prefix: prefix.to_vec(),
            key,
        };
        Some(StateShape {
            rules: vec![
                Rule::MinI64 {
                    key: WATERMARK_KEY.to_vec(),
                },
                columns(b"w/", keys.clone()),
                columns(b"f/", keys.clone()),
                columns(b"h/", keys),
                columns(b"e/", KeyOf::Columns(emitted.map(|(i, _)| i).collect())),
                Rule::KeyRow {
                    prefix: b"s/".to_vec(),
                    skip: 16,
                },
                Rule::Shared {
                    prefix: b"m/spilled/".to_vec(),
                },
            ],
        })
    }

    fn restore(&mut self, state: &dyn StateBackend) -> Result<()> {
        self.spilled = Spill::registered(state)?.into_iter().collect();
        if let Some(wm) = state.get(WATERMARK_KEY)? {
            self.watermark = i64::from_be_bytes(
                wm.as_slice()
                    .try_into()
                    .unwrap_or([0x80, 0, 0, 0, 0, 0, 0, 0]),
            );
        }
        for (k, v) in state.scan(b"w/")? {
            let cols = decode_columns(&v)?;
            let t = GroupTable::restore(&self.converter, self.aggs.clone(), &cols, self.n_keys)?;
            self.windows.insert(parse_key(&k)?, t);
        }
        self.restore_updates(state)
    }
}

const WATERMARK_KEY: &[u8] = b"m/watermark";

/// `w/` + end + start, ordered like the windows.
fn window_key(key: (i64, i64)) -> Vec<u8> {
    prefixed(b"w/", key)
}

/// A two-byte prefix, then end and start.
fn prefixed(prefix: &[u8], (end, start): (i64, i64)) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&i64_key(end));
    k.extend_from_slice(&i64_key(start));
    k
}

/// The (end, start) of a key made by [`prefixed`].
fn parse_key(k: &[u8]) -> Result<(i64, i64)> {
    match (
        k.get(2..).and_then(i64_from_key),
        k.get(10..).and_then(i64_from_key),
    ) {
        (Some(end), Some(start)) => Ok((end, start)),
        _ => Err(crate::error::EngineError::State(
            "bad window state key".into(),
        )),
    }
}
