//! GROUP BY without a window: one row per key, kept current as a changelog.
//!
//! Each batch is applied to the keys it touches; then, per touched key, the row emitted before
//! and the row now are compared: a new key gives `+I`, a changed one `-U` old and `+U` new, a key
//! whose rows were all retracted `-D`, and an unchanged one nothing. Updates are coalesced per
//! batch (like Flink's mini-batch), so the final table never depends on batching while the number
//! of intermediate updates may. The input may itself be a changelog: `-U`/`-D` rows are
//! subtracted, which is why the aggregates keep retractable state ([`super::retract`]).

use datafusion::arrow::array::{Array, ArrayRef, BinaryArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use super::group_state::{self, Changed, Dirty, GroupsView, LEGACY_KEY};
use super::groups::{key_converter, output_batch, AggregateSet};
use super::key_index::{retain_by, Clock, KeyIndex};
use super::retract::RetractAcc;
use super::window_aggregate::key_arrays;
use crate::changelog::{ChangeBuilder, RowKind};
use crate::error::{EngineError, Result};
use crate::message::{Message, StreamBatch};
use crate::observe::op_metrics::{EventCounts, StateSize};
use crate::operator::Operator;
use crate::state::{decode_columns, StateBackend};
use weir_planner::stream_plan::{GroupAggregateNode, PhysExpr};

/// Non-windowed GROUP BY, emitting a changelog of each group's current row.
pub struct GroupAggregateOperator {
    key_exprs: Vec<PhysExpr>,
    /// Output key columns (0 for a global aggregate, which groups by a constant).
    n_keys: usize,
    keys: KeyIndex,
    aggs: AggregateSet,
    accs: Vec<RetractAcc>,
    /// Net input rows per group: 0 means the group's row is deleted.
    counts: Vec<i64>,
    schema: SchemaRef,
    /// Groups changed since the last checkpoint.
    dirty: Dirty,
}

impl GroupAggregateOperator {
    /// The operator for `node`; with `ttl_ms`, groups idle that many milliseconds of
    /// processing time (read from `clock`) are dropped.
    pub fn new(node: &GroupAggregateNode, ttl_ms: Option<u64>, clock: Clock) -> Result<Self> {
        let n_keys = node.group_exprs.len();
        let mut types: Vec<DataType> = (0..n_keys)
            .map(|i| node.schema.field(i).data_type().clone())
            .collect();
        if types.is_empty() {
            types.push(DataType::Boolean);
        }
        let in_schema = node.input.schema();
        let append_only = !node.input.is_updating();
        let mut accs = Vec::new();
        for agg in &node.aggregates {
            let arg_types = agg
                .expressions()
                .iter()
                .map(|e| e.data_type(&in_schema))
                .collect::<Result<Vec<_>, _>>()?;
            accs.push(RetractAcc::new(agg, &arg_types, append_only)?);
        }
        Ok(Self {
            key_exprs: node.group_exprs.iter().map(|(e, _)| e.clone()).collect(),
            n_keys,
            keys: KeyIndex::new(key_converter(&types)?, ttl_ms, clock),
            aggs: AggregateSet {
                aggregates: node.aggregates.clone(),
                filters: node.filters.clone(),
            },
            accs,
            counts: vec![],
            schema: node.schema.clone(),
            dirty: Dirty::default(),
        })
    }

    /// The result rows of `groups` as they stand (keys, then aggregates).
    fn rows_of(&self, groups: &[usize], keys: &[ArrayRef]) -> Result<RecordBatch> {
        let mut cols: Vec<ArrayRef> = keys[..self.n_keys].to_vec();
        for acc in &self.accs {
            cols.push(acc.evaluate(groups)?);
        }
        output_batch(&self.schema, cols)
    }

    fn expire(&mut self) {
        if let Some(keep) = self.keys.expire() {
            retain_by(&mut self.counts, &keep);
            self.accs.iter_mut().for_each(|a| a.retain(&keep));
            self.dirty.all();
        }
    }
}

/// +1 for rows that add (`+I`, `+U`), -1 for rows that retract (`-U`, `-D`).
pub fn signs(batch: &StreamBatch) -> Vec<i64> {
    match &batch.kinds {
        Some(k) => k
            .iter()
            .map(|v| {
                if RowKind::from_i8(*v).is_retraction() {
                    -1
                } else {
                    1
                }
            })
            .collect(),
        None => vec![1; batch.num_rows()],
    }
}

impl Operator for GroupAggregateOperator {
    fn name(&self) -> &'static str {
        "GroupAggregate"
    }

    fn process_batch(&mut self, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        self.expire();
        let b = &batch.batch;
        let (groups, touched) = self.keys.intern(&key_arrays(&self.key_exprs, b)?)?;
        let n = self.keys.len();
        self.counts.resize(n, 0);
        self.accs.iter_mut().for_each(|a| a.resize(n));
        let keys = self.keys.key_columns(&touched)?;
        let before = self.rows_of(&touched, &keys)?;
        let existed: Vec<bool> = touched.iter().map(|g| self.counts[*g] > 0).collect();
        let signs = signs(&batch);
        for (g, s) in groups.iter().zip(&signs) {
            self.counts[*g] += s;
        }
        let inputs = self.aggs.evaluate_inputs(b)?;
        for (acc, input) in self.accs.iter_mut().zip(&inputs) {
            acc.update(&input.args, &groups, &signs, input.filter.as_ref())?;
        }
        self.dirty.touch(&touched);
        let after = self.rows_of(&touched, &keys)?;
        let changed = crate::changelog::changed_rows(&before, &after, self.n_keys)?;
        let old = touched.len() as u32;
        let mut changes = ChangeBuilder::default();
        for (i, g) in touched.iter().enumerate() {
            let (was, is) = (existed[i], self.counts[*g] > 0);
            let i = i as u32;
            match (was, is) {
                (false, true) => changes.push(old + i, RowKind::Insert),
                (true, false) => changes.push(i, RowKind::Delete),
                (true, true) if changed.value(i as usize) => {
                    changes.push(i, RowKind::UpdateBefore);
                    changes.push(old + i, RowKind::UpdateAfter);
                }
                _ => {}
            }
        }
        if let Some(b) = changes.build(&before, &after)? {
            out.push(Message::Batch(b));
        }
        Ok(())
    }

    fn is_stateful(&self) -> bool {
        true
    }

    fn counts(&self) -> EventCounts {
        self.keys.counts()
    }

    /// Keys, their encoded rows, each group's count and every aggregate's state.
    fn state_size(&self) -> StateSize {
        let accs: usize = self.accs.iter().map(|a| a.memory_size()).sum();
        let counts = self.counts.capacity() * std::mem::size_of::<i64>();
        self.keys.state_size_with(accs + counts)
    }

    /// The groups changed since the last barrier, one entry per key (see [`super::group_state`]).
    fn snapshot(&mut self, state: &mut dyn StateBackend) -> Result<()> {
        let Some(changed) = self.dirty.take() else {
            return Ok(());
        };
        if changed == Changed::All {
            state.delete(LEGACY_KEY)?;
        }
        let view = GroupsView {
            keys: self.keys.rows(),
            counts: &self.counts,
            accs: &self.accs,
        };
        group_state::write(state, &view, changed)
    }

    /// One entry per group, under its key.
    fn state_shape(&self) -> Option<crate::state::rescale::StateShape> {
        use crate::state::rescale::{Rule, StateShape};
        Some(StateShape {
            rules: vec![Rule::KeyRow {
                prefix: group_state::KEY_PREFIX.to_vec(),
                skip: 0,
            }],
        })
    }

    fn restore(&mut self, state: &dyn StateBackend) -> Result<()> {
        if self.restore_legacy(state)? {
            self.dirty.all(); // the next checkpoint writes per-key entries
        }
        group_state::read(state, |entries| {
            let cols = group_state::key_columns(self.keys.converter(), &entries)?;
            let (groups, _) = self.keys.intern(&cols)?;
            let n = self.keys.len();
            self.counts.resize(n, 0);
            self.accs.iter_mut().for_each(|a| a.resize(n));
            for (e, g) in entries.iter().zip(groups) {
                self.counts[g] = group_state::load_value(&e.value, g, &mut self.accs)?;
            }
            Ok(())
        })
    }
}

impl GroupAggregateOperator {
    /// A whole-table entry of an older checkpoint; whether there was one.
    fn restore_legacy(&mut self, state: &dyn StateBackend) -> Result<bool> {
        let Some(bytes) = state.get(LEGACY_KEY)? else {
            return Ok(false);
        };
        let cols = decode_columns(&bytes)?;
        let n_key_cols = cols
            .len()
            .checked_sub(1 + self.accs.len())
            .ok_or_else(corrupt)?;
        if cols[n_key_cols].is_empty() {
            return Ok(true);
        }
        self.keys.restore(&cols[..n_key_cols])?;
        let counts = cols[n_key_cols]
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(corrupt)?;
        self.counts = counts.values().to_vec();
        for (acc, col) in self.accs.iter_mut().zip(&cols[n_key_cols + 1..]) {
            acc.decode(
                col.as_any()
                    .downcast_ref::<BinaryArray>()
                    .ok_or_else(corrupt)?,
            )?;
        }
        Ok(true)
    }
}

fn corrupt() -> EngineError {
    EngineError::State("corrupt group aggregate state".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::key_index::process_clock;
    use crate::state::{encode_columns, MemoryBackend};
    use std::sync::Arc;
    use weir_planner::stream_plan::StreamNode;

    /// The GROUP BY node of `SELECT k, COUNT(*), MAX(v) FROM t GROUP BY k`.
    fn node() -> GroupAggregateNode {
        let sql = "CREATE TABLE t (k STRING, v BIGINT) WITH ('connector' = 'x');
                   SELECT k, COUNT(*) AS n, MAX(v) AS m FROM t GROUP BY k";
        crate::operators::planned(sql, |n| match n {
            StreamNode::GroupAggregate(a) => Some(a.clone()),
            _ => None,
        })
    }

    /// Rows `(k, v)` in the node's input columns.
    fn rows(node: &GroupAggregateNode, rows: &[(&str, i64)]) -> StreamBatch {
        crate::operators::test_rows(node.input.schema(), rows)
    }

    /// The counts (`n`) of the rows `op` emits for `input`.
    fn counts(op: &mut GroupAggregateOperator, input: StreamBatch) -> Vec<i64> {
        let mut out = Vec::new();
        op.process_batch(input, &mut out).unwrap();
        let Some(Message::Batch(b)) = out.pop() else {
            panic!("a changelog batch")
        };
        let n = b
            .batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        n.values().to_vec()
    }

    #[test]
    fn an_older_whole_table_checkpoint_restores_and_is_rewritten_per_key() {
        let node = node();
        let op = || GroupAggregateOperator::new(&node, None, process_clock).unwrap();
        let mut first = op();
        counts(&mut first, rows(&node, &[("a", 1), ("b", 5), ("a", 2)]));
        // The state as checkpoints before per-key entries wrote it.
        let n = first.keys.len();
        let mut cols = first.keys.all_key_columns().unwrap();
        cols.push(Arc::new(Int64Array::from(first.counts.clone())));
        cols.extend(first.accs.iter().map(|a| a.encode(n)));
        let mut state = MemoryBackend::default();
        state
            .put(LEGACY_KEY, &encode_columns(&cols).unwrap())
            .unwrap();

        let mut second = op();
        second.restore(&state).unwrap();
        assert_eq!(
            counts(&mut second, rows(&node, &[("a", 3)])),
            [2, 3],
            "-U then +U"
        );
        second.snapshot(&mut state).unwrap();
        assert_eq!(state.get(LEGACY_KEY).unwrap(), None);
        assert_eq!(state.scan(group_state::KEY_PREFIX).unwrap().len(), 2);

        let mut third = op();
        third.restore(&state).unwrap();
        assert_eq!(counts(&mut third, rows(&node, &[("b", 1)])), [1, 2]);
        assert_eq!(counts(&mut third, rows(&node, &[("a", 1)])), [3, 4]);
    }
}
