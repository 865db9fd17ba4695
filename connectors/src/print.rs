//! The `print` sink: writes every row to stdout (or stderr) as Flink does, e.g.
//! `+I[s-000, 2024-01-01 00:00:00.000, 12.5]`, prefixed with `identifier> ` when the table sets
//! `'print-identifier'`.
//!
//! Values are rendered by [`crate::format`], so they look as they do in the shell. A batch is
//! written with one call and flushed, so lines of concurrent jobs do not interleave mid-line.

use std::io::Write;

use chrono_tz::Tz;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use futures::FutureExt;
use weir_engine::changelog::{has_op, split_op};
use weir_engine::connector::{check_known_options, Sink, SinkContext, SinkFactory};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use crate::format::{columns, Style};
use crate::options::{bool_option, session_time_zone};

/// The connector name in `'connector' = 'print'`.
pub const NAME: &str = "print";

pub(crate) const KNOWN_OPTIONS: &[&str] = &["connector", "print-identifier", "standard-error"];

/// Creates `print` sinks.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrintSinkFactory;

impl SinkFactory for PrintSinkFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        check_known_options(table, KNOWN_OPTIONS, &[])?;
        bool_option(table, "standard-error", false).map(|_| ())
    }

    fn guarantee(&self, _table: &TableDef, _checkpointing: bool) -> &'static str {
        "at-least-once"
    }

    /// Rows are printed with their kind (`+I[..]`, `-U[..]`, `+U[..]`, `-D[..]`), as in Flink.
    fn accepts_updates(&self, _table: &TableDef) -> bool {
        true
    }

    fn create(&self, ctx: SinkContext) -> Result<Box<dyn Sink>> {
        let err = |m: String| EngineError::connector(NAME, m);
        self.validate(&ctx.table).map_err(err)?;
        let to_stderr = bool_option(&ctx.table, "standard-error", false).map_err(err)?;
        let prefix = match ctx.table.option("print-identifier") {
            Some(id) => format!("{id}> "),
            None => String::new(),
        };
        let tz = session_time_zone(&ctx.settings).map_err(err)?;
        Ok(Box::new(PrintSink {
            ctx,
            prefix,
            tz,
            to_stderr,
        }))
    }
}

/// Append the rows of `batch` as Flink's print sink shows them, one line each.
pub fn format_print_lines(
    batch: &RecordBatch,
    prefix: &str,
    tz: Option<Tz>,
    out: &mut String,
) -> Result<(), ArrowError> {
    let (kinds, batch) = if has_op(&batch.schema()) {
        let (k, rest) = split_op(batch).map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
        (Some(k), rest)
    } else {
        (None, batch.clone())
    };
    let cols = columns(&batch, tz)?;
    for row in 0..batch.num_rows() {
        out.push_str(prefix);
        out.push_str(kinds.as_ref().map_or("+I", |k| k[row].short()));
        out.push('[');
        for (i, col) in cols.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            col.write(row, Style::Text, out);
        }
        out.push_str("]\n");
    }
    Ok(())
}

/// A running print sink.
struct PrintSink {
    ctx: SinkContext,
    prefix: String,
    tz: Option<Tz>,
    to_stderr: bool,
}

impl PrintSink {
    fn print(&self, batch: &RecordBatch) -> Result<()> {
        let mut text = String::new();
        format_print_lines(batch, &self.prefix, self.tz, &mut text)?;
        let written = if self.to_stderr {
            let mut err = std::io::stderr().lock();
            err.write_all(text.as_bytes()).and_then(|_| err.flush())
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|_| out.flush())
        };
        written.map_err(|e| EngineError::connector(NAME, format!("cannot print: {e}")))?;
        JobMetrics::add(&self.ctx.metrics.rows_out, batch.num_rows());
        Ok(())
    }
}

impl Sink for PrintSink {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        async move { self.print(&batch) }.boxed()
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        async move { Ok(()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{sink_ctx, table};
    use datafusion::arrow::array::{
        ArrayRef, Float64Array, StringArray, TimestampMillisecondArray,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("v", DataType::Float64, true),
        ]);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("s-000"), None])),
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(1_704_067_200_000),
                None,
            ])),
            Arc::new(Float64Array::from(vec![12.5, 3.0])),
        ];
        RecordBatch::try_new(Arc::new(schema), cols).unwrap()
    }

    #[test]
    fn prints_rows_like_flink() {
        let mut out = String::new();
        format_print_lines(&batch(), "", None, &mut out).unwrap();
        assert_eq!(
            out,
            "+I[s-000, 2024-01-01 00:00:00.000, 12.5]\n+I[NULL, NULL, 3.0]\n"
        );
        out.clear();
        format_print_lines(&batch().slice(0, 1), "sink> ", None, &mut out).unwrap();
        assert_eq!(out, "sink> +I[s-000, 2024-01-01 00:00:00.000, 12.5]\n");
    }

    #[tokio::test]
    async fn sink_counts_rows_and_validates() {
        let t = table(&[("connector", "print"), ("standard-error", "true")], &[]);
        assert_eq!(PrintSinkFactory.guarantee(&t, true), "at-least-once");
        let ctx = sink_ctx(t, &[]);
        let mut sink = PrintSinkFactory.create(ctx.clone()).unwrap();
        sink.write(batch()).await.unwrap();
        sink.finish().await.unwrap();
        assert_eq!(JobMetrics::get(&ctx.metrics.rows_out), 2);
        let bad = table(&[("connector", "print"), ("print-identifer", "x")], &[]);
        assert!(PrintSinkFactory
            .validate(&bad)
            .unwrap_err()
            .contains("'print-identifer'"));
        let bad = table(&[("connector", "print"), ("standard-error", "yes")], &[]);
        assert!(PrintSinkFactory
            .validate(&bad)
            .unwrap_err()
            .contains("'standard-error'"));
    }
}
