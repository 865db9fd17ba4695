//! Grouped aggregation state: key rows -> group index -> DataFusion accumulators.
//!
//! Keys are encoded once per batch with Arrow's row format and interned in a hash table of
//! (hash, group) pairs whose bytes live in the table's own rows (nothing allocated per key).
//! Aggregates use DataFusion's `GroupsAccumulator` where the function has one, and per-group
//! `Accumulator`s otherwise (e.g. DISTINCT).

use std::collections::HashMap;
use std::hash::BuildHasher;

use hashbrown::HashTable;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::scalar::ScalarValue;

use crate::error::Result;
use weir_planner::stream_plan::PhysExpr;

/// The aggregate functions of one operator, with their argument and filter expressions.
#[derive(Clone)]
pub struct AggregateSet {
    /// The aggregate functions.
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Each aggregate's `FILTER (WHERE ..)` predicate, if it has one.
    pub filters: Vec<Option<PhysExpr>>,
}

impl AggregateSet {
    /// Arguments and filter of each aggregate, evaluated over `batch`.
    pub fn evaluate_inputs(&self, batch: &RecordBatch) -> Result<Vec<AggInput>> {
        let n = batch.num_rows();
        let mut out = Vec::with_capacity(self.aggregates.len());
        for (agg, filter) in self.aggregates.iter().zip(&self.filters) {
            let mut args = Vec::new();
            for e in input_exprs(agg) {
                args.push(e.evaluate(batch)?.into_array(n)?);
            }
            let filter = match filter {
                Some(f) => Some(to_bool(f.evaluate(batch)?.into_array(n)?)?),
                None => None,
            };
            out.push(AggInput { args, filter });
        }
        Ok(out)
    }
}

/// What an aggregate's accumulator is given: its arguments, then its ORDER BY expressions (an
/// order-sensitive aggregate such as `ARRAY_AGG(x ORDER BY y)` orders by those itself).
pub(crate) fn input_exprs(
    agg: &datafusion::physical_expr::aggregate::AggregateFunctionExpr,
) -> Vec<weir_planner::stream_plan::PhysExpr> {
    let all = agg.all_expressions();
    [all.args, all.order_by_exprs].concat()
}

fn to_bool(a: ArrayRef) -> Result<BooleanArray> {
    a.as_any()
        .downcast_ref::<BooleanArray>()
        .cloned()
        .ok_or_else(|| crate::error::EngineError::Internal("FILTER is not boolean".into()))
}

/// Evaluated inputs of one aggregate for one batch.
pub struct AggInput {
    /// The evaluated argument columns.
    pub args: Vec<ArrayRef>,
    /// The evaluated `FILTER` predicate, if the aggregate has one.
    pub filter: Option<BooleanArray>,
}

impl AggInput {
    /// The same inputs restricted to `rows`.
    pub fn take(&self, rows: &UInt32Array) -> Result<AggInput> {
        let args = self
            .args
            .iter()
            .map(|a| take(a, rows, None))
            .collect::<Result<_, _>>()?;
        let filter = match &self.filter {
            Some(f) => Some(to_bool(take(f, rows, None)?)?),
            None => None,
        };
        Ok(AggInput { args, filter })
    }
}

/// What a batch brings to a group table: input rows' aggregate inputs, or partial states
/// (one row per group, every aggregate's state columns) from a local pre-aggregation.
pub enum Contribution {
    /// The aggregates' evaluated inputs, one entry per aggregate.
    Rows(Vec<AggInput>),
    /// Every aggregate's state columns, in order.
    States(Vec<ArrayRef>),
}

impl Contribution {
    /// The same contribution restricted to `rows`.
    pub fn take(&self, rows: &UInt32Array) -> Result<Contribution> {
        Ok(match self {
            Contribution::Rows(inputs) => {
                Contribution::Rows(inputs.iter().map(|x| x.take(rows)).collect::<Result<_>>()?)
            }
            Contribution::States(cols) => Contribution::States(
                cols.iter()
                    .map(|c| take(c, rows, None))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

enum AggState {
    Groups(Box<dyn GroupsAccumulator>),
    /// One accumulator per group, for functions without a groups accumulator.
    Rows(Vec<Box<dyn Accumulator>>),
}

/// Groups and their accumulators (one window's worth, or one session firing).
pub struct GroupTable {
    /// (hash of the key's row bytes, group) per group; the bytes stay in `rows` alone.
    keys: HashTable<(u64, u32)>,
    hasher: foldhash::fast::FixedState,
    rows: Rows,
    states: Vec<AggState>,
    aggs: Arc<AggregateSet>,
    scratch: Vec<usize>,
}

impl GroupTable {
    /// An empty table whose keys are encoded by `converter`.
    pub fn new(converter: &RowConverter, aggs: Arc<AggregateSet>) -> Result<Self> {
        let states = aggs
            .aggregates
            .iter()
            .map(|a| fresh_state(a))
            .collect::<Result<Vec<_>>>()?;
        let rows = converter.empty_rows(64, 1024);
        Ok(Self {
            keys: HashTable::new(),
            hasher: foldhash::fast::FixedState::default(),
            rows,
            states,
            aggs,
            scratch: Vec::new(),
        })
    }

    /// Number of groups.
    pub fn num_groups(&self) -> usize {
        self.rows.num_rows()
    }

    /// The group of each key in `keys` (new groups appended) into `group_idx`. A new group
    /// costs its bytes in `rows` and a slot in the index, nothing allocated per key.
    fn intern(&mut self, keys: &Rows, group_idx: &mut Vec<usize>) {
        group_idx.clear();
        group_idx.reserve(keys.num_rows());
        for row in keys.iter() {
            group_idx.push(self.group_of(row) as usize);
        }
    }

    /// The group of `row`, added when new.
    fn group_of(&mut self, row: datafusion::arrow::row::Row<'_>) -> u32 {
        let bytes = row.as_ref();
        let h = self.hasher.hash_one(bytes);
        let rows = &self.rows;
        let same = |e: &(u64, u32)| e.0 == h && rows.row(e.1 as usize).as_ref() == bytes;
        if let Some((_, g)) = self.keys.find(h, same) {
            return *g;
        }
        let g = self.rows.num_rows() as u32;
        self.keys.insert_unique(h, (h, g), |e| e.0);
        self.rows.push(row);
        g
    }

    /// The groups the last [`GroupTable::update`] or [`GroupTable::merge_rows`] added each
    /// row to, in row order.
    pub fn last_groups(&self) -> &[usize] {
        &self.scratch
    }

    /// Merge partial state rows (every aggregate's state columns, as
    /// [`GroupTable::into_columns`] gives them after the keys) into the groups of `keys`.
    pub fn merge_rows(&mut self, keys: &Rows, states: &[ArrayRef]) -> Result<()> {
        self.with_groups(keys, |t, groups| t.merge_states(states, groups))
    }

    /// Add what `input` brings (rows or partial states, aligned with `keys`) into the groups
    /// named by `keys`.
    pub fn add(&mut self, keys: &Rows, input: &Contribution) -> Result<()> {
        match input {
            Contribution::Rows(inputs) => self.update(keys, inputs),
            Contribution::States(states) => self.merge_rows(keys, states),
        }
    }

    /// Add `inputs` (aligned with `keys`) into the groups named by `keys`.
    pub fn update(&mut self, keys: &Rows, inputs: &[AggInput]) -> Result<()> {
        self.with_groups(keys, |t, groups| t.accumulate(inputs, groups))
    }

    /// Intern `keys`, then run `f` with each row's group (kept for [`GroupTable::last_groups`]).
    fn with_groups(
        &mut self,
        keys: &Rows,
        f: impl FnOnce(&mut Self, &[usize]) -> Result<()>,
    ) -> Result<()> {
        let mut group_idx = std::mem::take(&mut self.scratch);
        self.intern(keys, &mut group_idx);
        let done = f(self, &group_idx);
        self.scratch = group_idx;
        done
    }

    /// Feed `inputs` to the accumulators, row `i` to group `group_idx[i]`.
    fn accumulate(&mut self, inputs: &[AggInput], group_idx: &[usize]) -> Result<()> {
        let total = self.rows.num_rows();
        for (i, state) in self.states.iter_mut().enumerate() {
            let input = &inputs[i];
            match state {
                AggState::Groups(acc) => {
                    acc.update_batch(&input.args, group_idx, input.filter.as_ref(), total)?
                }
                AggState::Rows(accs) => {
                    update_rows(accs, &self.aggs.aggregates[i], group_idx, input, total)?
                }
            }
        }
        Ok(())
    }

    /// Final values: (key rows in group order, one array per aggregate).
    pub fn emit(mut self) -> Result<(Rows, Vec<ArrayRef>)> {
        let mut out = Vec::with_capacity(self.states.len());
        for state in self.states.iter_mut() {
            out.push(match state {
                AggState::Groups(acc) => acc.evaluate(EmitTo::All)?,
                AggState::Rows(accs) => {
                    let vals: Vec<ScalarValue> = accs
                        .iter_mut()
                        .map(|a| a.evaluate())
                        .collect::<Result<_, _>>()?;
                    ScalarValue::iter_to_array(vals)?
                }
            });
        }
        Ok((self.rows, out))
    }
}

impl GroupTable {
    /// The table's key columns followed by every aggregate's state columns. Taking the state
    /// consumes DataFusion accumulators, so they are rebuilt from it and the table stays usable.
    pub fn snapshot(&mut self, converter: &RowConverter) -> Result<Vec<ArrayRef>> {
        let n = self.num_groups();
        let mut cols = converter.convert_rows(&self.rows)?;
        for (state, agg) in self.states.iter_mut().zip(&self.aggs.aggregates) {
            let arrays = take_state(state, agg, n)?;
            *state = fresh_state(agg)?;
            merge_state(state, agg, &arrays, n)?;
            cols.extend(arrays);
        }
        Ok(cols)
    }

    /// [`GroupTable::snapshot`] of a table that is done with: its key rows and the columns,
    /// without rebuilding the accumulators.
    pub fn into_columns(mut self, converter: &RowConverter) -> Result<(Rows, Vec<ArrayRef>)> {
        self.drain(converter)
    }

    /// [`GroupTable::into_columns`] that leaves the table empty and ready for more groups,
    /// keeping its index's capacity and its accumulators (for a table refilled per batch).
    pub fn drain(&mut self, converter: &RowConverter) -> Result<(Rows, Vec<ArrayRef>)> {
        let n = self.num_groups();
        let fresh = converter.empty_rows(n, self.rows.size());
        let rows = std::mem::replace(&mut self.rows, fresh);
        let mut cols = converter.convert_rows(&rows)?;
        for (state, agg) in self.states.iter_mut().zip(&self.aggs.aggregates) {
            cols.extend(take_state(state, agg, n)?);
            if let AggState::Rows(accs) = state {
                accs.clear();
            }
        }
        self.keys.clear();
        Ok((rows, cols))
    }

    /// A table from the columns [`GroupTable::snapshot`] produced (`n_keys` key columns first).
    pub fn restore(
        converter: &RowConverter,
        aggs: Arc<AggregateSet>,
        cols: &[ArrayRef],
        n_keys: usize,
    ) -> Result<Self> {
        let mut t = GroupTable::new(converter, aggs.clone())?;
        let rows = converter.convert_columns(&cols[..n_keys])?;
        for row in rows.iter() {
            t.group_of(row);
        }
        let n = t.rows.num_rows();
        let mut at = n_keys;
        for (state, agg) in t.states.iter_mut().zip(&aggs.aggregates) {
            let w = agg.state_fields()?.len();
            let arrays = cols.get(at..at + w).ok_or_else(|| {
                crate::error::EngineError::State("window state has too few columns".into())
            })?;
            merge_state(state, agg, arrays, n)?;
            at += w;
        }
        Ok(t)
    }
}

impl GroupTable {
    /// The groups' key rows, in group order.
    pub fn key_rows(&self) -> &Rows {
        &self.rows
    }

    /// Approximate bytes held: key rows, the key index and the accumulators.
    pub fn memory_size(&self) -> usize {
        let keys = self.rows.size() + self.keys.capacity() * 16;
        let accs: usize = self
            .states
            .iter()
            .map(|s| match s {
                AggState::Groups(acc) => acc.size(),
                AggState::Rows(accs) => accs.iter().map(|a| a.size()).sum(),
            })
            .sum();
        keys + accs
    }

    /// Merge saved state rows (every aggregate's state columns, in order) into the groups
    /// `group_idx` (one per state row).
    pub fn merge_states(&mut self, cols: &[ArrayRef], group_idx: &[usize]) -> Result<()> {
        let total = self.num_groups();
        let mut at = 0;
        for (state, agg) in self.states.iter_mut().zip(&self.aggs.aggregates) {
            let w = agg.state_fields()?.len();
            let arrays = cols.get(at..at + w).ok_or_else(|| {
                crate::error::EngineError::State("spilled state has too few columns".into())
            })?;
            match state {
                AggState::Groups(acc) => acc.merge_batch(arrays, group_idx, total)?,
                AggState::Rows(accs) => {
                    for (j, g) in group_idx.iter().enumerate() {
                        let one: Vec<ArrayRef> = arrays.iter().map(|c| c.slice(j, 1)).collect();
                        accs[*g].merge_batch(&one)?;
                    }
                }
            }
            at += w;
        }
        Ok(())
    }
}

/// The Arrow types of every aggregate's state columns, in order.
pub fn state_types(aggs: &AggregateSet) -> Result<Vec<datafusion::arrow::datatypes::DataType>> {
    let mut out = Vec::new();
    for a in &aggs.aggregates {
        out.extend(a.state_fields()?.iter().map(|f| f.data_type().clone()));
    }
    Ok(out)
}

/// An aggregate's state columns (consuming DataFusion's accumulator state).
fn take_state(
    state: &mut AggState,
    agg: &AggregateFunctionExpr,
    n: usize,
) -> Result<Vec<ArrayRef>> {
    match state {
        AggState::Groups(acc) => Ok(acc.state(EmitTo::All)?),
        AggState::Rows(accs) => row_states(accs, agg, n),
    }
}

fn fresh_state(agg: &AggregateFunctionExpr) -> Result<AggState> {
    Ok(if agg.groups_accumulator_supported() {
        AggState::Groups(agg.create_groups_accumulator()?)
    } else {
        AggState::Rows(Vec::new())
    })
}

/// Merge state columns (one row per group, groups 0..n) into an empty state.
fn merge_state(
    state: &mut AggState,
    agg: &AggregateFunctionExpr,
    cols: &[ArrayRef],
    n: usize,
) -> Result<()> {
    match state {
        AggState::Groups(acc) => {
            let idx: Vec<usize> = (0..n).collect();
            acc.merge_batch(cols, &idx, n)?;
        }
        AggState::Rows(accs) => {
            for g in 0..n {
                let mut a = agg.create_accumulator()?;
                let one: Vec<ArrayRef> = cols.iter().map(|c| c.slice(g, 1)).collect();
                a.merge_batch(&one)?;
                accs.push(a);
            }
        }
    }
    Ok(())
}

/// The state of per-group accumulators as columns.
fn row_states(
    accs: &mut Vec<Box<dyn Accumulator>>,
    agg: &AggregateFunctionExpr,
    n: usize,
) -> Result<Vec<ArrayRef>> {
    while accs.len() < n {
        accs.push(agg.create_accumulator()?);
    }
    let fields = agg.state_fields()?;
    let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(n); fields.len()];
    for a in accs.iter_mut() {
        for (j, v) in a.state()?.into_iter().enumerate() {
            columns[j].push(v);
        }
    }
    columns
        .into_iter()
        .zip(&fields)
        .map(|(c, f)| {
            if c.is_empty() {
                Ok(datafusion::arrow::array::new_empty_array(f.data_type()))
            } else {
                Ok(ScalarValue::iter_to_array(c)?)
            }
        })
        .collect()
}

/// Fallback: per-group accumulators fed group by group.
fn update_rows(
    accs: &mut Vec<Box<dyn Accumulator>>,
    agg: &AggregateFunctionExpr,
    group_idx: &[usize],
    input: &AggInput,
    total: usize,
) -> Result<()> {
    while accs.len() < total {
        accs.push(agg.create_accumulator()?);
    }
    let mut per_group: HashMap<usize, Vec<u32>> = HashMap::new();
    for (row, g) in group_idx.iter().enumerate() {
        let keep = input
            .filter
            .as_ref()
            .is_none_or(|f| f.is_valid(row) && f.value(row));
        if keep {
            per_group.entry(*g).or_default().push(row as u32);
        }
    }
    for (g, rows) in per_group {
        let idx = UInt32Array::from(rows);
        let args: Vec<ArrayRef> = input
            .args
            .iter()
            .map(|a| take(a, &idx, None))
            .collect::<Result<_, _>>()?;
        accs[g].update_batch(&args)?;
    }
    Ok(())
}

/// A row converter for the key columns of `schema` at `indices`.
pub fn key_converter(types: &[datafusion::arrow::datatypes::DataType]) -> Result<RowConverter> {
    let fields = types.iter().map(|t| SortField::new(t.clone())).collect();
    Ok(RowConverter::new(fields)?)
}

/// Build an output batch of `schema` from columns in schema order.
pub fn output_batch(schema: &SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c)
            } else {
                datafusion::arrow::compute::cast(&c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
