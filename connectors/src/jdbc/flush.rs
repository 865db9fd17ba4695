//! The at-least-once `jdbc` sink: a task that buffers rows and flushes them every
//! `'sink.buffer-flush.max-rows'` rows or `'sink.buffer-flush.interval'`, whichever comes
//! first (as Flink's JDBC sink), so a quiet stream's last rows still reach the table.
//!
//! The sink hands batches to the task over a bounded channel: a slow database slows the job
//! down instead of growing a buffer. A checkpoint barrier flushes (a checkpoint then means the
//! rows are in the table); the end of the input flushes and waits.

use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weir_engine::connector::{Sink, SinkContext};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};

use super::sink::{SinkOptions, Writer};
use super::NAME;

enum Command {
    Rows(RecordBatch),
    Flush(oneshot::Sender<Result<()>>),
}

/// When the buffer is written.
#[derive(Debug, Clone, Copy)]
struct Policy {
    max_rows: usize,
    interval: Duration,
}

impl Policy {
    /// Whether a buffer of `rows` rows is written now.
    fn full(self, rows: usize) -> bool {
        let unbuffered = self.max_rows == 0 && self.interval.is_zero();
        unbuffered || (self.max_rows > 0 && rows >= self.max_rows)
    }
}

pub(crate) struct FlushingSink {
    tx: Option<mpsc::Sender<Command>>,
    task: Option<JoinHandle<Result<()>>>,
}

impl FlushingSink {
    pub(crate) fn start(ctx: SinkContext, writer: Writer, options: &SinkOptions) -> Self {
        let (tx, rx) = mpsc::channel(4);
        let policy = Policy {
            max_rows: options.max_rows,
            interval: options.interval,
        };
        let task = tokio::spawn(run(rx, writer, policy, ctx));
        Self {
            tx: Some(tx),
            task: Some(task),
        }
    }

    /// The task's error once it stopped.
    async fn failure(&mut self) -> EngineError {
        match self.task.take() {
            Some(t) => match t.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => EngineError::connector(NAME, "the sink stopped"),
                Err(e) => EngineError::connector(NAME, format!("the sink task failed: {e}")),
            },
            None => EngineError::connector(NAME, "the sink stopped"),
        }
    }

    async fn send(&mut self, c: Command) -> Result<()> {
        let Some(tx) = &self.tx else {
            return Err(EngineError::connector(NAME, "the sink is finished"));
        };
        if tx.send(c).await.is_err() {
            self.tx = None;
            return Err(self.failure().await);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.send(Command::Flush(reply)).await?;
        match done.await {
            Ok(r) => r,
            Err(_) => Err(self.failure().await),
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Command>,
    mut writer: Writer,
    policy: Policy,
    ctx: SinkContext,
) -> Result<()> {
    let mut buffer: Vec<RecordBatch> = Vec::new();
    let mut rows = 0;
    let mut deadline: Option<Instant> = None;
    loop {
        let command = tokio::select! {
            c = rx.recv() => c,
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                write(&mut writer, &mut buffer, &mut rows, &ctx).await?;
                deadline = None;
                continue;
            }
        };
        match command {
            None => return write(&mut writer, &mut buffer, &mut rows, &ctx).await,
            Some(Command::Rows(b)) => {
                rows += b.num_rows();
                buffer.push(b);
                if policy.full(rows) {
                    write(&mut writer, &mut buffer, &mut rows, &ctx).await?;
                    deadline = None;
                } else if deadline.is_none() && !policy.interval.is_zero() {
                    deadline = Some(Instant::now() + policy.interval);
                }
            }
            Some(Command::Flush(reply)) => {
                let r = write(&mut writer, &mut buffer, &mut rows, &ctx).await;
                deadline = None;
                let failed = r.as_ref().err().map(|e| e.to_string());
                let _ = reply.send(r);
                if let Some(e) = failed {
                    return Err(EngineError::connector(NAME, e));
                }
            }
        }
    }
}

async fn write(
    writer: &mut Writer,
    buffer: &mut Vec<RecordBatch>,
    rows: &mut usize,
    ctx: &SinkContext,
) -> Result<()> {
    if buffer.is_empty() {
        return Ok(());
    }
    writer.write(buffer, None).await?;
    JobMetrics::add(&ctx.metrics.rows_out, *rows);
    buffer.clear();
    *rows = 0;
    Ok(())
}

impl Sink for FlushingSink {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if batch.num_rows() == 0 {
                return Ok(());
            }
            self.send(Command::Rows(batch)).await
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.tx = None;
            match self.task.take() {
                Some(t) => t.await.map_err(|e| {
                    EngineError::connector(NAME, format!("the sink task failed: {e}"))
                })?,
                None => Ok(()),
            }
        })
    }

    /// A checkpoint covers rows that are in the table.
    fn pre_commit(&mut self, _checkpoint: u64) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move { self.flush().await.map(|()| String::new()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_written_by_rows_or_else_by_time() {
        let p = Policy {
            max_rows: 100,
            interval: Duration::from_secs(1),
        };
        assert!(!p.full(99) && p.full(100) && p.full(4096));
        let by_time = Policy {
            max_rows: 0,
            interval: Duration::from_secs(1),
        };
        assert!(!by_time.full(1_000_000));
        let unbuffered = Policy {
            max_rows: 0,
            interval: Duration::ZERO,
        };
        assert!(unbuffered.full(1));
    }
}
