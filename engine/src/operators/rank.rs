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

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BinaryArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};

use super::groups::key_converter;
use super::key_index::{retain_by, Clock, KeyIndex};
use super::window_aggregate::key_arrays;
use crate::changelog::RowKind;
use crate::error::{EngineError, Result};
use crate::message::{Message, StreamBatch};
use crate::operator::Operator;
use crate::runtime::op_metrics::{EventCounts, StateSize};
use crate::state::{decode_columns, encode_columns, StateBackend};
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
    dirty: bool,
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
            dirty: false,
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
        self.dirty = true;
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

    /// Every partition when anything changed: key columns, then each partition's entries as
    /// one binary value.
    fn snapshot(&mut self, state: &mut dyn StateBackend) -> Result<()> {
        if !std::mem::take(&mut self.dirty) {
            return Ok(());
        }
        let mut cols = self.keys.all_key_columns()?;
        let blobs = self.parts.iter().map(|p| {
            let mut b = Vec::new();
            for e in p {
                for part in [&e.sort, &e.row] {
                    b.extend((part.len() as u32).to_le_bytes());
                    b.extend(part.iter());
                }
            }
            b
        });
        cols.push(Arc::new(BinaryArray::from_iter_values(blobs)));
        state.put(PARTS_KEY, &encode_columns(&cols)?)
    }

    fn restore(&mut self, state: &dyn StateBackend) -> Result<()> {
        let Some(bytes) = state.get(PARTS_KEY)? else {
            return Ok(());
        };
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

const PARTS_KEY: &[u8] = b"r/parts";

fn corrupt() -> EngineError {
    EngineError::State("corrupt top-N state".into())
}
