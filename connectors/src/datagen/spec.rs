//! The `datagen` options, parsed and checked against the table's columns at planning time.
//!
//! Kept apart from generation so that every mistake (an option for a column that does not
//! exist, a bad number, `min > max`, a sequence on a BOOLEAN) is found before a job starts, and
//! the generator can then trust its spec.

use datafusion::arrow::datatypes::DataType;
use weir_engine::connector::check_known_options;
use weir_planner::{ColumnKind, TableDef};

use crate::options::number_option;

/// Options of the connector itself (per-field options are `fields.<column>.<property>`).
pub(crate) const KNOWN_OPTIONS: &[&str] = &["connector", "rows-per-second", "number-of-rows"];

/// Per-field properties, as in Flink.
const FIELD_PROPERTIES: &[&str] = &[
    "kind",
    "min",
    "max",
    "length",
    "max-past",
    "start",
    "end",
    "null-rate",
];

/// Flink's default rate.
const DEFAULT_ROWS_PER_SECOND: f64 = 10_000.0;
/// Flink's default length of random strings.
const DEFAULT_STRING_LENGTH: usize = 100;

/// A whole datagen table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DatagenSpec {
    pub rows_per_second: f64,
    /// Rows before the source ends (`number-of-rows` and sequence lengths); `None`: unbounded.
    pub total_rows: Option<u64>,
    pub fields: Vec<FieldSpec>,
}

/// How one column is generated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldSpec {
    pub name: String,
    pub data_type: DataType,
    pub kind: FieldKind,
    /// Fraction of NULL values (0 by default).
    pub null_rate: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldKind {
    /// `start, start + 1, ..., end`.
    Sequence {
        start: i64,
        end: i64,
    },
    /// Uniform integers in `min..=max`.
    RandomInt {
        min: i64,
        max: i64,
    },
    /// Uniform numbers in `min..max` (FLOAT, DOUBLE, DECIMAL).
    RandomFloat {
        min: f64,
        max: f64,
    },
    RandomBool,
    /// Random hexadecimal text of `length` characters.
    RandomString {
        length: usize,
    },
    /// A time up to `max_past_ms` before the moment of generation (0: now).
    RandomTimestamp {
        max_past_ms: i64,
    },
}

impl DatagenSpec {
    /// Parse and check the options of `table`; the error names the offending option.
    pub(crate) fn parse(table: &TableDef) -> Result<DatagenSpec, String> {
        check_known_options(table, KNOWN_OPTIONS, &["fields."])?;
        check_field_options(table)?;
        let rows_per_second =
            number_option::<f64>(table, "rows-per-second")?.unwrap_or(DEFAULT_ROWS_PER_SECOND);
        if !(rows_per_second > 0.0 && rows_per_second.is_finite()) {
            return Err(format!(
                "option 'rows-per-second' must be positive, not {rows_per_second}"
            ));
        }
        let mut total_rows = number_option::<u64>(table, "number-of-rows")?;
        let mut fields = Vec::new();
        for col in table
            .columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Physical)
        {
            let field = parse_field(table, &col.name, &col.data_type)?;
            if let FieldKind::Sequence { start, end } = field.kind {
                let len =
                    u64::try_from(i128::from(end) - i128::from(start) + 1).unwrap_or(u64::MAX);
                total_rows = Some(total_rows.map_or(len, |t| t.min(len)));
            }
            fields.push(field);
        }
        Ok(DatagenSpec {
            rows_per_second,
            total_rows,
            fields,
        })
    }

    /// The spec of column `name`.
    pub(crate) fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Every `fields.<column>.<property>` must name a physical column and a known property.
fn check_field_options(table: &TableDef) -> Result<(), String> {
    for key in table.options.keys() {
        let Some(rest) = key.strip_prefix("fields.") else {
            continue;
        };
        let Some((column, property)) = rest.rsplit_once('.') else {
            return Err(format!(
                "unknown option '{key}': expected 'fields.<column>.<property>'"
            ));
        };
        let physical = table
            .columns
            .iter()
            .any(|c| c.name == column && c.kind == ColumnKind::Physical);
        if !physical {
            return Err(format!(
                "unknown option '{key}': '{column}' is not a physical column of table '{}'",
                table.name
            ));
        }
        if !FIELD_PROPERTIES.contains(&property) {
            return Err(format!(
                "unknown option '{key}'; a field supports: {}",
                FIELD_PROPERTIES.join(", ")
            ));
        }
    }
    Ok(())
}

/// The kinds of column datagen can fill.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TypeClass {
    Int(i64, i64),
    Float(f64, f64),
    Bool,
    Str,
    Timestamp,
}

fn type_class(data_type: &DataType) -> Option<TypeClass> {
    use DataType as D;
    Some(match data_type {
        D::Int8 => TypeClass::Int(i8::MIN.into(), i8::MAX.into()),
        D::Int16 => TypeClass::Int(i16::MIN.into(), i16::MAX.into()),
        D::Int32 => TypeClass::Int(i32::MIN.into(), i32::MAX.into()),
        D::Int64 => TypeClass::Int(i64::MIN, i64::MAX),
        D::Float32 => TypeClass::Float(f32::MIN_POSITIVE.into(), f32::MAX.into()),
        D::Float64 => TypeClass::Float(f64::MIN_POSITIVE, f64::MAX),
        D::Decimal128(p, s) => {
            let max = 10f64.powi(i32::from(*p) - i32::from(*s)) - 10f64.powi(-i32::from(*s));
            TypeClass::Float(-max, max)
        }
        D::Boolean => TypeClass::Bool,
        D::Utf8 | D::LargeUtf8 | D::Utf8View => TypeClass::Str,
        D::Timestamp(_, _) => TypeClass::Timestamp,
        _ => return None,
    })
}

/// The spec of one column from its `fields.<name>.*` options.
fn parse_field(table: &TableDef, name: &str, data_type: &DataType) -> Result<FieldSpec, String> {
    let key = |p: &str| format!("fields.{name}.{p}");
    let class = type_class(data_type).ok_or_else(|| {
        format!("connector 'datagen' cannot generate column '{name}' of type {data_type}")
    })?;
    let null_rate = number_option::<f64>(table, &key("null-rate"))?.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&null_rate) {
        return Err(format!(
            "option '{}' must be between 0 and 1",
            key("null-rate")
        ));
    }
    let kind = match table
        .option(&key("kind"))
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("random") => random_kind(table, name, class)?,
        Some("sequence") => sequence_kind(table, name, class)?,
        Some(other) => {
            return Err(format!(
                "option '{}' must be 'random' or 'sequence', not '{other}'",
                key("kind")
            ))
        }
    };
    Ok(FieldSpec {
        name: name.to_string(),
        data_type: data_type.clone(),
        kind,
        null_rate,
    })
}

/// Reject properties set for `name` that its kind does not use.
fn reject_unused(table: &TableDef, name: &str, kind: &str, unused: &[&str]) -> Result<(), String> {
    for p in unused {
        let key = format!("fields.{name}.{p}");
        if table.option(&key).is_some() {
            return Err(format!(
                "option '{key}' does not apply to the {kind} field '{name}'"
            ));
        }
    }
    Ok(())
}

fn sequence_kind(table: &TableDef, name: &str, class: TypeClass) -> Result<FieldKind, String> {
    if matches!(class, TypeClass::Bool | TypeClass::Timestamp) {
        return Err(format!(
            "field '{name}' cannot be a sequence: only numbers and strings can"
        ));
    }
    reject_unused(
        table,
        name,
        "sequence",
        &["min", "max", "length", "max-past"],
    )?;
    let bound = |p: &str| -> Result<i64, String> {
        let key = format!("fields.{name}.{p}");
        number_option::<i64>(table, &key)?
            .ok_or_else(|| format!("a sequence field needs the option '{key}'"))
    };
    let (start, end) = (bound("start")?, bound("end")?);
    if start > end {
        return Err(format!(
            "field '{name}': 'start' ({start}) is greater than 'end' ({end})"
        ));
    }
    if let TypeClass::Int(lo, hi) = class {
        if start < lo || end > hi {
            return Err(format!(
                "field '{name}': the sequence {start}..{end} does not fit its type"
            ));
        }
    }
    Ok(FieldKind::Sequence { start, end })
}

fn random_kind(table: &TableDef, name: &str, class: TypeClass) -> Result<FieldKind, String> {
    reject_unused(table, name, "random", &["start", "end"])?;
    let key = |p: &str| format!("fields.{name}.{p}");
    let only = |allowed: &[&str]| {
        let all = ["min", "max", "length", "max-past"];
        let unused: Vec<&str> = all.into_iter().filter(|p| !allowed.contains(p)).collect();
        reject_unused(table, name, "random", &unused)
    };
    match class {
        TypeClass::Int(lo, hi) => {
            only(&["min", "max"])?;
            let min = number_option::<i64>(table, &key("min"))?.unwrap_or(lo);
            let max = number_option::<i64>(table, &key("max"))?.unwrap_or(hi);
            check_range(name, min as f64, max as f64, lo as f64, hi as f64)?;
            Ok(FieldKind::RandomInt { min, max })
        }
        TypeClass::Float(lo, hi) => {
            only(&["min", "max"])?;
            let min = number_option::<f64>(table, &key("min"))?.unwrap_or(lo);
            let max = number_option::<f64>(table, &key("max"))?.unwrap_or(hi);
            check_range(name, min, max, f64::MIN, f64::MAX)?;
            Ok(FieldKind::RandomFloat { min, max })
        }
        TypeClass::Bool => only(&[]).map(|_| FieldKind::RandomBool),
        TypeClass::Str => {
            only(&["length"])?;
            let length = number_option::<usize>(table, &key("length"))?;
            Ok(FieldKind::RandomString {
                length: length.unwrap_or(DEFAULT_STRING_LENGTH),
            })
        }
        TypeClass::Timestamp => {
            only(&["max-past"])?;
            random_timestamp(table, name)
        }
    }
}

/// `fields.<name>.max-past`: how far back random times reach (default 0: now).
fn random_timestamp(table: &TableDef, name: &str) -> Result<FieldKind, String> {
    let key = format!("fields.{name}.max-past");
    let max_past_ms = match table.option(&key) {
        None => 0,
        Some(v) => parse_duration_ms(v)
            .ok_or_else(|| format!("option '{key}' must be a duration, not '{v}'"))?,
    };
    Ok(FieldKind::RandomTimestamp { max_past_ms })
}

fn check_range(name: &str, min: f64, max: f64, lo: f64, hi: f64) -> Result<(), String> {
    if min.is_nan() || max.is_nan() || min > max {
        return Err(format!(
            "field '{name}': 'min' ({min}) must not be greater than 'max' ({max})"
        ));
    }
    if min < lo || max > hi {
        return Err(format!(
            "field '{name}': 'min'/'max' ({min}..{max}) do not fit its type"
        ));
    }
    Ok(())
}

/// A Flink duration such as `5000` (ms), `10 s`, `1 min`, `2h`, `1 d`, in milliseconds.
pub(crate) fn parse_duration_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(factor)
}
