//! The sink task: writes a stream into a connector sink and, in a checkpointing job, runs the
//! sink's side of two-phase commit.
//!
//! A barrier makes the sink pre-commit and acknowledge; the coordinator's "checkpoint N is
//! complete" (a watch of the latest complete id) makes it commit. At the end of the input the
//! sink first waits for the final checkpoint to complete, so a finished job has published
//! exactly what its last checkpoint covers.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::checkpoint::{Checkpointing, Event};
use crate::connector::Sink;
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::observe::latency::LatencyRecorder;
use crate::observe::metrics::JobMetrics;

/// A sink's part in checkpoints.
pub struct SinkCheckpoint {
    /// The task name (`sink-N`).
    pub name: String,
    /// The job's checkpoint handles.
    pub ck: Arc<Checkpointing>,
    /// Turns true when the job is cancelled (then no checkpoint will complete any more).
    pub cancel: watch::Receiver<bool>,
}

struct Commits {
    rx: watch::Receiver<u64>,
    /// The latest checkpoint this sink committed (or restored from).
    done: u64,
}

/// A sink and whether its input is a changelog (then rows reach it with an `op` column first).
pub struct SinkInput {
    /// The connector's sink.
    pub sink: Box<dyn Sink>,
    /// The input is a changelog (rows reach the sink with an `op` column first).
    pub updating: bool,
    /// The sink table's name (the `sink` label of its metrics).
    pub name: String,
    /// The input column holding each row's event time, if the rows have one.
    pub event_col: Option<(usize, i64)>,
}

/// Write a stream into a connector sink until it ends; a failure counts as a sink error. When
/// the job is cancelled or fails (`cancel` turns true) a sink blocked in a write (a broker that
/// stopped answering) is abandoned, so the job still ends; nothing it had not committed counts.
pub async fn run_sink(
    input_sink: SinkInput,
    mut input: mpsc::Receiver<Message>,
    metrics: Arc<JobMetrics>,
    ck: Option<SinkCheckpoint>,
    mut cancel: watch::Receiver<bool>,
) -> Result<()> {
    let result = tokio::select! {
        r = write_all(input_sink, &mut input, &metrics, ck) => r,
        Ok(_) = cancel.wait_for(|c| *c) => Err(EngineError::Cancelled),
    };
    if result.is_err() {
        JobMetrics::add(&metrics.sink_errors, 1);
    }
    result
}

async fn write_all(
    input_sink: SinkInput,
    input: &mut mpsc::Receiver<Message>,
    metrics: &Arc<JobMetrics>,
    ck: Option<SinkCheckpoint>,
) -> Result<()> {
    let SinkInput {
        mut sink,
        updating,
        name,
        event_col,
    } = input_sink;
    let mut latency = LatencyRecorder::new(metrics.clone(), &name, event_col);
    let mut commits = ck.as_ref().map(|c| {
        let rx = c.ck.committed();
        let done = *rx.borrow();
        Commits { rx, done }
    });
    let mut last_barrier = 0;
    loop {
        let m = tokio::select! {
            biased;
            id = next_commit(&mut commits) => {
                commit(sink.as_mut(), &mut commits, id, metrics).await?;
                latency.committed(id);
                continue;
            }
            m = input.recv() => m,
        };
        let Some(m) = m else { return Ok(()) };
        match m {
            // Sinks count their own rows out.
            Message::Batch(b) => {
                latency.written(&b);
                let batch = if updating {
                    let schema = crate::changelog::with_op_schema(&b.batch.schema());
                    crate::changelog::to_output(b, &schema)?
                } else {
                    b.batch
                };
                sink.write(batch).await?;
                if ck.is_none() {
                    latency.visible();
                }
            }
            Message::Watermark(w) => metrics.watermark.store(w, Ordering::Relaxed),
            Message::Idle => {}
            Message::Barrier(b) => {
                last_barrier = b.checkpoint_id;
                if let Some(c) = &ck {
                    pre_commit(sink.as_mut(), c, b.checkpoint_id).await?;
                    latency.pre_committed(b.checkpoint_id);
                }
            }
            Message::EndOfStream => {
                if let (Some(c), Some(k)) = (commits.as_mut(), ck.as_ref()) {
                    if !wait_for(c, last_barrier, k.cancel.clone()).await {
                        return Ok(()); // the job stopped before its final checkpoint
                    }
                    let id = *c.rx.borrow();
                    commit(sink.as_mut(), &mut commits, id, metrics).await?;
                    latency.committed(id);
                }
                return sink.finish().await;
            }
        }
    }
}

async fn pre_commit(sink: &mut dyn Sink, c: &SinkCheckpoint, id: u64) -> Result<()> {
    match sink.pre_commit(id).await {
        Ok(snapshot) => {
            c.ck.send(Event::Ack {
                id,
                task: c.name.clone(),
                snapshot,
            });
            Ok(())
        }
        Err(e) => {
            c.ck.send(Event::Failed {
                id,
                task: c.name.clone(),
                error: e.to_string(),
            });
            Err(e)
        }
    }
}

async fn commit(
    sink: &mut dyn Sink,
    commits: &mut Option<Commits>,
    id: u64,
    metrics: &JobMetrics,
) -> Result<()> {
    if let Some(c) = commits.as_mut() {
        if id > c.done {
            let started = std::time::Instant::now();
            sink.commit(id).await?;
            let ns = started.elapsed().as_nanos() as u64;
            metrics.last_commit_ns.store(ns, Ordering::Relaxed);
            c.done = id;
        }
    }
    Ok(())
}

/// The next newly completed checkpoint; never resolves without checkpointing.
async fn next_commit(commits: &mut Option<Commits>) -> u64 {
    match commits {
        Some(c) => {
            if c.rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            *c.rx.borrow_and_update()
        }
        None => std::future::pending().await,
    }
}

/// Wait until checkpoint `id` is complete; false if the coordinator went away or the job was
/// cancelled first (a cancelled job's coordinator stops, so the checkpoint never completes).
async fn wait_for(c: &mut Commits, id: u64, mut cancel: watch::Receiver<bool>) -> bool {
    tokio::select! {
        biased; // a complete checkpoint wins over a cancel that came after it
        done = c.rx.wait_for(|done| *done >= id) => done.is_ok(),
        // Disabled, not taken, if nobody can cancel any more.
        Ok(_) = cancel.wait_for(|cancelled| *cancelled) => false,
    }
}
