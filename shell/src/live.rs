//! Showing a running query in the shell, in Flink's SQL-client result modes
//! (`SET 'sql-client.execution.result-mode' = ...`):
//!
//! - `tableau` (the default): rows are printed as they come, as one growing table;
//! - `changelog`: the same, with the `op` column (`+I`, `-U`, `+U`, `-D`) on every row;
//! - `table`: the materialised result (changes applied) is redrawn in place, the latest
//!   [`TABLE_ROWS`] rows of it. The result kept is bounded ([`crate::view`]); a note says how
//!   many rows were dropped from it.
//!
//! On a terminal a status line under the rows shows rows received, the watermark and rows/s.
//! Ctrl-C cancels the query and returns to the prompt ([`crate::interrupt`]).

use std::io::{IsTerminal, Write};
use std::time::Instant;

use weir::arrow::record_batch::RecordBatch;
use weir::connectors::format::format_rows;

use crate::output::{Format, Printer};
use crate::view::{View, MAX_ROWS_KEY};

/// Rows the `table` mode shows.
pub const TABLE_ROWS: usize = 20;
pub const MODE_KEY: &str = "sql-client.execution.result-mode";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Table,
    Changelog,
    Tableau,
}

impl Mode {
    pub fn of(engine: &weir::Engine) -> Mode {
        match engine
            .settings()
            .get(MODE_KEY)
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            Some("table") => Mode::Table,
            Some("changelog") => Mode::Changelog,
            _ => Mode::Tableau,
        }
    }
}

/// Live state of one query on screen.
pub struct Live {
    mode: Mode,
    printer: Printer,
    tz: Option<chrono_tz::Tz>,
    /// The materialised result (`table` mode): column names and rows.
    names: Vec<String>,
    view: View,
    drawn: usize,
    received: u64,
    started: Instant,
    tty: bool,
    status_shown: bool,
}

impl Live {
    /// Show a query in `mode`; the `table` mode keeps at most `max_rows` rows.
    pub fn new(mode: Mode, tz: Option<chrono_tz::Tz>, max_rows: usize) -> Self {
        Self {
            mode,
            printer: Printer::new(Format::Table, tz),
            tz,
            names: vec![],
            view: View::new(max_rows),
            drawn: 0,
            received: 0,
            started: Instant::now(),
            tty: std::io::stdout().is_terminal(),
            status_shown: false,
        }
    }

    /// Show one batch of the query's rows; `watermark` for the status line.
    pub fn batch(&mut self, batch: &RecordBatch, watermark: &str) {
        self.received += batch.num_rows() as u64;
        self.clear_status();
        match self.mode {
            Mode::Tableau => {
                let _ = self.printer.print(batch);
            }
            Mode::Changelog => {
                let _ = self.printer.print(&with_op(batch));
            }
            Mode::Table => self.apply(batch),
        }
        self.status(watermark);
    }

    /// Apply changes to the materialised rows and redraw them.
    fn apply(&mut self, batch: &RecordBatch) {
        let has_op = weir::changelog::has_op(&batch.schema());
        if self.names.is_empty() {
            self.names = batch
                .schema()
                .fields()
                .iter()
                .skip(usize::from(has_op))
                .map(|f| f.name().clone())
                .collect();
        }
        let Ok(rows) = format_rows(batch, self.tz) else {
            return;
        };
        for mut r in rows {
            let op = if has_op { r.remove(0) } else { "+I".into() };
            if op == "-U" || op == "-D" {
                self.view.retract(&r);
            } else {
                self.view.insert(r);
            }
        }
        self.redraw();
    }

    fn redraw(&mut self) {
        let mut out = std::io::stdout().lock();
        if self.tty && self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A\x1b[J", self.drawn);
        }
        let text = crate::output::render_table(&self.names, &self.view.latest(TABLE_ROWS));
        self.drawn = text.lines().count();
        let _ = write!(out, "{text}");
        let _ = out.flush();
    }

    fn status(&mut self, watermark: &str) {
        if !self.tty {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let dropped = match self.view.dropped() {
            0 => String::new(),
            n => format!(", {n} dropped from the view"),
        };
        let line = format!(
            "-- {} rows received{dropped}, watermark {watermark}, {:.0} rows/s (Ctrl-C to stop)",
            self.received,
            self.received as f64 / secs
        );
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\x1b[2m{line}\x1b[0m");
        let _ = out.flush();
        self.status_shown = true;
    }

    fn clear_status(&mut self) {
        if self.status_shown {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[K");
            let _ = out.flush();
            self.status_shown = false;
        }
    }

    /// The query ended or was cancelled.
    pub fn finish(&mut self) {
        self.clear_status();
        match self.mode {
            Mode::Table if self.view.is_empty() && self.drawn == 0 => println!("Empty set"),
            Mode::Table => {}
            _ => self.printer.finish(),
        }
        let secs = self.started.elapsed().as_secs_f64();
        println!("{} rows received in {secs:.2} s.", self.received);
        if self.view.dropped() > 0 {
            println!(
                "Note: {} rows were dropped from the view, which keeps the {} latest rows \
                 ('{MAX_ROWS_KEY}').",
                self.view.dropped(),
                self.view.max_rows()
            );
        }
    }
}

/// The batch with an `op` column first (`+I` for every row of an append-only result).
fn with_op(batch: &RecordBatch) -> RecordBatch {
    if weir::changelog::has_op(&batch.schema()) {
        return batch.clone();
    }
    let schema = weir::changelog::with_op_schema(&batch.schema());
    let op: weir::arrow::array::ArrayRef =
        std::sync::Arc::new(weir::arrow::array::StringArray::from(vec![
            "+I";
            batch.num_rows()
        ]));
    let mut cols = vec![op];
    cols.extend(batch.columns().iter().cloned());
    RecordBatch::try_new(schema, cols).unwrap_or_else(|_| batch.clone())
}
