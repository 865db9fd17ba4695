//! One Arrow column prepared for rendering, cell by cell, as JSON or as Flink-style text.
//!
//! Each column is downcast (or cast to a common representation, e.g. every integer to `Int64`)
//! once per batch, so rendering a cell is a match on a small enum instead of a dynamic downcast.
//! The rendering rules live here, in one place, so that the print sink, the file sink and the
//! shell agree on what a value looks like.

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float32Array, Float64Array, Int64Array,
    StringArray, UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, DecimalType, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// How a cell is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// A JSON value: strings quoted and escaped, `null`, NaN/infinity as `null`.
    Json,
    /// Plain text as Flink prints it: strings raw, `NULL`, `NaN`, `Infinity`.
    Text,
}

/// The typed view of a column used for rendering.
enum Data {
    Null,
    Bool(BooleanArray),
    Int(Int64Array),
    UInt(UInt64Array),
    F32(Float32Array),
    F64(Float64Array),
    Str(StringArray),
    Decimal {
        values: ArrayRef,
        precision: u8,
        scale: i8,
    },
    /// Days since the epoch.
    Date(Int64Array),
    /// Time since midnight in `unit`.
    Time(Int64Array, TimeUnit),
    /// Epoch values in `unit`; `zone` is set for instants (TIMESTAMP_LTZ) and names the zone
    /// whose wall time is shown.
    Timestamp {
        values: Int64Array,
        unit: TimeUnit,
        zone: Option<Tz>,
    },
    Binary(BinaryArray),
    /// An ARRAY (a list): in JSON an array of its elements, elsewhere Arrow's display.
    List {
        offsets: Vec<usize>,
        values: Box<Column>,
    },
    /// Anything else, rendered by Arrow's display; `number` says whether JSON leaves it bare.
    Other {
        array: ArrayRef,
        number: bool,
    },
}

/// A column ready to be rendered cell by cell.
pub(crate) struct Column {
    array: ArrayRef,
    data: Data,
}

fn cast_to<T: Array + Clone + 'static>(array: &ArrayRef, to: &DataType) -> Result<T, ArrowError> {
    let casted = cast(array, to)?;
    casted
        .as_any()
        .downcast_ref::<T>()
        .cloned()
        .ok_or_else(|| ArrowError::CastError(format!("cannot render a column of type {to}")))
}

impl Column {
    /// Prepare `array`; `tz` is the session zone used for TIMESTAMP_LTZ values (UTC when None).
    pub(crate) fn new(array: &ArrayRef, tz: Option<Tz>) -> Result<Column, ArrowError> {
        use DataType as D;
        let data = match array.data_type() {
            D::Null => Data::Null,
            D::Boolean => Data::Bool(array.as_boolean().clone()),
            D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 => {
                Data::Int(cast_to(array, &D::Int64)?)
            }
            D::UInt64 => Data::UInt(array.as_primitive().clone()),
            D::Float16 | D::Float32 => Data::F32(cast_to(array, &D::Float32)?),
            D::Float64 => Data::F64(array.as_primitive().clone()),
            D::Utf8 | D::LargeUtf8 | D::Utf8View => Data::Str(cast_to(array, &D::Utf8)?),
            D::Decimal128(p, s) => Data::Decimal {
                values: array.clone(),
                precision: *p,
                scale: *s,
            },
            D::Decimal32(..) | D::Decimal64(..) | D::Decimal256(..) => Data::Other {
                array: array.clone(),
                number: true,
            },
            D::Date32 | D::Date64 => Data::Date(cast_to(&cast(array, &D::Date32)?, &D::Int64)?),
            D::Time32(unit) | D::Time64(unit) => Data::Time(cast_to(array, &D::Int64)?, *unit),
            D::Timestamp(unit, column_zone) => Data::Timestamp {
                values: cast_to(array, &D::Int64)?,
                unit: *unit,
                zone: column_zone.as_ref().map(|_| tz.unwrap_or(Tz::UTC)),
            },
            D::Binary | D::LargeBinary | D::BinaryView => Data::Binary(cast_to(array, &D::Binary)?),
            D::List(_) => {
                let list = array.as_list::<i32>();
                let offsets = list.value_offsets().iter().map(|o| *o as usize).collect();
                Data::List {
                    offsets,
                    values: Box::new(Column::new(list.values(), tz)?),
                }
            }
            D::LargeList(_) => {
                let list = array.as_list::<i64>();
                let offsets = list.value_offsets().iter().map(|o| *o as usize).collect();
                Data::List {
                    offsets,
                    values: Box::new(Column::new(list.values(), tz)?),
                }
            }
            _ => Data::Other {
                array: array.clone(),
                number: false,
            },
        };
        Ok(Column {
            array: array.clone(),
            data,
        })
    }

    pub(crate) fn is_null(&self, row: usize) -> bool {
        self.array.is_null(row)
    }

    /// Append the cell at `row` to `out`.
    pub(crate) fn write(&self, row: usize, style: Style, out: &mut String) {
        if self.is_null(row) {
            out.push_str(if style == Style::Json { "null" } else { "NULL" });
            return;
        }
        match &self.data {
            Data::Null => out.push_str(if style == Style::Json { "null" } else { "NULL" }),
            Data::Bool(a) => out.push_str(if a.value(row) { "true" } else { "false" }),
            Data::Int(a) => push_display(out, a.value(row)),
            Data::UInt(a) => push_display(out, a.value(row)),
            Data::F32(a) => write_float(a.value(row) as f64, &a.value(row), style, out),
            Data::F64(a) => write_float(a.value(row), &a.value(row), style, out),
            Data::Str(a) => write_str(a.value(row), style, out),
            Data::Decimal {
                values,
                precision,
                scale,
            } => {
                let v = values.as_primitive::<Decimal128Type>().value(row);
                out.push_str(&Decimal128Type::format_decimal(v, *precision, *scale));
            }
            Data::Date(a) => quoted(style, out, |o| write_date(a.value(row), o)),
            Data::Time(a, unit) => quoted(style, out, |o| write_time(a.value(row), *unit, o)),
            Data::Timestamp { values, unit, zone } => {
                let v = values.value(row);
                quoted(style, out, |o| write_timestamp(v, *unit, *zone, o))
            }
            Data::Binary(a) => write_binary(a.value(row), style, out),
            Data::List { offsets, values } if style == Style::Json => {
                out.push('[');
                for (n, i) in (offsets[row]..offsets[row + 1]).enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    values.write(i, style, out);
                }
                out.push(']');
            }
            Data::List { .. } => write_other(&self.array, row, false, style, out),
            Data::Other { array, number } => write_other(array, row, *number, style, out),
        }
    }
}

fn push_display(out: &mut String, v: impl std::fmt::Display) {
    let _ = write!(out, "{v}");
}

/// Wrap what `f` writes in JSON quotes when `style` is JSON (for values that need no escaping).
fn quoted(style: Style, out: &mut String, f: impl FnOnce(&mut String)) {
    if style == Style::Json {
        out.push('"');
        f(out);
        out.push('"');
    } else {
        f(out);
    }
}

/// Doubles use Rust's shortest round-trip form (`{:?}`, so `12.0` keeps its fraction).
fn write_float(v: f64, shortest: &dyn std::fmt::Debug, style: Style, out: &mut String) {
    if v.is_finite() {
        let _ = write!(out, "{shortest:?}");
    } else if style == Style::Json {
        out.push_str("null");
    } else if v.is_nan() {
        out.push_str("NaN");
    } else {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    }
}

fn write_str(s: &str, style: Style, out: &mut String) {
    match style {
        Style::Json => write_json_str(s, out),
        Style::Text => out.push_str(s),
    }
}

/// Append `s` as a JSON string literal, escaping quotes, backslashes and control characters.
pub(crate) fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_date(days: i64, out: &mut String) {
    match DateTime::from_timestamp(days.saturating_mul(86_400), 0) {
        Some(d) => push_display(out, d.date_naive().format("%Y-%m-%d")),
        None => push_display(out, days),
    }
}

/// Split an epoch value into whole seconds and nanoseconds (floor division, so negative values
/// before 1970 render correctly).
fn split_epoch(v: i64, unit: TimeUnit) -> (i64, u32) {
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let nanos = v.rem_euclid(per_second) * (1_000_000_000 / per_second);
    (v.div_euclid(per_second), nanos as u32)
}

/// The fraction digits of `nanos` for a column of `unit` (`.fff` for milliseconds, etc.).
fn write_fraction(nanos: u32, unit: TimeUnit, out: &mut String) {
    let _ = match unit {
        TimeUnit::Second => Ok(()),
        TimeUnit::Millisecond => write!(out, ".{:03}", nanos / 1_000_000),
        TimeUnit::Microsecond => write!(out, ".{:06}", nanos / 1_000),
        TimeUnit::Nanosecond => write!(out, ".{nanos:09}"),
    };
}

/// `YYYY-MM-DD HH:MM:SS[.fff]`: wall time for TIMESTAMP, wall time in `zone` for instants.
pub(crate) fn write_timestamp(v: i64, unit: TimeUnit, zone: Option<Tz>, out: &mut String) {
    let (secs, nanos) = split_epoch(v, unit);
    let Some(utc) = DateTime::from_timestamp(secs, nanos) else {
        push_display(out, v);
        return;
    };
    let wall: NaiveDateTime = match zone {
        Some(z) => z.from_utc_datetime(&utc.naive_utc()).naive_local(),
        None => utc.naive_utc(),
    };
    push_display(out, wall.format("%Y-%m-%d %H:%M:%S"));
    write_fraction(nanos, unit, out);
}

/// `HH:MM:SS`, plus the unit's fraction digits when the fraction is not zero.
fn write_time(v: i64, unit: TimeUnit, out: &mut String) {
    let (secs, nanos) = split_epoch(v, unit);
    let secs = secs.rem_euclid(86_400);
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if nanos != 0 {
        write_fraction(nanos, unit, out);
    }
}

fn write_binary(bytes: &[u8], style: Style, out: &mut String) {
    match style {
        Style::Json => {
            out.push('"');
            write_base64(bytes, out);
            out.push('"');
        }
        Style::Text => {
            out.push_str("x'");
            for b in bytes {
                let _ = write!(out, "{b:02x}");
            }
            out.push('\'');
        }
    }
}

/// Standard base64 with padding, as Flink's JSON format writes BYTES.
fn write_base64(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
}

fn write_other(array: &ArrayRef, row: usize, number: bool, style: Style, out: &mut String) {
    let options = FormatOptions::default();
    let text = match ArrayFormatter::try_new(array.as_ref(), &options) {
        Ok(f) => f.value(row).to_string(),
        Err(e) => format!("<{e}>"),
    };
    if style == Style::Json && !number {
        write_json_str(&text, out);
    } else {
        out.push_str(&text);
    }
}
