//! A Parquet file's column as the table declares it: the Arrow reader gives a file's columns
//! in the types its writer chose (Spark's lists of `element`s and maps of `key_value` entries,
//! narrower integers, large strings, microseconds where the table holds milliseconds, an offset
//! zone for `TIMESTAMP_LTZ`), and the source casts them to the table's types, nested types
//! element by element.
//!
//! A timestamp read at a coarser precision is truncated to the earlier instant, as Flink does
//! (`-1 µs` is `1969-12-31 23:59:59.999`, where Arrow's cast would round towards the epoch). A
//! value that does not fit (an overflowing integer, text that is no number) fails the read,
//! and so does a type that cannot be read as the declared one (a scalar as an ARRAY, a list as
//! a MAP), naming the column and both types.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, ListArray, MapArray, StructArray,
};
use datafusion::arrow::compute::kernels::cast::{can_cast_types, cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, FieldRef, Fields, Int64Type, TimeUnit};
use datafusion::arrow::error::ArrowError;

/// `array` (a file's column) as `to`, the column's declared type; nested lists and maps are
/// rebuilt with the declared field names and element types.
pub(super) fn conform(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    let from = array.data_type();
    match (from, to) {
        _ if from == to => Ok(array.clone()),
        (DataType::Timestamp(unit, _), DataType::Timestamp(target, zone))
            if ticks(*unit) > ticks(*target) =>
        {
            let zoned = cast_exact(array, &DataType::Timestamp(*unit, zone.clone()))?;
            floor_timestamps(&zoned, ticks(*unit) / ticks(*target), to)
        }
        (DataType::List(_) | DataType::LargeList(_), DataType::List(field)) => list(array, field),
        (DataType::Map(_, _), DataType::Map(field, sorted)) => map(array, field, *sorted),
        _ if from.is_nested() || to.is_nested() => {
            Err(ArrowError::CastError(format!("a {from} is not a {to}")))
        }
        _ if can_cast_types(from, to) => cast_exact(array, to),
        _ => Err(ArrowError::CastError(format!(
            "no cast from {from} to {to}"
        ))),
    }
}

/// Arrow's cast, failing on a value that does not fit rather than making it NULL.
fn cast_exact(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(array, to, &options)
}

/// Ticks of `unit` in a second.
fn ticks(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

/// Timestamps divided by `factor`, rounding towards the earlier instant, typed `to`.
fn floor_timestamps(array: &ArrayRef, factor: i64, to: &DataType) -> Result<ArrayRef, ArrowError> {
    let raw = cast_exact(array, &DataType::Int64)?;
    let floored: Int64Array = raw
        .as_primitive::<Int64Type>()
        .unary(|v| v.div_euclid(factor));
    cast_exact(&(Arc::new(floored) as ArrayRef), to)
}

/// A list (or large list) as a list of `field`, its elements conformed.
fn list(array: &ArrayRef, field: &FieldRef) -> Result<ArrayRef, ArrowError> {
    let as_list = match array.data_type() {
        DataType::LargeList(f) => cast_exact(array, &DataType::List(f.clone()))?,
        _ => array.clone(),
    };
    let l = as_list.as_list::<i32>();
    let values = conform(l.values(), field.data_type())?;
    let out = ListArray::try_new(
        field.clone(),
        l.offsets().clone(),
        values,
        l.nulls().cloned(),
    )?;
    Ok(Arc::new(out))
}

/// A map as a map of `field`'s entries, its keys and values conformed.
fn map(array: &ArrayRef, field: &FieldRef, sorted: bool) -> Result<ArrayRef, ArrowError> {
    let m = array.as_map();
    let DataType::Struct(fields) = field.data_type() else {
        return Err(ArrowError::CastError(format!("map entries of {field}")));
    };
    let entries = m.entries();
    if entries.num_columns() != fields.len() {
        return Err(ArrowError::CastError(format!(
            "map entries of {} fields, not {}",
            entries.num_columns(),
            fields.len()
        )));
    }
    let columns = entries
        .columns()
        .iter()
        .zip(fields.iter())
        .map(|(c, f)| conform(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    let entries = StructArray::try_new(Fields::clone(fields), columns, entries.nulls().cloned())?;
    let out = MapArray::try_new(
        field.clone(),
        m.offsets().clone(),
        entries,
        m.nulls().cloned(),
        sorted,
    )?;
    Ok(Arc::new(out))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{StringArray, TimestampMicrosecondArray};

    use super::*;

    #[test]
    fn coarser_timestamps_floor_and_mismatches_fail() {
        let us: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![-1, 1_999, -1_000]));
        let ms = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let out = conform(&us, &ms).unwrap();
        assert_eq!(out.data_type(), &ms);
        let raw = cast_exact(&out, &DataType::Int64).unwrap();
        assert_eq!(raw.as_primitive::<Int64Type>().values(), &[-1, 1, -1]);
        let text: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        let list = DataType::new_list(DataType::Utf8, true);
        assert!(conform(&text, &list).is_err());
        assert!(conform(&text, &DataType::Int64).is_err());
    }
}
