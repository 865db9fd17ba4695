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
}

impl Printer {
    pub fn new(format: Format, tz: Option<chrono_tz::Tz>) -> Self {
        Self {
            format,
            tz,
            header_done: false,
        }
    }

    pub fn print(&mut self, batch: &RecordBatch) -> std::io::Result<()> {
        if batch.num_rows() == 0 && self.format != Format::Table {
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
            Format::Table => {
                buf.extend(format::pretty_table(std::slice::from_ref(batch), self.tz).into_bytes())
            }
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&buf)?;
        if self.format == Format::Table && !buf.ends_with(b"\n") {
            out.write_all(b"\n")?;
        }
        out.flush()
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
