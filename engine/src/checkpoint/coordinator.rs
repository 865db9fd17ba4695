//! The coordinator task of a checkpointing job: triggers barriers on the interval, collects the
//! acknowledgements, makes complete checkpoints durable and tells the sinks to commit.
//!
//! When every source has ended it takes one final checkpoint, after which the job is finished
//! (a restart then has nothing left to do); on a stop request it takes a savepoint that the
//! sources end on without firing their windows.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::tracker::{AckOutcome, Tracker};
use super::{CheckpointMeta, CheckpointStats, Checkpointing, Event, Trigger, TriggerKind};
use crate::error::{EngineError, Result};

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
    let tracker = Tracker::new(ck.participants(), first, ck.config.timeout);
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
            _ = ticker.tick() => c.on_tick()?,
            e = events.recv() => match e {
                None => return Ok(()),
                Some(e) => if c.on_event(e).await? { return Ok(()) },
            },
        }
    }
}

/// What follows a checkpoint that failed or timed out.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterAbandon {
    /// Start this checkpoint now (the final checkpoint or savepoint that was waiting).
    Start(TriggerKind),
    /// Wait for the next interval.
    Wait,
    /// The savepoint or final checkpoint itself failed: its sources have already ended on its
    /// barrier, so no other can be taken and the job fails.
    FailJob,
}

/// Decide what follows abandoning a checkpoint of kind `abandoned` while `wanted` waits.
pub fn after_abandon(abandoned: TriggerKind, wanted: Option<TriggerKind>) -> AfterAbandon {
    match (abandoned, wanted) {
        (TriggerKind::Periodic, Some(k)) => AfterAbandon::Start(k),
        (TriggerKind::Periodic, None) => AfterAbandon::Wait,
        (TriggerKind::Final | TriggerKind::Stop, _) => AfterAbandon::FailJob,
    }
}

impl Coordinator {
    fn on_tick(&mut self) -> Result<()> {
        if let Some(id) = self.tracker.expired(Instant::now()) {
            let why = format!("timed out after {:?}", self.ck.config.timeout);
            self.abandon(id, &why)?;
        }
        if self.wanted.is_none() {
            self.start(TriggerKind::Periodic);
        }
        Ok(())
    }

    /// Drop checkpoint `id` (in flight) and start what was waiting for it; an error when it was
    /// the savepoint or the final checkpoint.
    fn abandon(&mut self, id: u64, why: &str) -> Result<()> {
        if !self.tracker.fail(id) {
            return Ok(());
        }
        self.ck.count_failure();
        let what = match self.kind {
            TriggerKind::Stop => "savepoint",
            TriggerKind::Final => "final checkpoint",
            TriggerKind::Periodic => "checkpoint",
        };
        tracing::warn!(checkpoint = id, "{what} {id} {why}; abandoned");
        match after_abandon(self.kind, self.wanted) {
            AfterAbandon::Start(k) => self.start(k),
            AfterAbandon::Wait => {}
            AfterAbandon::FailJob => {
                return Err(EngineError::State(format!(
                    "{what} {id} {why}; the job stops without it, and a restart resumes from \
                     {}",
                    match *self.ck.committed().borrow() {
                        0 => "the start (no checkpoint completed)".to_string(),
                        c => format!("checkpoint {c}"),
                    }
                )))
            }
        }
        Ok(())
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
                        layouts: self.ck.layouts(),
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
                self.abandon(id, &format!("failed in {task}: {error}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_waits_behind_an_abandoned_checkpoint_starts_or_the_job_fails() {
        use TriggerKind::*;
        assert_eq!(after_abandon(Periodic, None), AfterAbandon::Wait);
        assert_eq!(
            after_abandon(Periodic, Some(Stop)),
            AfterAbandon::Start(Stop)
        );
        assert_eq!(
            after_abandon(Periodic, Some(Final)),
            AfterAbandon::Start(Final)
        );
        assert_eq!(after_abandon(Stop, Some(Stop)), AfterAbandon::FailJob);
        assert_eq!(after_abandon(Final, Some(Final)), AfterAbandon::FailJob);
    }
}
