//! PostgreSQL rows into Arrow columns, for the scan source and the lookup join.
//!
//! A query selects each column cast to the [`PgKind`] its Arrow type travels as
//! ([`select_list`]), so the values read are of known PostgreSQL types whatever the table
//! declares (an `integer` column read into a BIGINT, a `numeric` into a DECIMAL through its
//! text form); each column is then built in one pass over the rows, and cast by Arrow's kernel
//! where the kinds differ from the declared type (SMALLINT into TINYINT, text into DECIMAL).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;
use weir_engine::{EngineError, Result};

use super::cells::PgKind;
use super::{quote_ident, NAME};

/// `CAST(q."a" AS bigint), CAST(q."b" AS text), …` for the fields of `schema`, read from a
/// relation aliased `q`.
pub(crate) fn select_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| {
            let kind = PgKind::of(f.data_type());
            format!("CAST(q.{} AS {})", quote_ident(f.name()), kind.sql())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `rows` (selected with [`select_list`] of `schema`) as one batch of `schema`.
pub(crate) fn to_batch(rows: &[Row], schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| column(rows, i, f.data_type()))
        .collect::<Result<Vec<_>>>()?;
    let options =
        datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
        .map_err(|e| EngineError::connector(NAME, format!("rows do not fit the table: {e}")))
}

fn get<'a, T: FromSql<'a>>(rows: &'a [Row], i: usize) -> Result<Vec<Option<T>>> {
    rows.iter()
        .map(|r| r.try_get::<_, Option<T>>(i))
        .collect::<Result<_, _>>()
        .map_err(|e| EngineError::connector(NAME, format!("cannot read column {}: {e}", i + 1)))
}

fn column(rows: &[Row], i: usize, dt: &DataType) -> Result<ArrayRef> {
    let read: ArrayRef = match PgKind::of(dt) {
        PgKind::Int2 => Arc::new(Int16Array::from(get::<i16>(rows, i)?)),
        PgKind::Int4 => Arc::new(Int32Array::from(get::<i32>(rows, i)?)),
        PgKind::Int8 => Arc::new(Int64Array::from(get::<i64>(rows, i)?)),
        PgKind::Float4 => Arc::new(Float32Array::from(get::<f32>(rows, i)?)),
        PgKind::Float8 => Arc::new(Float64Array::from(get::<f64>(rows, i)?)),
        PgKind::Bool => Arc::new(BooleanArray::from(get::<bool>(rows, i)?)),
        PgKind::Text | PgKind::AsText => Arc::new(StringArray::from(get::<&str>(rows, i)?)),
        PgKind::Bytea => Arc::new(BinaryArray::from(get::<&[u8]>(rows, i)?)),
        PgKind::Date => {
            let days = get::<NaiveDate>(rows, i)?
                .into_iter()
                .map(|d| d.map(|d| (d - NaiveDate::default()).num_days() as i32));
            Arc::new(Date32Array::from_iter(days))
        }
        PgKind::Timestamp => {
            let us = get::<NaiveDateTime>(rows, i)?;
            let us = us
                .into_iter()
                .map(|t| t.map(|t| t.and_utc().timestamp_micros()));
            Arc::new(TimestampMicrosecondArray::from_iter(us))
        }
        PgKind::Timestamptz => {
            let us = get::<DateTime<Utc>>(rows, i)?;
            let us = us.into_iter().map(|t| t.map(|t| t.timestamp_micros()));
            let tz = match dt {
                DataType::Timestamp(_, tz) => tz.clone(),
                _ => None,
            };
            Arc::new(TimestampMicrosecondArray::from_iter(us).with_timezone_opt(tz))
        }
    };
    if read.data_type() == dt {
        return Ok(read);
    }
    cast(&read, dt).map_err(|e| {
        EngineError::connector(NAME, format!("column {} does not read as {dt}: {e}", i + 1))
    })
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, TimeUnit};

    use super::*;

    #[test]
    fn columns_are_selected_cast_to_their_kind() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("Name", DataType::Utf8, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("price", DataType::Decimal128(10, 2), true),
        ]);
        assert_eq!(
            select_list(&schema),
            "CAST(q.\"id\" AS bigint), CAST(q.\"Name\" AS text), CAST(q.\"at\" AS timestamp), \
             CAST(q.\"price\" AS text)"
        );
    }
}
