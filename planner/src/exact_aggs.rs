//! SUM and AVG of `DOUBLE` with exact sums ([`crate::exact_sum`]), registered over
//! DataFusion's `sum` and `avg`: the result no longer depends on the order rows arrive in or on
//! how they were pre-aggregated, so a parallel window aggregation may merge partial sums (two
//! phases) and still give the bits parallelism 1 gives. Every other case (integers, decimals,
//! intervals, DISTINCT) is DataFusion's own function.
//!
//! The state of one group is its count of values and a list of DOUBLEs whose exact sum is the
//! group's sum (the partials), so partial states travel through exchanges and checkpoints as
//! ordinary Arrow columns.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray, UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, UInt64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, EmitTo, GroupsAccumulator};

use crate::exact_sum::ExactSum;
use crate::overrides::{emitted, one_double, overriding, Specialised};

/// Which function: the sum, or the sum divided by the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Sum,
    Avg,
}

/// `sum` and `avg` (DataFusion's, as `sum` and `avg` are found in `functions`) with exact
/// DOUBLE sums, to register in their place.
pub fn exact_float_aggregates(
    functions: &std::collections::HashMap<String, Arc<AggregateUDF>>,
) -> Vec<Arc<AggregateUDF>> {
    overriding(functions, [("sum", Kind::Sum), ("avg", Kind::Avg)])
}

impl Specialised for Kind {
    fn takes(&self, args: &AccumulatorArgs) -> bool {
        let result = args.return_field.data_type();
        one_double(args.expr_fields, result, args.is_distinct)
    }

    fn own_state(&self, args: &StateFieldsArgs) -> Option<Vec<FieldRef>> {
        one_double(args.input_fields, args.return_type(), args.is_distinct)
            .then(|| state_fields(args.name))
    }

    fn accumulator(&self) -> Box<dyn Accumulator> {
        Box::new(ExactAccumulator::new(*self))
    }

    fn groups_accumulator(&self) -> Box<dyn GroupsAccumulator> {
        Box::new(ExactGroups::new(*self))
    }

    fn sliding_accumulator(&self) -> Option<Box<dyn Accumulator>> {
        Some(Box::new(ExactAccumulator::new(*self)))
    }
}

/// The state columns: the count of values, and the partials of their exact sum.
fn state_fields(name: &str) -> Vec<FieldRef> {
    let item = Field::new_list_field(DataType::Float64, true);
    vec![
        Arc::new(Field::new(format!("{name}[count]"), DataType::UInt64, true)),
        Arc::new(Field::new_list(format!("{name}[partials]"), item, true)),
    ]
}

/// The result of a group: NULL with no values, else the sum or the average.
fn result(kind: Kind, sum: &ExactSum, count: u64) -> Option<f64> {
    match (count, kind) {
        (0, _) => None,
        (_, Kind::Sum) => Some(sum.value()),
        (n, Kind::Avg) => Some(sum.value() / n as f64),
    }
}

/// State columns of groups: counts (NULL for an empty group) and partial lists, built from
/// one values vector and its offsets (most groups hold one value).
fn state_columns(sums: &[ExactSum], counts: &[u64]) -> Result<Vec<ArrayRef>> {
    let counts_col: UInt64Array = counts.iter().map(|&n| (n > 0).then_some(n)).collect();
    let mut values: Vec<f64> = Vec::with_capacity(sums.len());
    let mut offsets: Vec<i32> = Vec::with_capacity(sums.len() + 1);
    offsets.push(0);
    for (s, &n) in sums.iter().zip(counts) {
        if n > 0 {
            values.extend(s.values());
        }
        let end = i32::try_from(values.len())
            .map_err(|_| DataFusionError::Internal("exact sum state past 2^31 values".into()))?;
        offsets.push(end);
    }
    let nulls = counts_col.nulls().cloned();
    let item = Arc::new(Field::new_list_field(DataType::Float64, true));
    let values = Arc::new(Float64Array::from(values));
    let lists = ListArray::try_new(item, OffsetBuffer::new(offsets.into()), values, nulls)?;
    Ok(vec![Arc::new(counts_col), Arc::new(lists)])
}

/// State columns (counts, partial lists) read without a slice per row.
struct StateRows<'a> {
    counts: &'a UInt64Array,
    lists: &'a ListArray,
    values: &'a [f64],
}

impl<'a> StateRows<'a> {
    fn new(states: &'a [ArrayRef]) -> Self {
        let lists = states[1].as_list::<i32>();
        Self {
            counts: states[0].as_primitive::<UInt64Type>(),
            lists,
            values: lists.values().as_primitive::<Float64Type>().values(),
        }
    }

    /// Add state row `row` into `sum` and `count`.
    fn merge(&self, row: usize, sum: &mut ExactSum, count: &mut u64) {
        if self.counts.is_null(row) || self.lists.is_null(row) {
            return;
        }
        *count += self.counts.value(row);
        let offsets = self.lists.value_offsets();
        let (lo, hi) = (offsets[row] as usize, offsets[row + 1] as usize);
        self.values[lo..hi].iter().for_each(|v| sum.add(*v));
    }
}

/// Exact SUM/AVG of every group of an aggregation.
struct ExactGroups {
    kind: Kind,
    sums: Vec<ExactSum>,
    counts: Vec<u64>,
}

impl ExactGroups {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            sums: Vec::new(),
            counts: Vec::new(),
        }
    }

    fn resize(&mut self, groups: usize) {
        self.sums.resize_with(groups, ExactSum::default);
        self.counts.resize(groups, 0);
    }

    /// Remove the first `n` groups, keeping the vectors' capacity (a table whose groups all
    /// went out is filled again by the next window's).
    fn remove_first(&mut self, n: usize) {
        self.sums.drain(..n);
        self.counts.drain(..n);
    }
}

impl GroupsAccumulator for ExactGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let values = values[0].as_primitive::<Float64Type>();
        let data = values.values();
        if values.null_count() == 0 && opt_filter.is_none() {
            for (&g, &v) in group_indices.iter().zip(data.iter()) {
                self.sums[g].add(v);
                self.counts[g] += 1;
            }
            return Ok(());
        }
        for (i, &g) in group_indices.iter().enumerate() {
            let kept = opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i));
            if kept && values.is_valid(i) {
                self.sums[g].add(data[i]);
                self.counts[g] += 1;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let n = emitted(emit_to, self.sums.len());
        let out: Float64Array = (self.sums[..n].iter().zip(&self.counts[..n]))
            .map(|(sum, &count)| result(self.kind, sum, count))
            .collect();
        self.remove_first(n);
        Ok(Arc::new(out))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let n = emitted(emit_to, self.sums.len());
        let columns = state_columns(&self.sums[..n], &self.counts[..n])?;
        self.remove_first(n);
        Ok(columns)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let states = StateRows::new(values);
        for (row, &g) in group_indices.iter().enumerate() {
            states.merge(row, &mut self.sums[g], &mut self.counts[g]);
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let values = values[0].as_primitive::<Float64Type>();
        let (mut sums, mut counts) = (Vec::new(), Vec::new());
        for (i, v) in values.iter().enumerate() {
            let kept = opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i));
            let mut sum = ExactSum::default();
            let v = v.filter(|_| kept);
            v.into_iter().for_each(|v| sum.add(v));
            sums.push(sum);
            counts.push(u64::from(v.is_some()));
        }
        state_columns(&sums, &counts)
    }

    /// Without the rare partials spilled past the inline ones: walking every group on each
    /// call would cost per batch what the groups number.
    fn size(&self) -> usize {
        self.sums.capacity() * size_of::<ExactSum>() + self.counts.capacity() * 8
    }
}

/// Exact SUM/AVG of one group; takes rows back out too (sliding OVER frames).
#[derive(Debug)]
struct ExactAccumulator {
    kind: Kind,
    sum: ExactSum,
    count: u64,
}

impl ExactAccumulator {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            sum: ExactSum::default(),
            count: 0,
        }
    }

    /// Add each non-null value of `values`, negated when `sign` is -1.
    fn apply(&mut self, values: &ArrayRef, sign: f64) {
        let values = values.as_primitive::<Float64Type>();
        values.iter().flatten().for_each(|v| self.sum.add(sign * v));
        let n = (values.len() - values.null_count()) as u64;
        match sign > 0.0 {
            true => self.count += n,
            false => self.count = self.count.saturating_sub(n),
        }
    }
}

impl Accumulator for ExactAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.apply(&values[0], 1.0);
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.apply(&values[0], -1.0);
        if self.count == 0 {
            self.sum = ExactSum::default(); // drop infinities that left the frame
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = StateRows::new(states);
        for row in 0..states[0].len() {
            rows.merge(row, &mut self.sum, &mut self.count);
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let columns = state_columns(std::slice::from_ref(&self.sum), &[self.count])?;
        columns
            .iter()
            .map(|c| ScalarValue::try_from_array(c, 0))
            .collect()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(result(
            self.kind, &self.sum, self.count,
        )))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.sum.heap_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doubles(v: &[f64]) -> ArrayRef {
        Arc::new(Float64Array::from(v.to_vec()))
    }

    #[test]
    fn partial_states_merged_in_any_grouping_give_one_result() {
        let values: Vec<f64> = (0..1000).map(|i| 20.0 + (i as f64) * 0.137 / 3.0).collect();
        let mut whole = ExactGroups::new(Kind::Avg);
        whole
            .update_batch(&[doubles(&values)], &vec![0; 1000], None, 1)
            .unwrap();
        let expected = whole.evaluate(EmitTo::All).unwrap();
        let mut global = ExactGroups::new(Kind::Avg);
        for chunk in values.chunks(333) {
            let mut local = ExactGroups::new(Kind::Avg);
            let groups = vec![0; chunk.len()];
            local
                .update_batch(&[doubles(chunk)], &groups, None, 1)
                .unwrap();
            let state = local.state(EmitTo::All).unwrap();
            global.merge_batch(&state, &[0], 1).unwrap();
        }
        assert_eq!(
            global.evaluate(EmitTo::All).unwrap().as_ref(),
            expected.as_ref()
        );
    }

    #[test]
    fn groups_without_values_are_null_and_filters_apply() {
        let mut acc = ExactGroups::new(Kind::Sum);
        let values: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.5), None, Some(2.0)]));
        let filter = BooleanArray::from(vec![true, true, false]);
        acc.update_batch(&[values], &[0, 1, 0], Some(&filter), 3)
            .unwrap();
        let out = acc.evaluate(EmitTo::All).unwrap();
        let expected: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.5), None, None]));
        assert_eq!(out.as_ref(), expected.as_ref());
    }

    #[test]
    fn a_sliding_sum_takes_rows_back_exactly() {
        let mut acc = ExactAccumulator::new(Kind::Sum);
        acc.update_batch(&[doubles(&[1e16, 1.0, 0.1])]).unwrap();
        acc.retract_batch(&[doubles(&[1e16])]).unwrap();
        assert_eq!(acc.evaluate().unwrap(), ScalarValue::Float64(Some(1.1)));
        acc.retract_batch(&[doubles(&[1.0, 0.1])]).unwrap();
        assert_eq!(acc.evaluate().unwrap(), ScalarValue::Float64(None));
        let mut other = ExactAccumulator::new(Kind::Sum);
        other.update_batch(&[doubles(&[2.5])]).unwrap();
        let state: Vec<ArrayRef> = (other.state().unwrap().iter())
            .map(|s| s.to_array().unwrap())
            .collect();
        acc.merge_batch(&state).unwrap();
        assert_eq!(acc.evaluate().unwrap(), ScalarValue::Float64(Some(2.5)));
    }
}
