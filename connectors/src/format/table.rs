//! ASCII tables in the style of Flink's tableau result mode, for the shell.
//!
//! Kept apart from the row writers because it needs every cell up front (to size the columns),
//! which the streaming writers must not.

use chrono_tz::Tz;
use datafusion::arrow::record_batch::RecordBatch;

use super::format_rows;

/// Render `batches` as a table: `+---+` borders, a header of column names, then the rows,
/// every cell right-aligned as Flink does. `Empty set` when there are no rows.
pub fn pretty_table(batches: &[RecordBatch], tz: Option<Tz>) -> String {
    let Some(first) = batches.first() else {
        return "Empty set\n".to_string();
    };
    let header: Vec<String> = first
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for batch in batches {
        match format_rows(batch, tz) {
            Ok(r) => rows.extend(r),
            Err(e) => return format!("cannot render the result: {e}\n"),
        }
    }
    if rows.is_empty() {
        return "Empty set\n".to_string();
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            let cells = rows.iter().map(|r| width(&r[i]));
            cells.fold(width(&header[i]), usize::max)
        })
        .collect();
    let border = border_line(&widths);
    let mut out = String::new();
    out.push_str(&border);
    push_row(&header, &widths, &mut out);
    out.push_str(&border);
    for row in &rows {
        push_row(row, &widths, &mut out);
    }
    out.push_str(&border);
    out
}

/// Display width of a cell (characters; line breaks shown as spaces do not change it).
fn width(s: &str) -> usize {
    s.chars().count()
}

fn border_line(widths: &[usize]) -> String {
    let mut line = String::from("+");
    for w in widths {
        line.push_str(&"-".repeat(w + 2));
        line.push('+');
    }
    line.push('\n');
    line
}

fn push_row(cells: &[String], widths: &[usize], out: &mut String) {
    out.push('|');
    for (cell, w) in cells.iter().zip(widths) {
        let shown: String = cell
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        out.push(' ');
        out.push_str(&" ".repeat(w - width(&shown)));
        out.push_str(&shown);
        out.push_str(" |");
    }
    out.push('\n');
}
