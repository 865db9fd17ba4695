//! The exactly-once `jdbc` sink of a checkpointing job.
//!
//! Rows are kept in an Arrow IPC file in the sink's checkpoint directory until their
//! checkpoint's barrier; the barrier closes and syncs the file, which becomes pending. When the
//! checkpoint completes, its rows are written in one transaction together with the
//! checkpoint's id in `weir_commits (job, sink, checkpoint)`. That row makes the write
//! idempotent: a restarted sink publishes what the restored checkpoint had pending, and the
//! transaction of a checkpoint the table already has (the crash came after the commit, before
//! the file was removed; or a commit whose answer was lost with the connection) is skipped.
//! Rows written after the last barrier were never checkpointed; their file is dropped and they
//! come again from the replayed input.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;
use weir_engine::checkpoint::pending;
use weir_engine::connector::{Sink, SinkContext};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};

use super::sink::Writer;
use super::statements::pg_error;
use super::NAME;

const COMMITS_DDL: &str = "CREATE TABLE IF NOT EXISTS weir_commits (\
    job text NOT NULL, sink text NOT NULL, checkpoint bigint NOT NULL, \
    committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job, sink))";

/// A checkpoint's mark in `weir_commits`.
#[derive(Debug, Clone)]
pub(crate) struct CommitMark {
    /// The job: its checkpoint directory, the same across restarts.
    pub job: String,
    /// The sink table.
    pub sink: String,
    pub checkpoint: u64,
}

impl CommitMark {
    /// Whether the table holds this checkpoint's rows already (locks the mark's row for the
    /// rest of the transaction).
    pub(crate) async fn is_done(&self, client: &Client) -> Result<bool> {
        let row = client
            .query_opt(
                "SELECT checkpoint FROM weir_commits WHERE job = $1 AND sink = $2 FOR UPDATE",
                &[&self.job, &self.sink],
            )
            .await
            .map_err(|e| pg_error("cannot read weir_commits", e))?;
        let done: Option<i64> = row.map(|r| r.get(0));
        Ok(done.is_some_and(|d| d >= self.checkpoint as i64))
    }

    /// Record the checkpoint as written.
    pub(crate) async fn record(&self, client: &Client) -> Result<()> {
        client
            .execute(
                "INSERT INTO weir_commits (job, sink, checkpoint) VALUES ($1, $2, $3) \
                 ON CONFLICT (job, sink) DO UPDATE SET checkpoint = EXCLUDED.checkpoint, committed_at = now()",
                &[&self.job, &self.sink, &(self.checkpoint as i64)],
            )
            .await
            .map_err(|e| pg_error("cannot record the commit in weir_commits", e))?;
        Ok(())
    }
}

/// A file of rows closed at a barrier, waiting for its checkpoint to complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PendingRows {
    checkpoint: u64,
    /// The file's name in the sink's directory.
    file: String,
}

pub(crate) struct CommittingSink {
    ctx: SinkContext,
    writer: Writer,
    dir: PathBuf,
    job: String,
    /// Distinguishes this run's files from an earlier run's.
    run: String,
    seq: u64,
    current: Option<(String, StreamWriter<BufWriter<File>>)>,
    pending: Vec<PendingRows>,
    recovered: bool,
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::connector(NAME, format!("cannot {what} '{}': {e}", path.display()))
}

impl CommittingSink {
    pub(crate) fn new(ctx: SinkContext, writer: Writer) -> Result<Self> {
        let dir = ctx.state_dir.clone().ok_or_else(|| {
            EngineError::connector(
                NAME,
                "an exactly-once sink needs the job's checkpoint directory",
            )
        })?;
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        Ok(Self {
            job: dir.display().to_string(),
            run: format!("{nanos:x}"),
            ctx,
            writer,
            dir,
            seq: 0,
            current: None,
            pending: Vec::new(),
            recovered: false,
        })
    }

    fn mark(&self, checkpoint: u64) -> CommitMark {
        CommitMark {
            job: self.job.clone(),
            sink: self.ctx.table.name.clone(),
            checkpoint,
        }
    }

    /// Once, before anything else: make sure `weir_commits` exists, publish what the restored
    /// checkpoint had pending, and forget marks of a run this one does not continue.
    async fn recover(&mut self) -> Result<()> {
        if self.recovered {
            return Ok(());
        }
        let client = self.writer.client().await?;
        create_commits_table(&client).await?;
        let restored = self.ctx.restore.clone();
        if let Some(r) = &restored {
            self.pending = pending::read(&r.pending, "jdbc sink")?;
            self.publish_up_to(r.checkpoint).await?;
        }
        // Marks past the checkpoint this run starts from belong to a run it replaces.
        let from = restored.map_or(0, |r| r.checkpoint) as i64;
        let client = self.writer.client().await?;
        client
            .execute(
                "DELETE FROM weir_commits WHERE job = $1 AND sink = $2 AND checkpoint > $3",
                &[&self.job, &self.ctx.table.name, &from],
            )
            .await
            .map_err(|e| pg_error("cannot reset weir_commits", e))?;
        self.remove_stray_files()?;
        self.recovered = true;
        Ok(())
    }

    fn remove_stray_files(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_err("list", &self.dir, e))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let kept = self.pending.iter().any(|p| p.file == name);
            if name.starts_with("rows-") && !kept {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    fn append(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.current.is_none() {
            self.seq += 1;
            let name = format!("rows-{}-{}.arrows", self.run, self.seq);
            let path = self.dir.join(&name);
            let f = File::create(&path).map_err(|e| io_err("create", &path, e))?;
            let w = StreamWriter::try_new(BufWriter::with_capacity(1 << 20, f), &batch.schema())
                .map_err(|e| io_err("write", &path, e))?;
            self.current = Some((name, w));
        }
        let (name, w) = self.current.as_mut().expect("open");
        w.write(batch)
            .map_err(|e| io_err("write", &self.dir.join(name.as_str()), e))?;
        JobMetrics::add(&self.ctx.metrics.rows_out, batch.num_rows());
        Ok(())
    }

    fn close_current(&mut self, checkpoint: u64) -> Result<()> {
        let Some((name, mut w)) = self.current.take() else {
            return Ok(());
        };
        let path = self.dir.join(&name);
        w.finish().map_err(|e| io_err("write", &path, e))?;
        let f = w
            .into_inner()
            .map_err(|e| io_err("write", &path, e))?
            .into_inner()
            .map_err(|e| io_err("write", &path, e.into_error()))?;
        f.sync_all().map_err(|e| io_err("sync", &path, e))?;
        self.pending.push(PendingRows {
            checkpoint,
            file: name,
        });
        Ok(())
    }

    /// Write the pending files of every checkpoint up to `checkpoint`, each in its own
    /// transaction, oldest first; a file goes once its transaction committed.
    async fn publish_up_to(&mut self, checkpoint: u64) -> Result<()> {
        while let Some(p) = self.pending.first().cloned() {
            if p.checkpoint > checkpoint {
                break;
            }
            let path = self.dir.join(&p.file);
            if path.exists() {
                let batches = read_rows(&path)?;
                self.writer
                    .write(&batches, Some(&self.mark(p.checkpoint)))
                    .await?;
                std::fs::remove_file(&path).map_err(|e| io_err("remove", &path, e))?;
            }
            self.pending.remove(0);
        }
        Ok(())
    }
}

fn read_rows(path: &Path) -> Result<Vec<RecordBatch>> {
    let f = File::open(path).map_err(|e| io_err("open", path, e))?;
    let reader =
        StreamReader::try_new(BufReader::new(f), None).map_err(|e| io_err("read", path, e))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| io_err("read", path, e))
}

/// `CREATE TABLE IF NOT EXISTS weir_commits`; two sinks creating it at once is not an error.
async fn create_commits_table(client: &Client) -> Result<()> {
    match client.batch_execute(COMMITS_DDL).await {
        Ok(()) => Ok(()),
        Err(e)
            if e.code()
                .is_some_and(|c| c.code() == "23505" || c.code() == "42P07") =>
        {
            Ok(())
        }
        Err(e) => Err(pg_error("cannot create weir_commits", e)),
    }
}

impl Sink for CommittingSink {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.recover().await?;
            if batch.num_rows() > 0 {
                self.append(&batch)?;
            }
            Ok(())
        })
    }

    /// Rows after the last barrier were never checkpointed: their file goes.
    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if let Some((name, _)) = self.current.take() {
                let _ = std::fs::remove_file(self.dir.join(name));
            }
            Ok(())
        })
    }

    fn pre_commit(&mut self, checkpoint: u64) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move {
            self.recover().await?;
            self.close_current(checkpoint)?;
            pending::write(&self.pending)
        })
    }

    fn commit(&mut self, checkpoint: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.recover().await?;
            self.publish_up_to(checkpoint).await
        })
    }
}
