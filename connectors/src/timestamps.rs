//! Epoch-number event times (`'timestamp.unit' = 's' | 'ms' | 'us' | 'ns' | 'auto'`) and
//! plausibility bounds (`'timestamp.max-future'`, `'timestamp.min'`).
//!
//! With a unit set, the table's TIMESTAMP columns are decoded as 64-bit integers and converted
//! here: `auto` tells the units apart by magnitude (below 1e10 seconds, below 1e13 milliseconds,
//! below 1e16 microseconds, else nanoseconds), which catches a sensor that sends seconds among
//! milliseconds. Rows outside the bounds are returned with the reason, for the dead letters.

use std::sync::Arc;

use chrono::NaiveDateTime;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, PrimitiveArray};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use weir_planner::TableDef;

/// The unit of epoch numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EpochUnit {
    Fixed(TimeUnit),
    Auto,
}

/// What a table says about its event-time numbers.
#[derive(Debug, Clone)]
pub(crate) struct TimePolicy {
    unit: Option<EpochUnit>,
    max_future_ns: Option<i64>,
    min_ns: Option<i64>,
    /// Timestamp columns of the decoded schema: (index, unit, time zone).
    columns: Vec<(usize, TimeUnit, Option<Arc<str>>)>,
}

fn ns_per(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

/// The unit an epoch number is in, by magnitude.
pub(crate) fn detect_unit(v: i64) -> TimeUnit {
    match v.unsigned_abs() {
        a if a < 10_000_000_000 => TimeUnit::Second,
        a if a < 10_000_000_000_000 => TimeUnit::Millisecond,
        a if a < 10_000_000_000_000_000 => TimeUnit::Microsecond,
        _ => TimeUnit::Nanosecond,
    }
}

fn parse_unit(v: &str) -> Result<EpochUnit, String> {
    Ok(match v.to_ascii_lowercase().as_str() {
        "s" => EpochUnit::Fixed(TimeUnit::Second),
        "ms" => EpochUnit::Fixed(TimeUnit::Millisecond),
        "us" => EpochUnit::Fixed(TimeUnit::Microsecond),
        "ns" => EpochUnit::Fixed(TimeUnit::Nanosecond),
        "auto" => EpochUnit::Auto,
        other => {
            return Err(format!(
                "option 'timestamp.unit' must be s, ms, us, ns or auto, not '{other}'"
            ))
        }
    })
}

fn parse_min(v: &str) -> Result<i64, String> {
    let t = v.trim();
    let dt = NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(&format!("{t} 00:00:00"), "%Y-%m-%d %H:%M:%S"))
        .map_err(|_| {
            format!("option 'timestamp.min' must be a date like '2020-01-01', not '{v}'")
        })?;
    dt.and_utc()
        .timestamp_nanos_opt()
        .ok_or_else(|| format!("option 'timestamp.min' is out of range: '{v}'"))
}

impl TimePolicy {
    /// The policy of `table` for the decoded `schema`; `None` when the table sets none.
    pub(crate) fn parse(table: &TableDef, schema: &Schema) -> Result<Option<TimePolicy>, String> {
        let unit = table.option("timestamp.unit").map(parse_unit).transpose()?;
        let max_future_ns = table
            .option("timestamp.max-future")
            .map(|v| {
                weir_planner::interval::parse_duration(v)
                    .map_err(|e| format!("option 'timestamp.max-future': {e}"))
            })
            .transpose()?;
        let min_ns = table.option("timestamp.min").map(parse_min).transpose()?;
        if unit.is_none() && max_future_ns.is_none() && min_ns.is_none() {
            return Ok(None);
        }
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match f.data_type() {
                DataType::Timestamp(u, tz) => Some((i, *u, tz.clone())),
                _ => None,
            })
            .collect();
        Ok(Some(TimePolicy {
            unit,
            max_future_ns,
            min_ns,
            columns,
        }))
    }

    /// The schema to decode with: timestamp columns as BIGINT when numbers are expected.
    pub(crate) fn decode_schema(&self, schema: &SchemaRef) -> SchemaRef {
        if self.unit.is_none() {
            return schema.clone();
        }
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (i, ..) in &self.columns {
            fields[*i] = fields[*i].clone().with_data_type(DataType::Int64);
        }
        Arc::new(Schema::new(fields))
    }

    /// Convert epoch numbers and check bounds: the batch in `schema`, and the rows dropped with
    /// their reasons (row indices of the input batch). Values `auto` read in a unit other than
    /// the column's are added to `corrections`.
    pub(crate) fn apply(
        &self,
        batch: &RecordBatch,
        schema: &SchemaRef,
        corrections: &mut u64,
    ) -> Result<(RecordBatch, Vec<(usize, String)>), ArrowError> {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        let mut bad: Vec<(usize, String)> = Vec::new();
        for (i, unit, tz) in &self.columns {
            let ns = self.to_nanos(&cols[*i], *unit, &mut bad, corrections)?;
            self.check_bounds(&ns, now, &mut bad);
            let scaled: Int64Array = ns
                .iter()
                .map(|v| v.map(|v| v.div_euclid(ns_per(*unit))))
                .collect();
            cols[*i] = cast(
                &(Arc::new(scaled) as ArrayRef),
                &DataType::Timestamp(*unit, tz.clone()),
            )?;
        }
        let out = RecordBatch::try_new(schema.clone(), cols)?;
        if bad.is_empty() {
            return Ok((out, bad));
        }
        bad.sort_by_key(|b| b.0);
        bad.dedup_by_key(|b| b.0);
        let keep: BooleanArray = (0..out.num_rows())
            .map(|r| Some(bad.binary_search_by_key(&r, |b| b.0).is_err()))
            .collect();
        Ok((filter_record_batch(&out, &keep)?, bad))
    }

    /// Nanoseconds of a column that holds epoch numbers (or already timestamps).
    fn to_nanos(
        &self,
        col: &ArrayRef,
        column_unit: TimeUnit,
        bad: &mut Vec<(usize, String)>,
        corrections: &mut u64,
    ) -> Result<Int64Array, ArrowError> {
        let from_ts = match col.data_type() {
            DataType::Timestamp(u, _) => Some(*u),
            _ => None,
        };
        let raw = cast(col, &DataType::Int64)?;
        let raw: &PrimitiveArray<Int64Type> = raw.as_any().downcast_ref().expect("int64");
        Ok(raw
            .iter()
            .enumerate()
            .map(|(row, v)| {
                let v = v?;
                let unit = match (from_ts, self.unit) {
                    (Some(u), _) => u,
                    (None, Some(EpochUnit::Fixed(u))) => u,
                    _ => {
                        let u = detect_unit(v);
                        *corrections += u64::from(u != column_unit);
                        u
                    }
                };
                let ns = v.checked_mul(ns_per(unit));
                if ns.is_none() {
                    bad.push((row, format!("timestamp {v} ({unit:?}) is out of range")));
                }
                ns
            })
            .collect())
    }

    fn check_bounds(&self, ns: &Int64Array, now: i64, bad: &mut Vec<(usize, String)>) {
        for (row, v) in ns.iter().enumerate() {
            let Some(v) = v else { continue };
            if let Some(max) = self.max_future_ns {
                if v > now.saturating_add(max) {
                    bad.push((
                        row,
                        format!(
                            "timestamp is more than {} in the future",
                            weir_planner::window_spec::format_duration(max)
                        ),
                    ));
                }
            }
            if let Some(min) = self.min_ns {
                if v < min {
                    bad.push((row, "timestamp is before 'timestamp.min'".to_string()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_by_magnitude() {
        assert_eq!(detect_unit(1_704_067_200), TimeUnit::Second);
        assert_eq!(detect_unit(1_704_067_200_000), TimeUnit::Millisecond);
        assert_eq!(detect_unit(1_704_067_200_000_000), TimeUnit::Microsecond);
        assert_eq!(detect_unit(1_704_067_200_000_000_000), TimeUnit::Nanosecond);
    }

    #[test]
    fn min_dates() {
        assert_eq!(parse_min("1970-01-02").unwrap(), 86_400_000_000_000);
        assert!(parse_min("yesterday").is_err());
    }
}
