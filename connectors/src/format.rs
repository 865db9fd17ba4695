//! Value formatting shared by the sinks and the `weir` shell: JSON lines, CSV and Flink-style
//! text (the shell draws its tables from these cells: `shell/src/output.rs::render_table`).
//!
//! Every way Weir shows a value goes through here, so a timestamp looks the same in a file, in
//! the print sink and in the shell: `YYYY-MM-DD HH:MM:SS.fff` with the column's precision,
//! TIMESTAMP_LTZ as wall time in the session zone, doubles in their shortest round-trip form.

mod column;

use chrono_tz::Tz;
use datafusion::arrow::array::Array;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

pub(crate) use column::{Column, Style};

/// Prepare every column of `batch` for rendering.
pub(crate) fn columns(batch: &RecordBatch, tz: Option<Tz>) -> Result<Vec<Column>, ArrowError> {
    batch.columns().iter().map(|a| Column::new(a, tz)).collect()
}

/// Append one JSON object per row (`{"col":value,...}\n`), keys in schema order.
///
/// Numbers are bare (doubles in shortest round-trip form, NaN/infinity as `null`), DECIMAL is a
/// number, DATE is `"YYYY-MM-DD"`, TIMESTAMP is `"YYYY-MM-DD HH:MM:SS.fff"` with the column's
/// precision and TIMESTAMP_LTZ is the wall time in `tz` (UTC when `None`) without an offset.
pub fn batch_to_json_lines(
    batch: &RecordBatch,
    tz: Option<Tz>,
    out: &mut Vec<u8>,
) -> Result<(), ArrowError> {
    let cols = columns(batch, tz)?;
    let keys: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut k = String::from(if i == 0 { "{" } else { "," });
            column::write_json_str(f.name(), &mut k);
            k.push(':');
            k
        })
        .collect();
    let mut text = String::with_capacity(batch.num_rows() * 32 * (cols.len() + 1));
    for row in 0..batch.num_rows() {
        if cols.is_empty() {
            text.push('{');
        }
        for (key, col) in keys.iter().zip(&cols) {
            text.push_str(key);
            col.write(row, Style::Json, &mut text);
        }
        text.push_str("}\n");
    }
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Append the rows as comma-separated values (RFC 4180 quoting, NULL as an empty field), with a
/// header line of column names first when `header` is true.
pub fn batch_to_csv(
    batch: &RecordBatch,
    tz: Option<Tz>,
    out: &mut Vec<u8>,
    header: bool,
) -> Result<(), ArrowError> {
    batch_to_csv_with_delimiter(batch, tz, out, header, ',')
}

/// [`batch_to_csv`] with another field delimiter.
pub fn batch_to_csv_with_delimiter(
    batch: &RecordBatch,
    tz: Option<Tz>,
    out: &mut Vec<u8>,
    header: bool,
    delimiter: char,
) -> Result<(), ArrowError> {
    let cols = columns(batch, tz)?;
    let mut text = String::new();
    if header {
        for (i, f) in batch.schema().fields().iter().enumerate() {
            if i > 0 {
                text.push(delimiter);
            }
            push_csv_field(f.name(), delimiter, &mut text);
        }
        text.push('\n');
    }
    let mut cell = String::new();
    for row in 0..batch.num_rows() {
        for (i, col) in cols.iter().enumerate() {
            if i > 0 {
                text.push(delimiter);
            }
            if !col.is_null(row) {
                cell.clear();
                col.write(row, Style::Text, &mut cell);
                push_csv_field(&cell, delimiter, &mut text);
            }
        }
        text.push('\n');
    }
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Quote a CSV field when it holds the delimiter, a quote or a line break.
fn push_csv_field(value: &str, delimiter: char, out: &mut String) {
    let needs_quotes = value
        .chars()
        .any(|c| c == delimiter || matches!(c, '"' | '\n' | '\r'));
    if needs_quotes {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// One value as plain text, as the print sink and the shell show it (`NULL` for null).
pub fn format_value(array: &dyn Array, row: usize, tz: Option<Tz>) -> String {
    if row >= array.len() {
        return String::new();
    }
    let one = array.slice(row, 1);
    let mut out = String::new();
    match Column::new(&one, tz) {
        Ok(col) => col.write(0, Style::Text, &mut out),
        Err(e) => out.push_str(&format!("<{e}>")),
    }
    out
}

/// Every row of `batch` as text cells (the rules of [`format_value`]).
pub fn format_rows(batch: &RecordBatch, tz: Option<Tz>) -> Result<Vec<Vec<String>>, ArrowError> {
    let cols = columns(batch, tz)?;
    let rows = (0..batch.num_rows())
        .map(|row| {
            cols.iter()
                .map(|c| {
                    let mut s = String::new();
                    c.write(row, Style::Text, &mut s);
                    s
                })
                .collect()
        })
        .collect();
    Ok(rows)
}

#[cfg(test)]
mod tests;
