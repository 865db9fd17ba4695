//! Writing Parquet files (`'format' = 'parquet'`) through the `parquet` crate's Arrow writer:
//! batches go in as they are, column by column.
//!
//! `path` is a directory. With `PARTITIONED BY (dt, facility)` each row goes to the file of its
//! partition's directory (`dt=2024-01-01/facility=f-1/`, NULL as `__DEFAULT_PARTITION__`), and
//! the partition columns live in the path only, as in Flink. A part file is written hidden
//! (`.part-<run>-<n>.parquet.inprogress`) and rolls over to a new one past
//! `'sink.rolling-policy.file-size'` (128 MB) or `'sink.rolling-policy.rollover-interval'`
//! (30 min); `'parquet.compression'` is `snappy` (default), `zstd` or `none`.
//!
//! In a checkpointing job a closed file becomes visible (renamed `part-<checkpoint>-..`) only
//! when the checkpoint after it completes, as the JSON sink's files: exactly-once. Otherwise a
//! file is renamed as soon as it is closed (at a roll or at the end): a reader never sees a
//! file without its footer.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{lexsort_to_indices, partition, take_record_batch, SortColumn};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::future::BoxFuture;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use weir_engine::checkpoint::pending;
use weir_engine::connector::{Sink, SinkContext};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::committing::{publish_up_to, Pending};
use super::parquet_source::DEFAULT_PARTITION;
use super::{FileOptions, NAME};

const IN_PROGRESS: &str = ".inprogress";

/// When a part file is closed and a new one started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rolling {
    pub max_bytes: u64,
    pub interval: Duration,
}

/// The Parquet options of a table: compression and rolling.
pub(crate) fn writer_options(
    table: &TableDef,
) -> std::result::Result<(Compression, Rolling), String> {
    let compression = match table
        .option("parquet.compression")
        .map(str::to_ascii_lowercase)
    {
        None => Compression::SNAPPY,
        Some(c) => match c.as_str() {
            "snappy" => Compression::SNAPPY,
            "zstd" => Compression::ZSTD(ZstdLevel::default()),
            "none" | "uncompressed" => Compression::UNCOMPRESSED,
            other => {
                return Err(format!(
                    "option 'parquet.compression' must be 'snappy', 'zstd' or 'none', not '{other}'"
                ))
            }
        },
    };
    let max_bytes = match table.option("sink.rolling-policy.file-size") {
        None => 128 << 20,
        Some(v) => weir_engine::state::parse_bytes(v).ok_or_else(|| {
            format!(
                "option 'sink.rolling-policy.file-size' must be a size like '128 mb', not '{v}'"
            )
        })?,
    };
    let interval = match table.option("sink.rolling-policy.rollover-interval") {
        None => Duration::from_secs(30 * 60),
        Some(v) => weir_planner::interval::parse_duration(v)
            .ok()
            .filter(|ns| *ns > 0)
            .map(|ns| Duration::from_nanos(ns as u64))
            .ok_or_else(|| {
                format!("option 'sink.rolling-policy.rollover-interval' must be a duration like '10 min', not '{v}'")
            })?,
    };
    Ok((
        compression,
        Rolling {
            max_bytes,
            interval,
        },
    ))
}

/// The part file being written in one partition directory.
struct OpenPart {
    /// Relative path of the in-progress file.
    name: String,
    /// Its number in this run (part of its final name).
    seq: u64,
    writer: ArrowWriter<File>,
    opened: Instant,
}

/// A running Parquet sink.
pub(super) struct ParquetSink {
    ctx: SinkContext,
    dir: PathBuf,
    props: WriterProperties,
    rolling: Rolling,
    /// The partition columns' indexes in the rows the sink receives.
    partition: Vec<usize>,
    /// The columns written into the files (all but the partition columns).
    data: Vec<usize>,
    data_schema: SchemaRef,
    open: BTreeMap<String, OpenPart>,
    /// Closed since the last barrier (checkpointing): relative in-progress names and numbers.
    closed: Vec<(String, u64)>,
    pending: Vec<Pending>,
    run: String,
    seq: u64,
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::connector(NAME, format!("cannot {what} '{}': {e}", path.display()))
}

impl ParquetSink {
    pub(super) fn open(ctx: SinkContext, options: &FileOptions) -> Result<Self> {
        let err = |m: String| EngineError::connector(NAME, m);
        let (compression, rolling) = writer_options(&ctx.table).map_err(err)?;
        let dir = options.local_path();
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
        let schema = ctx.schema.clone();
        let partition: Vec<usize> = ctx
            .table
            .partition_by
            .iter()
            .map(|p| schema.index_of(p).map_err(|e| err(e.to_string())))
            .collect::<Result<_>>()?;
        let data: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !partition.contains(i))
            .collect();
        let data_schema = std::sync::Arc::new(schema.project(&data)?);
        let restored = ctx.restore.as_ref().map_or(0, |r| r.checkpoint);
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let mut me = Self {
            props: WriterProperties::builder()
                .set_compression(compression)
                .build(),
            rolling,
            partition,
            data,
            data_schema,
            open: BTreeMap::new(),
            closed: Vec::new(),
            pending: Vec::new(),
            run: format!("{restored}-{nanos:x}"),
            seq: 0,
            dir,
            ctx,
        };
        me.recover()?;
        Ok(me)
    }

    /// Publish what the restored checkpoint had pending, and drop every other in-progress file.
    fn recover(&mut self) -> Result<()> {
        if let Some(r) = self.ctx.restore.clone() {
            self.pending = pending::read(&r.pending, "Parquet sink")?;
            self.commit_up_to(r.checkpoint)?;
        }
        let mut dirs = vec![self.dir.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d)
                .map_err(|e| io_err("list", &d, e))?
                .flatten()
            {
                let name = e.file_name().to_string_lossy().to_string();
                if e.path().is_dir() {
                    dirs.push(e.path());
                } else if name.starts_with(".part-") && name.ends_with(IN_PROGRESS) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    /// The rows of `batch` per partition directory (`""` without partitions), the partition
    /// columns taken out.
    fn split(&self, batch: &RecordBatch) -> Result<Vec<(String, RecordBatch)>> {
        if self.partition.is_empty() {
            return Ok(vec![(String::new(), batch.project(&self.data)?)]);
        }
        let keys: Vec<SortColumn> = self
            .partition
            .iter()
            .map(|&i| SortColumn {
                values: batch.column(i).clone(),
                options: None,
            })
            .collect();
        let order = lexsort_to_indices(&keys, None)?;
        let sorted = take_record_batch(batch, &order)?;
        let cols: Vec<_> = self
            .partition
            .iter()
            .map(|&i| sorted.column(i).clone())
            .collect();
        let opts = FormatOptions::default().with_null(DEFAULT_PARTITION);
        let mut out = Vec::new();
        for range in partition(&cols)?.ranges() {
            let mut dir = String::new();
            for (&i, col) in self.partition.iter().zip(&cols) {
                let value = ArrayFormatter::try_new(col.as_ref(), &opts)?
                    .value(range.start)
                    .to_string();
                let name = self.ctx.schema.field(i).name();
                dir.push_str(&format!("{name}={}/", value.replace('/', "%2F")));
            }
            let rows = sorted.slice(range.start, range.end - range.start);
            out.push((dir, rows.project(&self.data)?));
        }
        Ok(out)
    }

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rolling = self.rolling;
        for (dir, rows) in self.split(batch)? {
            let part = self.part(&dir)?;
            part.writer
                .write(&rows)
                .map_err(|e| EngineError::connector(NAME, e.to_string()))?;
            let size = part.writer.bytes_written() + part.writer.in_progress_size();
            if size as u64 >= rolling.max_bytes || part.opened.elapsed() >= rolling.interval {
                let part = self.open.remove(&dir).expect("open");
                self.close(part)?;
            }
        }
        JobMetrics::add(&self.ctx.metrics.rows_out, batch.num_rows());
        Ok(())
    }

    /// The open part file of partition directory `dir`, started when there is none.
    fn part(&mut self, dir: &str) -> Result<&mut OpenPart> {
        if !self.open.contains_key(dir) {
            self.seq += 1;
            let name = format!("{dir}.part-{}-{}.parquet{IN_PROGRESS}", self.run, self.seq);
            let path = self.dir.join(&name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_err("create", parent, e))?;
            }
            let file = File::create(&path).map_err(|e| io_err("create", &path, e))?;
            let writer =
                ArrowWriter::try_new(file, self.data_schema.clone(), Some(self.props.clone()))
                    .map_err(|e| io_err("write", &path, e))?;
            let part = OpenPart {
                name,
                seq: self.seq,
                writer,
                opened: Instant::now(),
            };
            self.open.insert(dir.to_string(), part);
        }
        Ok(self.open.get_mut(dir).expect("open"))
    }

    /// Finish a part file (its footer) and sync it; without checkpoints it is published now.
    fn close(&mut self, part: OpenPart) -> Result<()> {
        let path = self.dir.join(&part.name);
        let file = part
            .writer
            .into_inner()
            .map_err(|e| io_err("write", &path, e))?;
        file.sync_all().map_err(|e| io_err("sync", &path, e))?;
        if self.ctx.checkpointing {
            self.closed.push((part.name, part.seq));
            return Ok(());
        }
        let done = path.with_file_name(format!("part-{}-{}.parquet", self.run, part.seq));
        std::fs::rename(&path, &done).map_err(|e| io_err("publish", &path, e))
    }

    fn close_all(&mut self) -> Result<()> {
        for (_, part) in std::mem::take(&mut self.open) {
            self.close(part)?;
        }
        Ok(())
    }

    /// Close every open file; the closed files become pending for `checkpoint`.
    fn pre_commit_now(&mut self, checkpoint: u64) -> Result<String> {
        self.close_all()?;
        for (name, seq) in std::mem::take(&mut self.closed) {
            let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
            let file = format!("part-{checkpoint:08}-{}-{seq}.parquet", self.run);
            let done = match dir {
                "" => file,
                d => format!("{d}/{file}"),
            };
            self.pending.push(Pending {
                checkpoint,
                in_progress: name,
                done,
            });
        }
        pending::write(&self.pending)
    }

    /// Publish the files of every checkpoint up to `checkpoint`.
    fn commit_up_to(&mut self, checkpoint: u64) -> Result<()> {
        publish_up_to(&self.dir, &mut self.pending, checkpoint)
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.write_batch(&batch) })
    }

    /// Without checkpoints every file is closed and published. With them, rows after the last
    /// barrier were never checkpointed: their files are dropped (the JSON sink's rule).
    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if !self.ctx.checkpointing {
                return self.close_all();
            }
            let open = std::mem::take(&mut self.open).into_values().map(|p| p.name);
            let closed = std::mem::take(&mut self.closed).into_iter().map(|c| c.0);
            for name in open.chain(closed) {
                let _ = std::fs::remove_file(self.dir.join(name));
            }
            Ok(())
        })
    }

    fn pre_commit(&mut self, checkpoint: u64) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move { self.pre_commit_now(checkpoint) })
    }

    fn commit(&mut self, checkpoint: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.commit_up_to(checkpoint) })
    }
}
