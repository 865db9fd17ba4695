//! Deduplication and top-N: `ROW_NUMBER() OVER (PARTITION BY k ORDER BY o)` kept to the first N
//! rows of each partition, as a changelog.
//!
//! Each partition holds at most N entries, sorted by the ORDER BY columns in Arrow's row format
//! (byte order = sort order, descending and NULLS FIRST/LAST included). A row that sorts after
//! the N-th is dropped at once; one that enters pushes the last entry out. On ties the row that
//! came first keeps its place, except for keep-last deduplication on event time, where the newer
//! row replaces the kept one (Flink's rule). After each batch the touched partitions are diffed:
//! with the row number in the output, each rank whose row changed gives `-U`/`+U` (or `+I`/`-D`);
//! without it, only rows that entered or left are emitted.
//!
//! Checkpoints hold one entry per partition, `r/k/<partition key in row format>`: its entries'
//! sort keys and rows, each length-prefixed (4 bytes LE). A barrier writes only the partitions
//! changed since the last one (see [`super::group_state`]).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BinaryArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};

use super::group_state::{self, Dirty, KeyedEntries};
use super::groups::key_converter;
use super::key_index::{retain_by, Clock, KeyIndex};
use super::window_aggregate::key_arrays;
use crate::changelog::RowKind;
use crate::error::{EngineError, Result};
use crate::message::{Message, StreamBatch};
use crate::observe::op_metrics::{EventCounts, StateSize};
use crate::operator::Operator;
use crate::state::{decode_columns, StateBackend};
use weir_planner::stream_plan::{PhysExpr, RankNode};

#[derive(Clone, PartialEq)]
struct Entry {
    sort: Box<[u8]>,
    row: Box<[u8]>,
}

/// Deduplication and top-N per partition, emitting a changelog.
pub struct RankOperator {
    partition: Vec<PhysExpr>,
    order: Vec<PhysExpr>,
    sort_converter: RowConverter,
    row_converter: RowConverter,
    keys: KeyIndex,
    parts: Vec<Vec<Entry>>,
    limit: usize,
    output_rank: bool,
    newest_wins_ties: bool,
    schema: SchemaRef,
    /// Partitions changed since the last snapshot.
    dirty: Dirty,
    /// The restored checkpoint held every partition under one key (before per-key entries).
    legacy: bool,
}

impl RankOperator {
    /// The operator for `node`; with `ttl_ms`, partitions idle that many milliseconds of
    /// processing time (read from `clock`) are dropped.
    pub fn new(node: &RankNode, ttl_ms: Option<u64>, clock: Clock) -> Result<Self> {
        let in_schema = node.input.schema();
        let mut key_types = node
            .partition
            .iter()
            .map(|e| e.data_type(&in_schema))
            .collect::<Result<Vec<_>, _>>()?;
        if key_types.is_empty() {
            key_types.push(DataType::Boolean);
        }
        let sort_fields = node
            .order
            .iter()
            .map(|s| {
                Ok(SortField::new_with_options(
                    s.expr.data_type(&in_schema)?,
                    s.options,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let row_fields = in_schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(Self {
            partition: node.partition.clone(),
            order: node.order.iter().map(|s| s.expr.clone()).collect(),
            sort_converter: RowConverter::new(sort_fields)?,
            row_converter: RowConverter::new(row_fields)?,
            keys: KeyIndex::new(key_converter(&key_types)?, ttl_ms, clock),
            parts: vec![],
            limit: node.limit,
            output_rank: node.output_rank,
            newest_wins_ties: node.newest_wins_ties,
            schema: node.schema.clone(),
            dirty: Dirty::default(),
            legacy: false,
        })
    }

    /// Put one row into its partition's top N.
    fn offer(&mut self, g: usize, entry: Entry) {
        let list = &mut self.parts[g];
        let pos = if self.newest_wins_ties {
            list.partition_point(|e| e.sort < entry.sort)
        } else {
            list.partition_point(|e| e.sort <= entry.sort)
        };
        if pos >= self.limit {
            return;
        }
        if self.newest_wins_ties && list.get(pos).is_some_and(|e| e.sort == entry.sort) {
            list[pos] = entry;
            return;
        }
        list.insert(pos, entry);
        list.truncate(self.limit);
    }

    /// The changes between a partition's entries before and after a batch.
    fn diff(&self, before: &[Entry], after: &[Entry], out: &mut Vec<(Box<[u8]>, u64, RowKind)>) {
        if self.output_rank {
            for r in 0..before.len().max(after.len()) {
                let rank = r as u64 + 1;
                match (before.get(r), after.get(r)) {
                    (Some(b), Some(a)) if b.row == a.row => {}
                    (Some(b), Some(a)) => {
                        out.push((b.row.clone(), rank, RowKind::UpdateBefore));
                        out.push((a.row.clone(), rank, RowKind::UpdateAfter));
                    }
                    (Some(b), None) => out.push((b.row.clone(), rank, RowKind::Delete)),
                    (None, Some(a)) => out.push((a.row.clone(), rank, RowKind::Insert)),
                    (None, None) => {}
                }
            }
            return;
        }
        let mut count: HashMap<&[u8], i64> = HashMap::new();
        before
            .iter()
            .for_each(|e| *count.entry(&e.row[..]).or_default() -= 1);
        after
            .iter()
            .for_each(|e| *count.entry(&e.row[..]).or_default() += 1);
        let gone: Vec<&Entry> = before
            .iter()
            .filter(|e| take_one(&mut count, &e.row, -1))
            .collect();
        let new: Vec<&Entry> = after
            .iter()
            .filter(|e| take_one(&mut count, &e.row, 1))
            .collect();
        for i in 0..gone.len().max(new.len()) {
            match (gone.get(i), new.get(i)) {
                (Some(g), Some(n)) => {
                    out.push((g.row.clone(), 0, RowKind::UpdateBefore));
                    out.push((n.row.clone(), 0, RowKind::UpdateAfter));
                }
                (Some(g), None) => out.push((g.row.clone(), 0, RowKind::Delete)),
                (None, Some(n)) => out.push((n.row.clone(), 0, RowKind::Insert)),
                (None, None) => {}
            }
        }
    }

    fn build(&self, changes: Vec<(Box<[u8]>, u64, RowKind)>) -> Result<RecordBatch> {
        let parser = self.row_converter.parser();
        let mut rows = self.row_converter.empty_rows(changes.len(), 0);
        for (r, _, _) in &changes {
            rows.push(parser.parse(r));
        }
        let mut cols = self.row_converter.convert_rows(&rows)?;
        cols.push(Arc::new(UInt64Array::from_iter_values(
            changes.iter().map(|c| c.1),
        )));
        let cols: Vec<ArrayRef> = cols
            .into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| datafusion::arrow::compute::cast(&c, f.data_type()))
            .collect::<Result<_, _>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

/// Counts `sign` off `row`'s surplus; true when the row is one of the surplus.
fn take_one(count: &mut HashMap<&[u8], i64>, row: &[u8], sign: i64) -> bool {
    match count.get_mut(row) {
        Some(c) if *c * sign > 0 => {
            *c -= sign;
            true
        }
        _ => false,
    }
}

impl Operator for RankOperator {
    fn name(&self) -> &'static str {
        if self.limit == 1 {
            "Deduplicate"
        } else {
            "TopN"
        }
    }

    fn process_batch(&mut self, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        if let Some(keep) = self.keys.expire() {
            retain_by(&mut self.parts, &keep);
            self.dirty.all();
        }
        let b = &batch.batch;
        let n = b.num_rows();
        let (groups, touched) = self.keys.intern(&key_arrays(&self.partition, b)?)?;
        self.parts.resize_with(self.keys.len(), Vec::new);
        let order = self
            .order
            .iter()
            .map(|e| Ok(e.evaluate(b)?.into_array(n)?))
            .collect::<Result<Vec<_>>>()?;
        let sort = self.sort_converter.convert_columns(&order)?;
        let rows = self.row_converter.convert_columns(b.columns())?;
        let before: Vec<Vec<Entry>> = touched.iter().map(|g| self.parts[*g].clone()).collect();
        for (i, g) in groups.iter().enumerate() {
            let entry = Entry {
                sort: sort.row(i).as_ref().into(),
                row: rows.row(i).as_ref().into(),
            };
            self.offer(*g, entry);
        }
        self.dirty.touch(&touched);
        let mut changes = Vec::new();
        for (g, old) in touched.iter().zip(&before) {
            self.diff(old, &self.parts[*g], &mut changes);
        }
        if changes.is_empty() {
            return Ok(());
        }
        let kinds: Vec<i8> = changes.iter().map(|c| c.2 as i8).collect();
        let batch = self.build(changes)?;
        out.push(Message::Batch(StreamBatch::new(batch).with_kinds(kinds)));
        Ok(())
    }

    fn is_stateful(&self) -> bool {
        true
    }

    fn counts(&self) -> EventCounts {
        self.keys.counts()
    }

    /// Keys, and every partition's kept rows with their sort keys.
    fn state_size(&self) -> StateSize {
        let entries: usize = self
            .parts
            .iter()
            .map(|p| {
                let rows: usize = p.iter().map(|e| e.sort.len() + e.row.len()).sum();
                rows + p.capacity() * std::mem::size_of::<Entry>()
            })
            .sum();
        let lists = self.parts.capacity() * std::mem::size_of::<Vec<Entry>>();
        self.keys.state_size_with(entries + lists)
    }

    /// The partitions changed since the last barrier, one entry each.
    fn snapshot(&mut self, state: &mut dyn StateBackend) -> Result<()> {
        let Some(changed) = self.dirty.take() else {
            return Ok(());
        };
        if std::mem::take(&mut self.legacy) {
            state.delete(LEGACY_KEY)?;
        }
        let keys = KeyedEntries {
            prefix: KEY_PREFIX,
            keys: self.keys.rows(),
            len: self.parts.len(),
        };
        keys.write(state, changed, |g| blob(&self.parts[g]))
    }

    /// One entry per partition, under its key.
    fn state_shape(&self) -> Option<crate::state::rescale::StateShape> {
        use crate::state::rescale::{Rule, StateShape};
        Some(StateShape {
            rules: vec![Rule::KeyRow {
                prefix: KEY_PREFIX.to_vec(),
                skip: 0,
            }],
        })
    }

    fn restore(&mut self, state: &dyn StateBackend) -> Result<()> {
        self.restore_legacy(state)?;
        group_state::read_prefix(state, KEY_PREFIX, |chunk| {
            let cols = group_state::key_columns(self.keys.converter(), &chunk)?;
            let (groups, _) = self.keys.intern(&cols)?;
            self.parts.resize_with(self.keys.len(), Vec::new);
            for (e, g) in chunk.iter().zip(groups) {
                self.parts[g] = entries(&e.value).ok_or_else(corrupt)?;
            }
            Ok(())
        })
    }
}

impl RankOperator {
    /// The whole-table entry of an older checkpoint: key columns, then each partition's
    /// entries as one binary value. The next barrier rewrites it as per-key entries.
    fn restore_legacy(&mut self, state: &dyn StateBackend) -> Result<()> {
        let Some(bytes) = state.get(LEGACY_KEY)? else {
            return Ok(());
        };
        self.legacy = true;
        self.dirty.all();
        let mut cols = decode_columns(&bytes)?;
        let blobs = cols.pop().ok_or_else(corrupt)?;
        let blobs = blobs
            .as_any()
            .downcast_ref::<BinaryArray>()
            .ok_or_else(corrupt)?;
        if blobs.is_empty() {
            return Ok(());
        }
        self.keys.restore(&cols)?;
        self.parts = (0..blobs.len())
            .map(|i| entries(blobs.value(i)).ok_or_else(corrupt))
            .collect::<Result<_>>()?;
        Ok(())
    }
}

/// A partition's entries as one value: each sort key and row, length-prefixed.
fn blob(part: &[Entry]) -> Vec<u8> {
    let mut b = Vec::new();
    for e in part {
        for field in [&e.sort, &e.row] {
            b.extend((field.len() as u32).to_le_bytes());
            b.extend(field.iter());
        }
    }
    b
}

fn entries(mut b: &[u8]) -> Option<Vec<Entry>> {
    let mut out = Vec::new();
    let next = |b: &mut &[u8]| -> Option<Box<[u8]>> {
        let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let v = b.get(4..4 + len)?.into();
        *b = &b[4 + len..];
        Some(v)
    };
    while !b.is_empty() {
        let sort = next(&mut b)?;
        let row = next(&mut b)?;
        out.push(Entry { sort, row });
    }
    Some(out)
}

/// Where the per-partition entries live.
const KEY_PREFIX: &[u8] = b"r/k/";
/// The whole-table entry of checkpoints written before per-partition entries (still read).
const LEGACY_KEY: &[u8] = b"r/parts";

fn corrupt() -> EngineError {
    EngineError::State("corrupt top-N state".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::key_index::process_clock;
    use crate::state::{encode_columns, MemoryBackend};
    use datafusion::arrow::array::{Int64Array, StringArray};

    /// The top-2 node of `SELECT k, v FROM (.. ROW_NUMBER() OVER (PARTITION BY k ORDER BY v
    /// DESC) ..) WHERE rn <= 2`.
    fn node() -> RankNode {
        let sql = "CREATE TABLE t (k STRING, v BIGINT) WITH ('connector' = 'x');
                   SELECT k, v FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k
                     ORDER BY v DESC) AS rn FROM t) WHERE rn <= 2";
        crate::operators::planned(sql, |n| match n {
            weir_planner::StreamNode::Rank(r) => Some(r.clone()),
            _ => None,
        })
    }

    fn rows(node: &RankNode, rows: &[(&str, i64)]) -> StreamBatch {
        let k: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
        let v: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1)));
        StreamBatch::new(RecordBatch::try_new(node.input.schema(), vec![k, v]).unwrap())
    }

    /// The `v` of each row `op` emits for `input`, negative for rows leaving.
    fn changes(op: &mut RankOperator, input: StreamBatch) -> Vec<i64> {
        let mut out = Vec::new();
        op.process_batch(input, &mut out).unwrap();
        let Some(Message::Batch(b)) = out.pop() else {
            return vec![];
        };
        let v = b
            .batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let kinds = b.kinds.as_ref().map(|k| k.to_vec()).unwrap_or_default();
        (0..v.len())
            .map(|i| match kinds.get(i) {
                Some(k) if *k == RowKind::UpdateBefore as i8 || *k == RowKind::Delete as i8 => {
                    -v.value(i)
                }
                _ => v.value(i),
            })
            .collect()
    }

    #[test]
    fn a_checkpoint_writes_only_the_partitions_that_changed() {
        let node = node();
        let op = || RankOperator::new(&node, None, process_clock).unwrap();
        let mut first = op();
        changes(
            &mut first,
            rows(&node, &[("a", 1), ("b", 5), ("a", 2), ("c", 1)]),
        );
        let mut state = MemoryBackend::default();
        first.snapshot(&mut state).unwrap();
        assert_eq!(state.scan(KEY_PREFIX).unwrap().len(), 3);
        state.delete_prefix(KEY_PREFIX).unwrap();
        changes(&mut first, rows(&node, &[("a", 3)]));
        first.snapshot(&mut state).unwrap();
        assert_eq!(
            state.scan(KEY_PREFIX).unwrap().len(),
            1,
            "only 'a' is written"
        );

        let mut second = op();
        second.restore(&state).unwrap();
        // 'a' holds 3 and 2: a 4 pushes the 2 out.
        assert_eq!(changes(&mut second, rows(&node, &[("a", 4)])), [-2, 4]);
    }

    #[test]
    fn an_older_whole_table_checkpoint_restores_and_is_rewritten_per_partition() {
        let node = node();
        let op = || RankOperator::new(&node, None, process_clock).unwrap();
        let mut first = op();
        changes(&mut first, rows(&node, &[("a", 1), ("b", 5), ("a", 2)]));
        let mut cols = first.keys.all_key_columns().unwrap();
        let blobs = first.parts.iter().map(|p| blob(p));
        cols.push(Arc::new(BinaryArray::from_iter_values(blobs)));
        let mut state = MemoryBackend::default();
        state
            .put(LEGACY_KEY, &encode_columns(&cols).unwrap())
            .unwrap();

        let mut second = op();
        second.restore(&state).unwrap();
        assert_eq!(changes(&mut second, rows(&node, &[("a", 3)])), [-1, 3]);
        second.snapshot(&mut state).unwrap();
        assert_eq!(state.get(LEGACY_KEY).unwrap(), None);
        assert_eq!(state.scan(KEY_PREFIX).unwrap().len(), 2);
        let mut third = op();
        third.restore(&state).unwrap();
        assert_eq!(changes(&mut third, rows(&node, &[("b", 6)])), [6]);
    }
}
