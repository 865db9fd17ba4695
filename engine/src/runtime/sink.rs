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
use crate::error::Result;
use crate::message::Message;
use crate::metrics::JobMetrics;

/// A sink's part in checkpoints.
pub struct SinkCheckpoint {
    /// The task name (`sink-N`).
    pub name: String,
    /// The job's checkpoint handles.
    pub ck: Arc<Checkpointing>,
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
}

/// Write a stream into a connector sink until it ends.
pub async fn run_sink(
    input_sink: SinkInput,
    mut input: mpsc::Receiver<Message>,
    metrics: Arc<JobMetrics>,
    ck: Option<SinkCheckpoint>,
) -> Result<()> {
    let SinkInput { mut sink, updating } = input_sink;
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
                commit(sink.as_mut(), &mut commits, id, &metrics).await?;
                continue;
            }
            m = input.recv() => m,
        };
        let Some(m) = m else { return Ok(()) };
        match m {
            // Sinks count their own rows out.
            Message::Batch(b) if updating => {
                let schema = crate::changelog::with_op_schema(&b.batch.schema());
                sink.write(crate::changelog::to_output(b, &schema)?).await?
            }
            Message::Batch(b) => sink.write(b.batch).await?,
            Message::Watermark(w) => metrics.watermark.store(w, Ordering::Relaxed),
            Message::Barrier(b) => {
                last_barrier = b.checkpoint_id;
                if let Some(c) = &ck {
                    pre_commit(sink.as_mut(), c, b.checkpoint_id).await?;
                }
            }
            Message::EndOfStream => {
                if let Some(c) = commits.as_mut() {
                    if !wait_for(c, last_barrier).await {
                        return Ok(()); // the job stopped before its final checkpoint
                    }
                    let id = *c.rx.borrow();
                    commit(sink.as_mut(), &mut commits, id, &metrics).await?;
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

/// Wait until checkpoint `id` is complete; false if the coordinator went away first.
async fn wait_for(c: &mut Commits, id: u64) -> bool {
    loop {
        if *c.rx.borrow_and_update() >= id {
            return true;
        }
        if c.rx.changed().await.is_err() {
            return *c.rx.borrow() >= id;
        }
    }
}
