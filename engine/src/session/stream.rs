//! Handles the embedding program holds: a running query's rows and a submitted job.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::Stream;
use tokio::sync::mpsc;

use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::observe::metrics::JobMetrics;
use crate::runtime::job::{JobShared, JobStatus};

/// A submitted job (INSERT INTO or a statement set, or the job behind a query).
#[derive(Clone)]
pub struct JobHandle(pub(crate) Arc<JobShared>);

impl JobHandle {
    /// The job id.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The job's current status.
    pub fn status(&self) -> JobStatus {
        self.0.status()
    }

    /// The job's counters.
    pub fn metrics(&self) -> &JobMetrics {
        &self.0.metrics
    }

    /// Rows dropped because they arrived after their windows fired.
    pub fn late_rows(&self) -> u64 {
        JobMetrics::get(&self.0.metrics.late_rows)
    }

    /// Records skipped because they could not be decoded or placed in time.
    pub fn bad_records(&self) -> u64 {
        self.0.bad_records()
    }

    /// The records kept from every source's dead letters (at most 1,000 per source).
    pub fn dead_letters(&self) -> Vec<crate::observe::dead_letter::BadRecord> {
        self.0
            .dead_letters
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|d| d.records())
            .collect()
    }

    /// Time since the job was created.
    pub fn uptime(&self) -> std::time::Duration {
        self.0.started.elapsed()
    }

    /// Stop with a savepoint: every source ends after a last checkpoint (without firing open
    /// windows), so running the job again with the same checkpoint directory continues exactly
    /// where it stopped. Without checkpoints this is [`JobHandle::cancel`].
    pub fn stop_with_savepoint(&self) {
        match self.0.checkpointing() {
            Some(ck) => ck.send(crate::checkpoint::Event::Stop),
            None => self.cancel(),
        }
    }

    /// The id of the latest complete checkpoint, if the job checkpoints and has completed one.
    pub fn last_checkpoint(&self) -> Option<u64> {
        let id = *self.0.checkpointing()?.committed().borrow();
        (id > 0).then_some(id)
    }

    /// Checkpoints that failed or timed out (0 without checkpoints).
    pub fn checkpoint_failures(&self) -> u64 {
        self.0.checkpointing().map_or(0, |c| c.failures())
    }

    /// The job's recent complete checkpoints (empty without checkpoints).
    pub fn checkpoints(&self) -> Vec<crate::checkpoint::CheckpointStats> {
        self.0
            .checkpointing()
            .map(|c| c.stats())
            .unwrap_or_default()
    }

    /// Threshold warnings raised so far (`SET 'monitoring.lag-warn'`, `'monitoring.latency-warn'`).
    pub fn warnings(&self) -> Vec<String> {
        self.0.warnings.lock().expect("lock").clone()
    }

    /// Each source table's dead letters.
    pub fn dead_letter_sources(&self) -> Vec<(String, crate::observe::dead_letter::DeadLetters)> {
        let names = self.0.source_names.lock().expect("lock").clone();
        let dls = self.0.dead_letters.lock().expect("lock").clone();
        names.into_iter().zip(dls).collect()
    }

    /// What each task of the job did so far (rows, busy and backpressured time).
    pub fn operator_metrics(
        &self,
    ) -> Vec<std::sync::Arc<crate::observe::op_metrics::OperatorMetrics>> {
        self.0.operators()
    }

    /// Whether the job takes checkpoints.
    pub fn has_checkpointing(&self) -> bool {
        self.0.checkpointing().is_some()
    }

    /// Whether every task of the job has finished.
    pub fn is_done(&self) -> bool {
        self.0.is_done()
    }

    /// Stop the job: sources stop reading and the tasks wind down.
    pub fn cancel(&self) {
        self.0.cancel();
    }

    /// Wait for the job to end; its failure as an error.
    pub async fn wait(&self) -> Result<()> {
        self.0.wait().await;
        match self.0.status() {
            JobStatus::Failed(e) => Err(EngineError::Execution(e)),
            _ => Ok(()),
        }
    }
}

/// The rows of a running query, as Arrow batches, in the order windows close.
pub struct QueryStream {
    rx: mpsc::Receiver<Message>,
    job: JobHandle,
    schema: SchemaRef,
    ended: bool,
    /// Set when the channel closed without an end of stream: wait for the job to record why.
    closing: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    /// The query's result is a changelog: batches carry an `op` column first.
    updating: bool,
    /// End-to-end latency of the delivered rows (sink `query`).
    latency: Option<crate::observe::latency::LatencyRecorder>,
}

impl QueryStream {
    pub(crate) fn new(rx: mpsc::Receiver<Message>, job: JobHandle, schema: SchemaRef) -> Self {
        Self {
            rx,
            job,
            schema,
            ended: false,
            closing: None,
            updating: false,
            latency: None,
        }
    }

    /// Measure the end-to-end latency of delivered rows (their event time in `event_col`).
    pub(crate) fn track_latency(mut self, event_col: Option<(usize, i64)>) -> Self {
        let metrics = self.job.0.metrics.clone();
        self.latency = Some(crate::observe::latency::LatencyRecorder::new(
            metrics, "query", event_col,
        ));
        self
    }

    /// A stream of an updating query: `schema` is the query's, and batches get an `op` column.
    pub(crate) fn updating(rx: mpsc::Receiver<Message>, job: JobHandle, schema: SchemaRef) -> Self {
        let mut s = Self::new(rx, job, crate::changelog::with_op_schema(&schema));
        s.updating = true;
        s
    }

    /// True when batches are a changelog whose first column, `op`, holds `+I`, `-U`, `+U` or
    /// `-D` (see [`crate::changelog`]).
    pub fn is_updating(&self) -> bool {
        self.updating
    }

    /// The schema of the result batches (with the `op` column first when updating).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The job that produces the rows.
    pub fn job(&self) -> &JobHandle {
        &self.job
    }

    /// The next batch of results; `None` when the query has ended.
    pub async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        futures::StreamExt::next(self).await
    }

    /// Collect every remaining batch (for bounded inputs).
    pub async fn collect(mut self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        while let Some(b) = self.next_batch().await {
            out.push(b?);
        }
        Ok(out)
    }

    fn finish(&mut self) -> Poll<Option<Result<RecordBatch>>> {
        self.ended = true;
        match self.job.0.error() {
            Some(e) => Poll::Ready(Some(Err(EngineError::Execution(e)))),
            None => Poll::Ready(None),
        }
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(f) = self.closing.as_mut() {
            return match f.as_mut().poll(cx) {
                Poll::Ready(()) => self.finish(),
                Poll::Pending => Poll::Pending,
            };
        }
        loop {
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Message::EndOfStream)) => return self.finish(),
                Poll::Ready(None) => {
                    let job = self.job.0.clone();
                    self.closing = Some(Box::pin(async move { job.wait().await }));
                    return self.poll_next(cx);
                }
                Poll::Ready(Some(Message::Batch(b))) => {
                    JobMetrics::add(&self.job.0.metrics.rows_out, b.num_rows());
                    if let Some(l) = self.latency.as_mut() {
                        l.written(&b);
                        l.visible();
                    }
                    if self.updating {
                        return Poll::Ready(Some(crate::changelog::to_output(b, &self.schema)));
                    }
                    return Poll::Ready(Some(Ok(b.batch)));
                }
                Poll::Ready(Some(Message::Watermark(w))) => {
                    self.job.0.metrics.watermark.store(w, Ordering::Relaxed);
                }
                Poll::Ready(Some(Message::Barrier(_) | Message::Idle)) => {}
            }
        }
    }
}

impl Drop for QueryStream {
    fn drop(&mut self) {
        if !self.ended {
            self.job.cancel();
        }
    }
}
