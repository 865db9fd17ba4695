//! Aggregate functions registered over DataFusion's of the same name (`sum`, `avg`, `min`,
//! `max`), which take some calls themselves (DOUBLE arguments: exact sums, total-order
//! extremes) and leave every other call, and everything else about the function (signature,
//! coercion, return type, monotonicity), to DataFusion's.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator,
    ReversedUDAF, SetMonotonicity, Signature, StatisticsArgs,
};

/// Whether a call's arguments are one DOUBLE with a DOUBLE result (the calls the overrides
/// take), and not DISTINCT when `distinct` matters to the function.
pub(crate) fn one_double(args: &[FieldRef], result: &DataType, distinct: bool) -> bool {
    !distinct
        && args.len() == 1
        && args[0].data_type() == &DataType::Float64
        && result == &DataType::Float64
}

/// How many of `len` groups `emit_to` takes (the first ones).
pub(crate) fn emitted(emit_to: EmitTo, len: usize) -> usize {
    match emit_to {
        EmitTo::All => len,
        EmitTo::First(n) => n.min(len),
    }
}

/// What one override does itself; the rest is DataFusion's function.
pub(crate) trait Specialised: std::fmt::Debug + PartialEq + Eq + Hash + Send + Sync {
    /// Whether this call is the override's.
    fn takes(&self, args: &AccumulatorArgs) -> bool;
    /// The state of a call with these argument types, when it is the override's own.
    fn own_state(&self, args: &StateFieldsArgs) -> Option<Vec<FieldRef>>;
    /// The accumulator of one group, for a call it takes.
    fn accumulator(&self) -> Box<dyn Accumulator>;
    /// The accumulator of many groups, for a call it takes.
    fn groups_accumulator(&self) -> Box<dyn GroupsAccumulator>;
    /// The accumulator of a sliding OVER frame, when the override has its own.
    fn sliding_accumulator(&self) -> Option<Box<dyn Accumulator>>;
}

/// DataFusion's function `inner`, with the calls `ours` takes taken by it.
#[derive(Debug)]
struct Override<S> {
    inner: Arc<AggregateUDF>,
    ours: S,
}

/// The overrides of the functions named (DataFusion's, as found in `functions`), to register
/// in their place.
pub(crate) fn overriding<S: Specialised + 'static>(
    functions: &HashMap<String, Arc<AggregateUDF>>,
    ours: impl IntoIterator<Item = (&'static str, S)>,
) -> Vec<Arc<AggregateUDF>> {
    ours.into_iter()
        .filter_map(|(name, ours)| {
            let inner = functions.get(name)?.clone();
            Some(Arc::new(AggregateUDF::new_from_impl(Override {
                inner,
                ours,
            })))
        })
        .collect()
}

impl<S: Specialised> PartialEq for Override<S> {
    fn eq(&self, other: &Self) -> bool {
        self.ours == other.ours && self.inner == other.inner
    }
}

impl<S: Specialised> Eq for Override<S> {}

impl<S: Specialised> Hash for Override<S> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.ours.hash(state);
        self.inner.name().hash(state);
    }
}

impl<S: Specialised + 'static> AggregateUDFImpl for Override<S> {
    fn name(&self) -> &str {
        self.inner.inner().name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.inner().aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.inner().signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.inner().return_type(arg_types)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match self.ours.takes(&args) {
            true => Ok(self.ours.accumulator()),
            false => self.inner.inner().accumulator(args),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        match self.ours.own_state(&args) {
            Some(fields) => Ok(fields),
            None => self.inner.inner().state_fields(args),
        }
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.ours.takes(&args) || self.inner.inner().groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        match self.ours.takes(&args) {
            true => Ok(self.ours.groups_accumulator()),
            false => self.inner.inner().create_groups_accumulator(args),
        }
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match self.ours.takes(&args) {
            true => match self.ours.sliding_accumulator() {
                Some(acc) => Ok(acc),
                None => self.inner.inner().create_sliding_accumulator(args),
            },
            false => self.inner.inner().create_sliding_accumulator(args),
        }
    }

    fn is_descending(&self) -> Option<bool> {
        self.inner.inner().is_descending()
    }

    fn value_from_stats(&self, statistics_args: &StatisticsArgs) -> Option<ScalarValue> {
        self.inner.inner().value_from_stats(statistics_args)
    }

    /// Sums and extremes do not depend on the order of their rows.
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::Identical
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner.inner().default_value(data_type)
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner.inner().set_monotonicity(data_type)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.inner().documentation()
    }
}
