//! Printing results: table, JSON lines or CSV, with timestamps in the session time zone.

use std::io::Write;

use weir::arrow::record_batch::RecordBatch;
use weir::connectors::format;

/// How `weir run` prints rows.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Prints batches as they arrive.
pub struct Printer {
    pub format: Format,
    pub tz: Option<chrono_tz::Tz>,
    header_done: bool,
    /// Column widths of the table format, fixed by the header and the first rows.
    widths: Vec<usize>,
}

impl Printer {
    pub fn new(format: Format, tz: Option<chrono_tz::Tz>) -> Self {
        Self {
            format,
            tz,
            header_done: false,
            widths: vec![],
        }
    }

    pub fn print(&mut self, batch: &RecordBatch) -> std::io::Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let mut buf = Vec::new();
        match self.format {
            Format::Json => format::batch_to_json_lines(batch, self.tz, &mut buf)
                .map_err(std::io::Error::other)?,
            Format::Csv => {
                format::batch_to_csv(batch, self.tz, &mut buf, !self.header_done)
                    .map_err(std::io::Error::other)?;
                self.header_done = true;
            }
            Format::Table => self.table_rows(batch, &mut buf)?,
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&buf)?;
        out.flush()
    }

    /// A stream's rows as one growing table: the header once, then rows as windows close.
    fn table_rows(&mut self, batch: &RecordBatch, buf: &mut Vec<u8>) -> std::io::Result<()> {
        let rows = format::format_rows(batch, self.tz).map_err(std::io::Error::other)?;
        if !self.header_done {
            let schema = batch.schema();
            let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            self.widths = names.iter().map(|n| n.chars().count()).collect();
            for r in &rows {
                for (w, v) in self.widths.iter_mut().zip(r) {
                    *w = (*w).max(v.chars().count());
                }
            }
            let rule = self.rule();
            buf.extend(format!("{rule}\n{}\n{rule}\n", self.line(&names)).into_bytes());
            self.header_done = true;
        }
        for r in &rows {
            buf.extend(format!("{}\n", self.line(r)).into_bytes());
        }
        Ok(())
    }

    fn rule(&self) -> String {
        rule(&self.widths)
    }

    fn line(&self, values: &[String]) -> String {
        line(values, &self.widths)
    }

    /// Close the table (its bottom rule), or say that there were no rows.
    pub fn finish(&mut self) {
        if self.format != Format::Table {
            return;
        }
        if self.header_done {
            println!("{}", self.rule());
        } else {
            println!("Empty set");
        }
    }
}

/// The session time zone of an engine.
pub fn session_tz(engine: &weir::Engine) -> Option<chrono_tz::Tz> {
    engine
        .settings()
        .get("table.local-time-zone")
        .and_then(|s| s.parse().ok())
}

/// An error with the statement line and a caret under the failing position.
pub fn render_error(sql: &str, e: &weir::EngineError) -> String {
    let mut out = format!("error: {e}");
    if let weir::EngineError::Plan(p) = e {
        if let Some(loc) = p.location() {
            if let Some(line) = sql.lines().nth((loc.line as usize).saturating_sub(1)) {
                let pad = " ".repeat((loc.column as usize).saturating_sub(1));
                out.push_str(&format!(
                    "\n  --> line {}, column {}\n   | {line}\n   | {pad}^",
                    loc.line, loc.column
                ));
            }
        }
    }
    out
}

/// `+-----+---+` for columns of these widths.
fn rule(widths: &[usize]) -> String {
    let parts: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    format!("+{}+", parts.join("+"))
}

/// `| a | b |`, right-aligned in columns of these widths; control characters (a line break in
/// a string) show as spaces so a row stays one line.
fn line(values: &[String], widths: &[usize]) -> String {
    let cells: Vec<String> = values
        .iter()
        .zip(widths)
        .map(|(v, w)| {
            let shown: String = v
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            format!(" {shown:>w$} ", w = *w)
        })
        .collect();
    format!("|{}|", cells.join("|"))
}

/// A whole table as text: a header and rows between rules.
pub fn render_table(names: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
    for r in rows {
        for (w, v) in widths.iter_mut().zip(r) {
            *w = (*w).max(v.chars().count());
        }
    }
    let rule = rule(&widths);
    let mut out = format!("{rule}\n{}\n{rule}\n", line(names, &widths));
    for r in rows {
        out.push_str(&line(r, &widths));
        out.push('\n');
    }
    out.push_str(&rule);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::render_table;

    #[test]
    fn tables_right_align_like_flink_and_keep_each_row_on_one_line() {
        let names = vec!["sensor_id".to_string(), "cnt".to_string()];
        let rows = vec![
            vec!["s-000".to_string(), "1".to_string()],
            vec!["NULL".to_string(), "12345".to_string()],
            vec!["a\nb".to_string(), "2".to_string()],
        ];
        let expected = "\
+-----------+-------+
| sensor_id |   cnt |
+-----------+-------+
|     s-000 |     1 |
|      NULL | 12345 |
|       a b |     2 |
+-----------+-------+
";
        assert_eq!(render_table(&names, &rows), expected);
    }
}
