//! The coordinator task of a checkpointing job: triggers barriers on the interval, collects the
//! acknowledgements, makes complete checkpoints durable and tells the sinks to commit.
//!
//! When every source has ended it takes one final checkpoint, after which the job is finished
//! (a restart then has nothing left to do); on a stop request it takes a savepoint that the
//! sources end on without firing their windows.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::tracker::{AckOutcome, Tracker};
use super::{CheckpointMeta, CheckpointStats, Checkpointing, Event, Trigger, TriggerKind};
use crate::error::{EngineError, Result};

/// A checkpoint that takes longer than this is abandoned (the next one starts fresh).
const TIMEOUT: Duration = Duration::from_secs(600);

struct Coordinator {
    ck: Arc<Checkpointing>,
    fingerprint: String,
    tracker: Tracker,
    sources: usize,
    ended: BTreeSet<String>,
    /// The kind of the checkpoint in flight.
    kind: TriggerKind,
    /// A final checkpoint or savepoint waits for the one in flight.
    wanted: Option<TriggerKind>,
    /// When the checkpoint in flight was triggered.
    started: Instant,
    quiet: bool,
}

/// Run the coordinator until the final checkpoint (or savepoint) completes or the job stops.
pub async fn run_coordinator(
    ck: Arc<Checkpointing>,
    fingerprint: String,
    sources: usize,
    quiet: bool,
    mut cancel: watch::Receiver<bool>,
) -> Result<()> {
    let mut events = ck
        .take_events()
        .ok_or_else(|| EngineError::Internal("checkpoint coordinator started twice".into()))?;
    let first = ck.store.highest_id()? + 1;
    let tracker = Tracker::new(ck.participants(), first, TIMEOUT);
    let mut ticker = tokio::time::interval(ck.config.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate
    let mut c = Coordinator {
        ck,
        fingerprint,
        tracker,
        sources,
        ended: BTreeSet::new(),
        kind: TriggerKind::Periodic,
        wanted: None,
        started: Instant::now(),
        quiet,
    };
    loop {
        tokio::select! {
            _ = cancel.changed() => return Ok(()),
            _ = ticker.tick() => c.on_tick(),
            e = events.recv() => match e {
                None => return Ok(()),
                Some(e) => if c.on_event(e).await? { return Ok(()) },
            },
        }
    }
}

impl Coordinator {
    fn on_tick(&mut self) {
        if let Some(id) = self.tracker.expired(Instant::now()) {
            self.tracker.fail(id);
            self.ck.count_failure();
            tracing::warn!(
                checkpoint = id,
                "checkpoint {id} timed out and was abandoned"
            );
        }
        if self.wanted.is_none() {
            self.start(TriggerKind::Periodic);
        }
    }

    fn start(&mut self, kind: TriggerKind) {
        let finished = kind == TriggerKind::Final;
        if let Some(id) = self.tracker.trigger(Instant::now(), finished) {
            self.kind = kind;
            self.started = Instant::now();
            self.ck.trigger(Trigger { id, kind });
        }
    }

    /// Handle one event; true when the job's last checkpoint is complete.
    async fn on_event(&mut self, e: Event) -> Result<bool> {
        match e {
            Event::Ack { id, task, snapshot } => {
                if let AckOutcome::Complete(c) = self.tracker.ack(id, &task, snapshot) {
                    let meta = CheckpointMeta {
                        id: c.id,
                        fingerprint: self.fingerprint.clone(),
                        finished: c.finished,
                        snapshots: c.snapshots,
                    };
                    // The metadata's fsyncs run off the runtime's threads.
                    let store = self.ck.store.clone();
                    let bytes = tokio::task::spawn_blocking(move || {
                        store.complete(&meta)?;
                        Ok::<_, EngineError>(dir_bytes(&store.checkpoint_dir(meta.id)))
                    })
                    .await
                    .map_err(|e| EngineError::Internal(format!("checkpoint task: {e}")))??;
                    self.ck.record(CheckpointStats {
                        id: c.id,
                        duration: self.started.elapsed(),
                        bytes,
                        completed: std::time::SystemTime::now(),
                    });
                    self.ck.mark_committed(c.id);
                    if !self.quiet && self.kind == TriggerKind::Stop {
                        tracing::info!(checkpoint = c.id, "savepoint {} written", c.id);
                    } else {
                        tracing::debug!(checkpoint = c.id, "checkpoint {} complete", c.id);
                    }
                    if self.kind != TriggerKind::Periodic {
                        return Ok(true);
                    }
                    if let Some(k) = self.wanted {
                        self.start(k);
                    }
                }
            }
            Event::Failed { id, task, error } => {
                if self.tracker.fail(id) {
                    self.ck.count_failure();
                    tracing::warn!(checkpoint = id, %task, "checkpoint {id} failed in {task}: {error}");
                }
            }
            Event::SourceEnded(name) => {
                self.ended.insert(name);
                if self.ended.len() >= self.sources {
                    self.want(TriggerKind::Final);
                }
            }
            Event::Stop => self.want(TriggerKind::Stop),
        }
        Ok(false)
    }

    fn want(&mut self, kind: TriggerKind) {
        if self.wanted.is_some() {
            return;
        }
        self.wanted = Some(kind);
        if self.tracker.pending().is_none() {
            self.start(kind);
        }
    }
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
