//! MIN and MAX of `DOUBLE` in IEEE 754's total order, registered over DataFusion's `min` and
//! `max`: `-NaN < -inf < ... < -0.0 < +0.0 < ... < +inf < NaN`, as PostgreSQL orders DOUBLEs
//! (NaN above every number). DataFusion's (and Flink's) comparison leaves a NaN or a zero's
//! sign to whichever value came first, so a result could depend on how rows were split or
//! ordered; in a total order it cannot. Each value is compared as a signed integer (its bits,
//! with the magnitude's bits flipped for negatives), so a group's running extreme is updated
//! without a branch. Every other type, and sliding OVER frames, use DataFusion's own function.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, EmitTo, GroupsAccumulator};

use crate::overrides::{emitted, one_double, overriding, Specialised};

/// Which function: MIN or MAX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Extreme {
    Min,
    Max,
}

/// `min` and `max` (DataFusion's, as found in `functions`) in total order for DOUBLEs, to
/// register in their place.
pub fn total_order_min_max(
    functions: &std::collections::HashMap<String, Arc<AggregateUDF>>,
) -> Vec<Arc<AggregateUDF>> {
    overriding(functions, [("min", Extreme::Min), ("max", Extreme::Max)])
}

impl Specialised for Extreme {
    /// One DOUBLE argument (DISTINCT changes nothing for an extreme).
    fn takes(&self, args: &AccumulatorArgs) -> bool {
        one_double(args.expr_fields, args.return_field.data_type(), false)
    }

    /// DataFusion's state (one column of the argument's type) is written by these
    /// accumulators too, so checkpoints taken before them restore.
    fn own_state(&self, _args: &StateFieldsArgs) -> Option<Vec<FieldRef>> {
        None
    }

    fn accumulator(&self) -> Box<dyn Accumulator> {
        match self {
            Extreme::Max => Box::new(OneExtreme::<true>::default()),
            Extreme::Min => Box::new(OneExtreme::<false>::default()),
        }
    }

    fn groups_accumulator(&self) -> Box<dyn GroupsAccumulator> {
        match self {
            Extreme::Max => Box::new(GroupExtremes::<true>::default()),
            Extreme::Min => Box::new(GroupExtremes::<false>::default()),
        }
    }

    /// DataFusion's moving extremes (which retract rows in arrival order).
    fn sliding_accumulator(&self) -> Option<Box<dyn Accumulator>> {
        None
    }
}

/// `v` as an integer ordered as IEEE 754's total order orders DOUBLEs.
#[inline]
fn ordered(v: f64) -> i64 {
    let bits = v.to_bits() as i64;
    bits ^ (((bits >> 63) as u64) >> 1) as i64
}

/// The DOUBLE that [`ordered`] gave `k` for.
#[inline]
fn unordered(k: i64) -> f64 {
    f64::from_bits((k ^ (((k >> 63) as u64) >> 1) as i64) as u64)
}

/// The larger (`MAX`) or smaller of two ordered keys, without a branch.
#[inline]
fn pick<const MAX: bool>(current: i64, new: i64) -> i64 {
    match MAX {
        true => current.max(new),
        false => current.min(new),
    }
}

/// What a group holds before its first value: every key is at least as extreme.
const fn start<const MAX: bool>() -> i64 {
    match MAX {
        true => i64::MIN,
        false => i64::MAX,
    }
}

/// The running MIN or MAX of every group of an aggregation, as ordered keys.
#[derive(Default)]
struct GroupExtremes<const MAX: bool> {
    keys: Vec<i64>,
    /// Whether the group has had a value (NULL otherwise).
    seen: Vec<bool>,
}

impl<const MAX: bool> GroupExtremes<MAX> {
    /// Fold the kept, non-null `values` into their groups.
    fn fold(&mut self, values: &ArrayRef, groups: &[usize], filter: Option<&BooleanArray>) {
        let values = values.as_primitive::<Float64Type>();
        let data = values.values();
        if values.null_count() == 0 && filter.is_none() {
            for (&g, &v) in groups.iter().zip(data.iter()) {
                self.keys[g] = pick::<MAX>(self.keys[g], ordered(v));
                self.seen[g] = true;
            }
            return;
        }
        for (i, &g) in groups.iter().enumerate() {
            let kept = filter.is_none_or(|f| f.is_valid(i) && f.value(i));
            if kept && values.is_valid(i) {
                self.keys[g] = pick::<MAX>(self.keys[g], ordered(data[i]));
                self.seen[g] = true;
            }
        }
    }

    /// The groups `emit_to` names, as DOUBLEs (NULL where no value came), taken out. All of
    /// them leaves the vectors empty with their capacity, for the next window's groups.
    fn take(&mut self, emit_to: EmitTo) -> ArrayRef {
        let n = emitted(emit_to, self.keys.len());
        let values: Vec<f64> = self.keys.drain(..n).map(unordered).collect();
        let nulls = NullBuffer::from_iter(self.seen.drain(..n));
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        Arc::new(Float64Array::new(values.into(), nulls))
    }
}

impl<const MAX: bool> GroupsAccumulator for GroupExtremes<MAX> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.keys.resize(total_num_groups, start::<MAX>());
        self.seen.resize(total_num_groups, false);
        self.fold(&values[0], group_indices, opt_filter);
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(self.take(emit_to))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.take(emit_to)])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.update_batch(values, group_indices, None, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let values = values[0].as_primitive::<Float64Type>();
        let kept = opt_filter.map(|f| NullBuffer::from_iter(f.iter().map(|k| k == Some(true))));
        let nulls = NullBuffer::union(values.nulls(), kept.as_ref());
        let state = Float64Array::new(values.values().clone(), nulls);
        Ok(vec![Arc::new(state)])
    }

    fn size(&self) -> usize {
        self.keys.capacity() * size_of::<i64>() + self.seen.capacity()
    }
}

/// The MIN or MAX of one group, as an ordered key (none before the first value).
#[derive(Debug, Default)]
struct OneExtreme<const MAX: bool> {
    key: Option<i64>,
}

impl<const MAX: bool> Accumulator for OneExtreme<MAX> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for v in values[0].as_primitive::<Float64Type>().iter().flatten() {
            let k = self.key.unwrap_or(start::<MAX>());
            self.key = Some(pick::<MAX>(k, ordered(v)));
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.key.map(unordered)))
    }

    fn size(&self) -> usize {
        size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doubles(v: &[Option<f64>]) -> ArrayRef {
        Arc::new(Float64Array::from(v.to_vec()))
    }

    /// Per group, the result of folding `rows` (value, group) in the order given.
    fn extremes<const MAX: bool>(rows: &[(Option<f64>, usize)], groups: usize) -> Vec<Option<f64>> {
        let mut acc = GroupExtremes::<MAX>::default();
        let values: Vec<Option<f64>> = rows.iter().map(|r| r.0).collect();
        let idx: Vec<usize> = rows.iter().map(|r| r.1).collect();
        acc.update_batch(&[doubles(&values)], &idx, None, groups)
            .unwrap();
        let out = acc.evaluate(EmitTo::All).unwrap();
        out.as_primitive::<Float64Type>().iter().collect()
    }

    #[test]
    fn the_order_is_total_and_does_not_depend_on_arrival() {
        let nan = f64::NAN;
        let rows = [-0.0, 0.0, nan, 1.5, f64::INFINITY, f64::NEG_INFINITY, -2.0];
        let mut reversed = rows;
        reversed.reverse();
        for order in [rows, reversed] {
            let input: Vec<(Option<f64>, usize)> = order.iter().map(|v| (Some(*v), 0)).collect();
            let min = extremes::<false>(&input, 1)[0].unwrap();
            let max = extremes::<true>(&input, 1)[0].unwrap();
            assert_eq!(min, f64::NEG_INFINITY);
            assert!(max.is_nan(), "NaN is above every number");
            let zeros: Vec<(Option<f64>, usize)> = order
                .iter()
                .filter(|v| **v == 0.0)
                .map(|v| (Some(*v), 0))
                .collect();
            assert_eq!(
                extremes::<false>(&zeros, 1)[0].unwrap().to_bits(),
                (-0.0f64).to_bits()
            );
            assert_eq!(
                extremes::<true>(&zeros, 1)[0].unwrap().to_bits(),
                0.0f64.to_bits()
            );
        }
        // The extremes themselves are values, not stand-ins for "no value".
        let infinities = [(Some(f64::INFINITY), 0), (Some(f64::NEG_INFINITY), 1)];
        assert_eq!(
            extremes::<false>(&infinities, 2),
            [Some(f64::INFINITY), Some(f64::NEG_INFINITY)]
        );
    }

    #[test]
    fn groups_without_a_value_are_null_and_states_merge() {
        let rows = [(Some(3.0), 0), (None, 1), (Some(-1.0), 0), (Some(7.0), 2)];
        assert_eq!(extremes::<true>(&rows, 3), [Some(3.0), None, Some(7.0)]);
        let mut acc = GroupExtremes::<false>::default();
        let filter = BooleanArray::from(vec![true, true, false, true]);
        let values = doubles(&rows.iter().map(|r| r.0).collect::<Vec<_>>());
        let state = acc.convert_to_state(&[values], Some(&filter)).unwrap();
        acc.merge_batch(&state, &[0, 1, 0, 2], 3).unwrap();
        let out = acc.evaluate(EmitTo::First(2)).unwrap();
        let got: Vec<Option<f64>> = out.as_primitive::<Float64Type>().iter().collect();
        assert_eq!(got, [Some(3.0), None], "the filtered -1.0 is left out");
        let rest = acc.evaluate(EmitTo::All).unwrap();
        assert_eq!(rest.as_primitive::<Float64Type>().value(0), 7.0);
        let mut one = OneExtreme::<false>::default();
        one.update_batch(&[doubles(&[Some(2.0), None, Some(-0.0), Some(0.0)])])
            .unwrap();
        assert_eq!(one.evaluate().unwrap(), ScalarValue::Float64(Some(-0.0)));
    }
}
