//! Arrow values as PostgreSQL binary values, and the PostgreSQL type each Arrow type travels
//! as.
//!
//! Rows go to PostgreSQL through binary COPY into a staging table whose columns have the
//! [`PgKind`] of the Arrow columns; one statement then moves them into the target table, cast
//! to its column types (`numeric`, `varchar(20)`, `jsonb`…), so the target may use any type
//! PostgreSQL can cast to. A [`Cell`] borrows one value of an Arrow array and encodes it in
//! place: no row is built.

use std::error::Error;

use bytes::BytesMut;
use chrono::{DateTime, NaiveDate};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// How a column travels between Weir and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PgKind {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    Text,
    Bytea,
    Date,
    Timestamp,
    Timestamptz,
    /// Any other type (DECIMAL, TIME, arrays…) travels as its text form and is cast.
    AsText,
}

impl PgKind {
    /// The kind an Arrow type travels as.
    pub(crate) fn of(dt: &DataType) -> Self {
        match dt {
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => Self::Int2,
            DataType::Int32 | DataType::UInt16 => Self::Int4,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Self::Int8,
            DataType::Float32 => Self::Float4,
            DataType::Float64 => Self::Float8,
            DataType::Boolean => Self::Bool,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Self::Text,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Self::Bytea,
            DataType::Date32 => Self::Date,
            DataType::Timestamp(_, None) => Self::Timestamp,
            DataType::Timestamp(_, Some(_)) => Self::Timestamptz,
            _ => Self::AsText,
        }
    }

    /// The PostgreSQL type.
    pub(crate) fn pg_type(self) -> Type {
        match self {
            Self::Int2 => Type::INT2,
            Self::Int4 => Type::INT4,
            Self::Int8 => Type::INT8,
            Self::Float4 => Type::FLOAT4,
            Self::Float8 => Type::FLOAT8,
            Self::Bool => Type::BOOL,
            Self::Text | Self::AsText => Type::TEXT,
            Self::Bytea => Type::BYTEA,
            Self::Date => Type::DATE,
            Self::Timestamp => Type::TIMESTAMP,
            Self::Timestamptz => Type::TIMESTAMPTZ,
        }
    }

    /// The type's name in SQL (a staging table's column, a cast).
    pub(crate) fn sql(self) -> &'static str {
        match self {
            Self::Int2 => "smallint",
            Self::Int4 => "integer",
            Self::Int8 => "bigint",
            Self::Float4 => "real",
            Self::Float8 => "double precision",
            Self::Bool => "boolean",
            Self::Text | Self::AsText => "text",
            Self::Bytea => "bytea",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
            Self::Timestamptz => "timestamptz",
        }
    }
}

type SqlResult = Result<IsNull, Box<dyn Error + Sync + Send>>;

/// Value `row` of `array`, encoded as its [`PgKind`].
#[derive(Debug)]
pub(crate) struct Cell<'a> {
    pub array: &'a dyn Array,
    pub row: usize,
}

impl ToSql for Cell<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> SqlResult {
        let (a, r) = (self.array, self.row);
        if a.is_null(r) {
            return Ok(IsNull::Yes);
        }
        match a.data_type() {
            DataType::Int8 => i16::from(a.as_primitive::<Int8Type>().value(r)).to_sql(ty, out),
            DataType::UInt8 => i16::from(a.as_primitive::<UInt8Type>().value(r)).to_sql(ty, out),
            DataType::Int16 => a.as_primitive::<Int16Type>().value(r).to_sql(ty, out),
            DataType::UInt16 => i32::from(a.as_primitive::<UInt16Type>().value(r)).to_sql(ty, out),
            DataType::Int32 => a.as_primitive::<Int32Type>().value(r).to_sql(ty, out),
            DataType::UInt32 => i64::from(a.as_primitive::<UInt32Type>().value(r)).to_sql(ty, out),
            DataType::Int64 => a.as_primitive::<Int64Type>().value(r).to_sql(ty, out),
            DataType::UInt64 => {
                i64::try_from(a.as_primitive::<UInt64Type>().value(r))?.to_sql(ty, out)
            }
            DataType::Float32 => a.as_primitive::<Float32Type>().value(r).to_sql(ty, out),
            DataType::Float64 => a.as_primitive::<Float64Type>().value(r).to_sql(ty, out),
            DataType::Boolean => a.as_boolean().value(r).to_sql(ty, out),
            DataType::Utf8 => a.as_string::<i32>().value(r).to_sql(ty, out),
            DataType::LargeUtf8 => a.as_string::<i64>().value(r).to_sql(ty, out),
            DataType::Utf8View => a.as_string_view().value(r).to_sql(ty, out),
            DataType::Binary => a.as_binary::<i32>().value(r).to_sql(ty, out),
            DataType::LargeBinary => a.as_binary::<i64>().value(r).to_sql(ty, out),
            DataType::BinaryView => a.as_binary_view().value(r).to_sql(ty, out),
            DataType::Date32 => date(a.as_primitive::<Date32Type>().value(r))?.to_sql(ty, out),
            DataType::Timestamp(unit, tz) => timestamp(a, r, *unit, tz.is_some(), ty, out),
            _ => text(a, r)?.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn date(days: i32) -> Result<NaiveDate, Box<dyn Error + Sync + Send>> {
    NaiveDate::from_num_days_from_ce_opt(days + 719_163)
        .ok_or_else(|| format!("date {days} days from 1970 is out of range").into())
}

fn timestamp(
    a: &dyn Array,
    r: usize,
    unit: TimeUnit,
    zoned: bool,
    ty: &Type,
    out: &mut BytesMut,
) -> SqlResult {
    let (v, micros) = match unit {
        TimeUnit::Second => {
            let v = a.as_primitive::<TimestampSecondType>().value(r);
            (v, v.saturating_mul(1_000_000))
        }
        TimeUnit::Millisecond => {
            let v = a.as_primitive::<TimestampMillisecondType>().value(r);
            (v, v.saturating_mul(1_000))
        }
        TimeUnit::Microsecond => {
            let v = a.as_primitive::<TimestampMicrosecondType>().value(r);
            (v, v)
        }
        TimeUnit::Nanosecond => {
            let v = a.as_primitive::<TimestampNanosecondType>().value(r);
            (v, v.div_euclid(1_000))
        }
    };
    let t = DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| format!("timestamp {v} is out of range"))?;
    match zoned {
        true => t.to_sql(ty, out),
        false => t.naive_utc().to_sql(ty, out),
    }
}

fn text(a: &dyn Array, r: usize) -> Result<String, Box<dyn Error + Sync + Send>> {
    let f = ArrayFormatter::try_new(a, &FormatOptions::default())?;
    Ok(f.value(r).to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, Decimal128Array, Int64Array, TimestampMillisecondArray,
    };

    use super::*;

    fn encode(a: &ArrayRef, r: usize) -> Vec<u8> {
        let mut out = BytesMut::new();
        let kind = PgKind::of(a.data_type());
        let cell = Cell {
            array: a.as_ref(),
            row: r,
        };
        match cell.to_sql_checked(&kind.pg_type(), &mut out).unwrap() {
            IsNull::Yes => b"NULL".to_vec(),
            IsNull::No => out.to_vec(),
        }
    }

    #[test]
    fn values_encode_as_their_kind() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(258), None]));
        assert_eq!(encode(&a, 0), 258i64.to_be_bytes());
        assert_eq!(encode(&a, 1), b"NULL");
        // 1970-01-01 00:00:01 as microseconds since 2000-01-01 (PostgreSQL's epoch).
        let a: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![1_000]));
        let pg_epoch_us = 946_684_800_000_000i64;
        assert_eq!(encode(&a, 0), (1_000_000 - pg_epoch_us).to_be_bytes());
        let a: ArrayRef = Arc::new(
            Decimal128Array::from(vec![1234])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        );
        assert_eq!(PgKind::of(a.data_type()), PgKind::AsText);
        assert_eq!(encode(&a, 0), b"12.34");
    }
}
