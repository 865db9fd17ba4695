//! Grouped aggregation state: key rows -> group index -> DataFusion accumulators.
//!
//! Keys are encoded once per batch with Arrow's row format and interned in a hash map (one
//! allocation per *new* group, none per row). Aggregates use DataFusion's `GroupsAccumulator`
//! where the function has one, and per-group `Accumulator`s otherwise (e.g. DISTINCT).

use std::collections::HashMap;
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
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    pub filters: Vec<Option<PhysExpr>>,
}

impl AggregateSet {
    /// Arguments and filter of each aggregate, evaluated over `batch`.
    pub fn evaluate_inputs(&self, batch: &RecordBatch) -> Result<Vec<AggInput>> {
        let n = batch.num_rows();
        let mut out = Vec::with_capacity(self.aggregates.len());
        for (agg, filter) in self.aggregates.iter().zip(&self.filters) {
            let mut args = Vec::new();
            for e in agg.expressions() {
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

fn to_bool(a: ArrayRef) -> Result<BooleanArray> {
    a.as_any()
        .downcast_ref::<BooleanArray>()
        .cloned()
        .ok_or_else(|| crate::error::EngineError::Internal("FILTER is not boolean".into()))
}

/// Evaluated inputs of one aggregate for one batch.
pub struct AggInput {
    pub args: Vec<ArrayRef>,
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

enum AggState {
    Groups(Box<dyn GroupsAccumulator>),
    /// One accumulator per group, for functions without a groups accumulator.
    Rows(Vec<Box<dyn Accumulator>>),
}

/// Groups and their accumulators (one window's worth, or one session firing).
pub struct GroupTable {
    keys: HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>,
    rows: Rows,
    states: Vec<AggState>,
    aggs: Arc<AggregateSet>,
    scratch: Vec<usize>,
}

impl GroupTable {
    pub fn new(converter: &RowConverter, aggs: Arc<AggregateSet>) -> Result<Self> {
        let mut states = Vec::with_capacity(aggs.aggregates.len());
        for a in &aggs.aggregates {
            states.push(if a.groups_accumulator_supported() {
                AggState::Groups(a.create_groups_accumulator()?)
            } else {
                AggState::Rows(Vec::new())
            });
        }
        let rows = converter.empty_rows(64, 1024);
        Ok(Self {
            keys: HashMap::default(),
            rows,
            states,
            aggs,
            scratch: Vec::new(),
        })
    }

    pub fn num_groups(&self) -> usize {
        self.rows.num_rows()
    }

    /// Add `inputs` (aligned with `keys`) into the groups named by `keys`.
    pub fn update(&mut self, keys: &Rows, inputs: &[AggInput]) -> Result<()> {
        let mut group_idx = std::mem::take(&mut self.scratch);
        group_idx.clear();
        group_idx.reserve(keys.num_rows());
        for row in keys.iter() {
            let bytes = row.as_ref();
            let g = match self.keys.get(bytes) {
                Some(g) => *g,
                None => {
                    let g = self.rows.num_rows() as u32;
                    self.keys.insert(bytes.into(), g);
                    self.rows.push(row);
                    g
                }
            };
            group_idx.push(g as usize);
        }
        let total = self.rows.num_rows();
        for (i, state) in self.states.iter_mut().enumerate() {
            let input = &inputs[i];
            match state {
                AggState::Groups(acc) => {
                    acc.update_batch(&input.args, &group_idx, input.filter.as_ref(), total)?
                }
                AggState::Rows(accs) => {
                    update_rows(accs, &self.aggs.aggregates[i], &group_idx, input, total)?
                }
            }
        }
        self.scratch = group_idx;
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
