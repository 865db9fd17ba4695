//! The checkpoint coordinator's decisions, apart from any I/O: which checkpoint to start, when
//! one is complete, and what to forget when one fails.
//!
//! One checkpoint is in flight at a time (Flink's default `max-concurrent-checkpoints = 1`), so
//! a later checkpoint never overtakes an earlier one. A checkpoint is complete when every
//! participating task (each source, stateful operator and sink) has acknowledged it with its
//! snapshot; an acknowledgement for anything but the pending checkpoint is ignored, and a failed
//! or timed-out checkpoint is dropped without touching the last complete one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A complete checkpoint: its id and every task's snapshot (opaque text, usually JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The checkpoint id.
    pub id: u64,
    /// The job has finished: this is the final checkpoint of a bounded job.
    pub finished: bool,
    /// Every participating task's snapshot, by task name.
    pub snapshots: BTreeMap<String, String>,
}

/// What an acknowledgement led to.
#[derive(Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// Not for the pending checkpoint (late, duplicate or from a failed one).
    Ignored,
    /// Still waiting for other tasks.
    Waiting,
    /// The last participant acknowledged: the checkpoint is complete.
    Complete(Completed),
}

struct Pending {
    id: u64,
    finished: bool,
    started: Instant,
    snapshots: BTreeMap<String, String>,
}

/// Pure checkpoint bookkeeping for one job.
pub struct Tracker {
    participants: BTreeSet<String>,
    next_id: u64,
    pending: Option<Pending>,
    timeout: Duration,
}

impl Tracker {
    /// `first_id` follows the checkpoint a job was restored from (ids never repeat in a
    /// checkpoint directory).
    pub fn new(
        participants: impl IntoIterator<Item = String>,
        first_id: u64,
        timeout: Duration,
    ) -> Self {
        Self {
            participants: participants.into_iter().collect(),
            next_id: first_id,
            pending: None,
            timeout,
        }
    }

    /// Start a checkpoint unless one is in flight; `finished` marks the final one.
    pub fn trigger(&mut self, now: Instant, finished: bool) -> Option<u64> {
        if self.pending.is_some() {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending = Some(Pending {
            id,
            finished,
            started: now,
            snapshots: BTreeMap::new(),
        });
        Some(id)
    }

    /// The checkpoint in flight, if any.
    pub fn pending(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.id)
    }

    /// Record `task`'s snapshot for checkpoint `id`; completes the checkpoint once every
    /// participant has acknowledged.
    pub fn ack(&mut self, id: u64, task: &str, snapshot: String) -> AckOutcome {
        let Some(p) = self.pending.as_mut().filter(|p| p.id == id) else {
            return AckOutcome::Ignored;
        };
        if !self.participants.contains(task) || p.snapshots.contains_key(task) {
            return AckOutcome::Ignored;
        }
        p.snapshots.insert(task.to_string(), snapshot);
        if p.snapshots.len() < self.participants.len() {
            return AckOutcome::Waiting;
        }
        let p = self.pending.take().expect("pending");
        AckOutcome::Complete(Completed {
            id: p.id,
            finished: p.finished,
            snapshots: p.snapshots,
        })
    }

    /// Drop checkpoint `id` (a task could not snapshot, or writing it failed). True if it was
    /// the one in flight.
    pub fn fail(&mut self, id: u64) -> bool {
        if self.pending() == Some(id) {
            self.pending = None;
            true
        } else {
            false
        }
    }

    /// The pending checkpoint if it has run longer than the timeout (the caller fails it).
    pub fn expired(&self, now: Instant) -> Option<u64> {
        self.pending
            .as_ref()
            .filter(|p| now.duration_since(p.started) > self.timeout)
            .map(|p| p.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> Tracker {
        let tasks = ["source:a", "op:1", "sink:s"].map(String::from);
        Tracker::new(tasks, 1, Duration::from_secs(60))
    }

    #[test]
    fn completes_when_every_task_acknowledged() {
        let mut t = tracker();
        let now = Instant::now();
        let id = t.trigger(now, false).unwrap();
        assert_eq!(t.trigger(now, false), None, "one checkpoint at a time");
        assert_eq!(
            t.ack(id, "source:a", "{\"o\":1}".into()),
            AckOutcome::Waiting
        );
        assert_eq!(t.ack(id, "source:a", "again".into()), AckOutcome::Ignored);
        assert_eq!(t.ack(id, "op:1", String::new()), AckOutcome::Waiting);
        let AckOutcome::Complete(c) = t.ack(id, "sink:s", "p".into()) else {
            panic!()
        };
        assert_eq!(c.id, 1);
        assert_eq!(c.snapshots["source:a"], "{\"o\":1}");
        assert_eq!(t.trigger(now, false), Some(2));
    }

    #[test]
    fn a_checkpoint_failing_half_way_is_dropped_and_the_next_starts_fresh() {
        let mut t = tracker();
        let now = Instant::now();
        let id = t.trigger(now, false).unwrap();
        assert_eq!(t.ack(id, "source:a", "x".into()), AckOutcome::Waiting);
        assert!(t.fail(id));
        assert_eq!(t.ack(id, "op:1", "late".into()), AckOutcome::Ignored);
        let next = t.trigger(now, false).unwrap();
        assert_eq!(next, id + 1);
        assert_eq!(t.ack(next, "source:a", "y".into()), AckOutcome::Waiting);
        assert_eq!(t.ack(next, "op:1", "".into()), AckOutcome::Waiting);
        assert!(
            matches!(t.ack(next, "sink:s", "".into()), AckOutcome::Complete(c) if c.snapshots["source:a"] == "y")
        );
    }

    #[test]
    fn unknown_tasks_and_timeouts() {
        let mut t = Tracker::new(["a".to_string()], 10, Duration::from_millis(10));
        let now = Instant::now();
        let id = t.trigger(now, true).unwrap();
        assert_eq!(id, 10);
        assert_eq!(t.ack(id, "stranger", "".into()), AckOutcome::Ignored);
        assert_eq!(t.expired(now), None);
        assert_eq!(t.expired(now + Duration::from_secs(1)), Some(10));
        assert!(matches!(t.ack(id, "a", "".into()), AckOutcome::Complete(c) if c.finished));
    }
}
