//! The `filesystem` sink: writes result rows as JSON lines or CSV to one local file.
//!
//! `path` names the file, or a directory (an existing one, or a path ending in `/`) in which
//! `part-<subtask>.jsonl` / `.csv` is written, one file per subtask of the sink. Rows are appended as they arrive and flushed when
//! the input ends: at-least-once. A checkpointing job writes through `committing.rs`
//! (exactly-once), and Parquet through `parquet_sink.rs`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use chrono_tz::Tz;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use futures::FutureExt;
use weir_engine::connector::{Sink, SinkContext, SinkFactory};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::{FileOptions, Format, NAME};
use crate::format::{batch_to_csv_with_delimiter, batch_to_json_lines};
use crate::options::session_time_zone;

/// Creates `filesystem` sinks.
#[derive(Debug, Default, Clone, Copy)]
pub struct FilesystemSinkFactory;

impl SinkFactory for FilesystemSinkFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        FileOptions::parse(table).map(|_| ())
    }

    /// With checkpoints, rows go to in-progress files that are renamed when the checkpoint
    /// completes: exactly-once.
    fn guarantee(&self, _table: &TableDef, checkpointing: bool) -> &'static str {
        if checkpointing {
            "exactly-once"
        } else {
            "at-least-once"
        }
    }

    /// JSON lines and CSV: each subtask writes its own files (`part-<subtask>.<ext>` in a
    /// directory; with checkpoints `part-<checkpoint>-<subtask>-<n>.<ext>`). A single named
    /// file, and Parquet, are written by one task.
    fn parallel(&self, table: &TableDef, checkpointing: bool) -> bool {
        let Ok(options) = FileOptions::parse(table) else {
            return false;
        };
        options.format != Format::Parquet && (checkpointing || is_directory(&options))
    }

    fn create(&self, ctx: SinkContext) -> Result<Box<dyn Sink>> {
        let err = |m: String| EngineError::connector(NAME, m);
        let options = FileOptions::parse(&ctx.table).map_err(err)?;
        let tz = session_time_zone(&ctx.settings).map_err(err)?;
        if options.format == Format::Parquet {
            let sink = super::parquet_sink::ParquetSink::open(ctx, &options)?;
            return Ok(Box::new(sink));
        }
        if ctx.checkpointing {
            return Ok(Box::new(super::committing::CommittingSink::open(
                ctx, options, tz,
            )?));
        }
        let target = target_file(&options, ctx.subtask.index)?;
        let file = File::create(&target).map_err(|e| {
            EngineError::connector(NAME, format!("cannot create '{}': {e}", target.display()))
        })?;
        let header = options.format == Format::Csv && options.csv.ignore_first_line;
        Ok(Box::new(FileSink {
            ctx,
            options,
            tz,
            target,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            header_pending: header,
            scratch: Vec::new(),
        }))
    }
}

/// `path` names a directory: an existing one, or a path ending in `/`.
fn is_directory(options: &FileOptions) -> bool {
    options.path.ends_with('/') || options.local_path().is_dir()
}

/// The file to write: `path` itself, or `part-<subtask>.<ext>` inside it when it is a
/// directory. Missing parent directories are created.
fn target_file(options: &FileOptions, subtask: usize) -> Result<PathBuf> {
    let path = options.local_path();
    let is_dir = is_directory(options);
    let ext = match options.format {
        Format::Json => "jsonl",
        Format::Csv => "csv",
        Format::Parquet => "parquet",
    };
    let file = if is_dir {
        path.join(format!("part-{subtask}.{ext}"))
    } else {
        path
    };
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            EngineError::connector(NAME, format!("cannot create '{}': {e}", parent.display()))
        })?;
    }
    Ok(file)
}

/// `batch` as JSON lines or CSV (with a header line first when `header`).
pub(super) fn encode_rows(
    options: &FileOptions,
    tz: Option<Tz>,
    header: bool,
    batch: &RecordBatch,
    out: &mut Vec<u8>,
) -> Result<()> {
    match options.format {
        Format::Json => batch_to_json_lines(batch, tz, out)?,
        Format::Csv => {
            let delimiter = char::from(options.csv.delimiter);
            batch_to_csv_with_delimiter(batch, tz, out, header, delimiter)?
        }
        Format::Parquet => {
            return Err(EngineError::Internal(
                "Parquet is written by the Parquet sink".into(),
            ))
        }
    }
    Ok(())
}

/// A running filesystem sink.
struct FileSink {
    ctx: SinkContext,
    options: FileOptions,
    tz: Option<Tz>,
    target: PathBuf,
    /// `None` once finished.
    out: Option<BufWriter<File>>,
    /// A CSV header line is still to be written (`'csv.ignore-first-line' = 'true'`).
    header_pending: bool,
    scratch: Vec<u8>,
}

impl FileSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        self.scratch.clear();
        let header = std::mem::take(&mut self.header_pending);
        encode_rows(&self.options, self.tz, header, batch, &mut self.scratch)?;
        let out = self.out.as_mut().ok_or_else(|| {
            EngineError::Internal("filesystem sink written after finish".to_string())
        })?;
        out.write_all(&self.scratch).map_err(|e| self.io_error(e))?;
        JobMetrics::add(&self.ctx.metrics.rows_out, batch.num_rows());
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush().map_err(|e| self.io_error(e))?;
        }
        Ok(())
    }

    fn io_error(&self, e: std::io::Error) -> EngineError {
        EngineError::connector(
            NAME,
            format!("cannot write '{}': {e}", self.target.display()),
        )
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        async move { self.write_batch(&batch) }.boxed()
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        async move { self.close() }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{sink_ctx, table, temp_path};
    use datafusion::arrow::array::{Float64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    use std::sync::Arc;

    fn columns() -> Vec<(&'static str, DataType)> {
        vec![
            ("id", DataType::Utf8),
            ("ts", DataType::Timestamp(TimeUnit::Millisecond, None)),
            ("v", DataType::Float64),
        ]
    }

    fn batch(schema: datafusion::arrow::datatypes::SchemaRef) -> RecordBatch {
        let cols: Vec<datafusion::arrow::array::ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("a,\"b\""), None])),
            Arc::new(TimestampMillisecondArray::from(vec![
                1_704_067_200_000,
                1_704_067_201_500,
            ])),
            Arc::new(Float64Array::from(vec![81.64399999999999, 0.5])),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    }

    async fn write(opts: &[(&str, &str)]) -> (SinkContext, Box<dyn Sink>) {
        let ctx = sink_ctx(table(opts, &columns()), &[]);
        let sink = FilesystemSinkFactory.create(ctx.clone()).unwrap();
        (ctx, sink)
    }

    #[tokio::test]
    async fn writes_json_lines_into_a_directory() {
        let dir = temp_path("out-dir");
        let path = format!("{}/", dir.display());
        let (ctx, mut sink) = write(&[
            ("connector", "filesystem"),
            ("path", &path),
            ("format", "json"),
        ])
        .await;
        sink.write(batch(ctx.schema.clone())).await.unwrap();
        sink.finish().await.unwrap();
        let text = std::fs::read_to_string(dir.join("part-0.jsonl")).unwrap();
        assert_eq!(
            text,
            "{\"id\":\"a,\\\"b\\\"\",\"ts\":\"2024-01-01 00:00:00.000\",\"v\":81.64399999999999}\n\
             {\"id\":null,\"ts\":\"2024-01-01 00:00:01.500\",\"v\":0.5}\n"
        );
        assert_eq!(JobMetrics::get(&ctx.metrics.rows_out), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn writes_csv_file_readable_by_the_source() {
        let path = temp_path("out.csv");
        let p = path.display().to_string();
        let opts = [
            ("connector", "filesystem"),
            ("path", p.as_str()),
            ("format", "csv"),
        ];
        let (ctx, mut sink) = write(&opts).await;
        sink.write(batch(ctx.schema.clone())).await.unwrap();
        sink.finish().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "\"a,\"\"b\"\"\",2024-01-01 00:00:00.000,81.64399999999999\n,2024-01-01 00:00:01.500,0.5\n"
        );
        // Read it back with the filesystem source.
        let batches = crate::filesystem::source::tests::read_all(&opts, &columns()).await;
        let back = &batches[0];
        assert_eq!(back.num_rows(), 2);
        assert_eq!(
            back.column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(0),
            "a,\"b\""
        );
        let ts = back
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(ts.value(1), 1_704_067_201_500);
        let v = back
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(v.value(0), 81.64399999999999);
        std::fs::remove_file(path).unwrap();
    }
}
