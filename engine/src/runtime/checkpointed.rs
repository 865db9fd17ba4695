//! The checkpoint side of sources and operators: naming each task, reading back what it saved,
//! and taking its snapshot when a barrier passes.
//!
//! A source's snapshot is its connector position plus the watermark bookkeeping (per-partition
//! watermarks), so that rows replayed after a restart carry the same watermarks and are judged
//! late or on time exactly as in a run without failures. An operator's snapshot is its state
//! backend's checkpoint directory, named after the task.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::checkpoint::{Checkpointing, Event, OldTask, Restore, TaskSlot, Trigger};
use crate::error::{EngineError, Result};
use crate::operator::Operator;
use crate::runtime::segments::SegmentMax;
use crate::state::rescale::Owned;
use crate::state::{RocksBackend, SharedState};
use weir_planner::parallel::ParallelConfig;

/// What a source saved in a checkpoint (stored as JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceSnapshot {
    /// Format version: 2 names the partitions' fields; 1 (absent) wrote them as arrays.
    #[serde(default = "version_1")]
    pub version: u32,
    /// The connector's position ([`crate::connector::Source::snapshot`]).
    pub position: Option<String>,
    /// Every declared partition.
    pub partitions: Vec<PartitionSnapshot>,
    /// The source watermark.
    pub watermark: i64,
    /// The segments of an ordered stream this subtask read (`runtime/segments.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub segments: BTreeMap<u64, SegmentMax>,
}

fn version_1() -> u32 {
    1
}

/// One partition's watermark bookkeeping in a checkpoint.
/// Version 1 wrote it as `[id, watermark, ended]`; serde reads a struct from an array in field
/// order, so both forms read.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    /// The source's partition id.
    pub id: u32,
    /// The largest watermark the partition produced.
    pub watermark: i64,
    /// The partition has no more data.
    pub ended: bool,
}

impl SourceSnapshot {
    /// The current format version.
    pub const VERSION: u32 = 2;

    /// The snapshot as JSON, as stored in the checkpoint.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Read a snapshot written by [`SourceSnapshot::to_json`] (any version).
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| EngineError::State(format!("unreadable source snapshot ({e}): {text}")))
    }
}

/// What an operator task records in a checkpoint's metadata (its state is the directory named
/// after the task).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    /// Bytes of the state checkpoint new in this checkpoint.
    pub state_bytes: u64,
}

/// A source task's part in checkpoints.
pub struct SourceCheckpoint {
    /// The task name (`source-N`).
    pub name: String,
    /// The job's checkpoint handles.
    pub ck: Arc<Checkpointing>,
    /// Checkpoint triggers from the coordinator.
    pub triggers: watch::Receiver<Option<Trigger>>,
    /// The newest complete checkpoint.
    pub committed: watch::Receiver<u64>,
    /// Which subtask of its node this source is.
    slot: TaskSlot,
    /// Positions this source acknowledged, by checkpoint id, until that checkpoint completes.
    positions: std::collections::VecDeque<(u64, Option<String>)>,
}

impl SourceCheckpoint {
    /// Register a new source task, subtask `slot` of its node (whose state depends on
    /// `layout`), with the job's checkpoints.
    pub fn new(ck: &Arc<Checkpointing>, layout: String, slot: TaskSlot) -> Self {
        Self {
            slot,
            name: ck.register("source", layout, slot),
            ck: ck.clone(),
            triggers: ck.triggers(),
            committed: ck.committed(),
            positions: Default::default(),
        }
    }

    /// What this source saved in the checkpoint the job restores from. Restored at another
    /// parallelism, every old subtask's position is merged into one by `merge` (the
    /// connector's [`crate::connector::SourceFactory::merge_positions`]), the watermark is
    /// the smallest of theirs, the segments they read are all known to each new subtask, and
    /// the per-partition watermarks start afresh.
    pub fn restored(&self, merge: MergePositions) -> Option<Result<SourceSnapshot>> {
        match self.ck.restore_plan(&self.name, self.slot) {
            Restore::Nothing => None,
            Restore::Same => self
                .ck
                .restored_snapshot(&self.name)
                .map(SourceSnapshot::from_json),
            Restore::Rescale(old) => Some(self.merged(&old, merge)),
        }
    }

    fn merged(&self, old: &[OldTask], merge: MergePositions) -> Result<SourceSnapshot> {
        let r = self.ck.restored.as_ref().expect("restoring");
        let mut snapshots = Vec::with_capacity(old.len());
        for t in old {
            let text = r.snapshots.get(&t.name).ok_or_else(|| {
                EngineError::State(format!("checkpoint {} lacks source task {}", r.id, t.name))
            })?;
            snapshots.push(SourceSnapshot::from_json(text)?);
        }
        let positions: Vec<Option<String>> = snapshots.iter().map(|s| s.position.clone()).collect();
        let position = merge(&positions).map_err(EngineError::State)?;
        let mut segments = BTreeMap::new();
        for (id, seg) in snapshots.iter().flat_map(|s| &s.segments) {
            let known: &mut SegmentMax = segments.entry(*id).or_insert(*seg);
            known.max = known.max.max(seg.max);
            known.ended |= seg.ended;
        }
        Ok(SourceSnapshot {
            version: SourceSnapshot::VERSION,
            position,
            partitions: Vec::new(),
            segments,
            watermark: snapshots
                .iter()
                .map(|s| s.watermark)
                .min()
                .unwrap_or(crate::message::WATERMARK_MIN),
        })
    }

    /// A trigger that arrived since the last call.
    pub fn take_trigger(&mut self) -> Option<Trigger> {
        if self.triggers.has_changed().unwrap_or(false) {
            *self.triggers.borrow_and_update()
        } else {
            None
        }
    }

    /// Wait for the next trigger; `None` once the coordinator is gone.
    pub async fn next_trigger(&mut self) -> Option<Trigger> {
        self.triggers.changed().await.ok()?;
        *self.triggers.borrow_and_update()
    }

    /// The position acknowledged for the checkpoint that completed since the last call (older
    /// ones are forgotten: only the newest is worth committing anywhere).
    pub fn take_completed(&mut self) -> Option<String> {
        if !self.committed.has_changed().unwrap_or(false) {
            return None;
        }
        let done = *self.committed.borrow_and_update();
        let mut newest = None;
        while self.positions.front().is_some_and(|(id, _)| *id <= done) {
            let (id, position) = self.positions.pop_front().expect("front");
            if id == done {
                newest = position;
            }
        }
        newest
    }

    /// Acknowledge checkpoint `id` with this source's snapshot.
    pub fn ack(&mut self, id: u64, snapshot: &SourceSnapshot) {
        self.positions.push_back((id, snapshot.position.clone()));
        if self.positions.len() > 16 {
            self.positions.pop_front(); // checkpoints that failed never complete
        }
        self.ck.send(Event::Ack {
            id,
            task: self.name.clone(),
            snapshot: snapshot.to_json(),
        });
    }

    /// Tell the coordinator this source has read all of its input.
    pub fn ended(&self) {
        self.ck.send(Event::SourceEnded(self.name.clone()));
    }
}

/// How a source's connector merges its subtasks' positions (see
/// [`crate::connector::SourceFactory::merge_positions`]).
pub type MergePositions<'a> =
    &'a dyn Fn(&[Option<String>]) -> std::result::Result<Option<String>, String>;

/// A stateful operator's part in checkpoints: its RocksDB instance and its task name.
pub struct OperatorCheckpoint {
    name: String,
    ck: Arc<Checkpointing>,
    backend: SharedState,
}

impl OperatorCheckpoint {
    /// Open the operator's state (from the restored checkpoint, if any) and load it into `op`,
    /// subtask `slot` of its node; restored at another parallelism, the state of the key
    /// groups `parallel` gives it is gathered from every old subtask (see
    /// [`crate::state::rescale`]).
    pub fn open(
        ck: &Arc<Checkpointing>,
        op: &mut dyn Operator,
        layout: String,
        slot: TaskSlot,
        parallel: ParallelConfig,
    ) -> Result<Self> {
        let name = ck.register("op", layout, slot);
        let work = ck.store.work_dir().join(&name);
        let (backend, restored) = match ck.restore_plan(&name, slot) {
            Restore::Same => {
                let dir = ck.restored_state_dir(&name);
                (RocksBackend::open(&work, dir.as_deref())?, dir.is_some())
            }
            Restore::Rescale(old) => {
                let owned = Owned {
                    groups: parallel.key_groups_of(slot.index, slot.count),
                    config: parallel,
                };
                (rescaled(ck, &*op, &name, &old, &owned)?, true)
            }
            Restore::Nothing => (RocksBackend::open(&work, None)?, false),
        };
        let backend: SharedState = Arc::new(Mutex::new(Box::new(backend)));
        op.attach_state(backend.clone(), ck.config.memory_limit)?;
        if restored {
            op.restore(backend.lock().expect("state lock").as_ref())?;
        }
        Ok(Self {
            name,
            ck: ck.clone(),
            backend,
        })
    }

    /// Write the operator's state and checkpoint it into checkpoint `id`'s directory.
    pub async fn snapshot(&mut self, op: &mut dyn Operator, id: u64) -> Result<()> {
        let dir = self.ck.store.checkpoint_dir(id).join(&self.name);
        let r = self.write_and_checkpoint(op, dir).await;
        match r {
            Ok(bytes) => {
                let snapshot = serde_json::to_string(&OperatorSnapshot { state_bytes: bytes })
                    .unwrap_or_default();
                self.ck.send(Event::Ack {
                    id,
                    task: self.name.clone(),
                    snapshot,
                });
                Ok(())
            }
            Err(e) => {
                self.ck.send(Event::Failed {
                    id,
                    task: self.name.clone(),
                    error: e.to_string(),
                });
                Err(e)
            }
        }
    }

    /// Write the operator's changes, then make the backend's checkpoint (flush, hard links,
    /// fsync) on a blocking thread: the operator waits, but the rest of the pipeline keeps the
    /// CPU meanwhile. Nothing writes to the backend during the wait, since only this operator's
    /// task does, so the checkpoint is exactly the state at the barrier.
    async fn write_and_checkpoint(&mut self, op: &mut dyn Operator, dir: PathBuf) -> Result<u64> {
        op.snapshot(self.backend.lock().expect("state lock").as_mut())?;
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || {
            let mut b = backend.lock().expect("state lock");
            b.checkpoint(&dir)?;
            Ok(b.size_bytes())
        })
        .await
        .map_err(|e| EngineError::Internal(format!("checkpoint task: {e}")))?
    }
}

/// Task `name`'s state gathered from the old subtasks `old` whose key groups meet `owned`:
/// each is opened from its checkpoint in a scratch directory, read, and removed.
fn rescaled(
    ck: &Checkpointing,
    op: &dyn Operator,
    name: &str,
    old: &[OldTask],
    owned: &Owned,
) -> Result<RocksBackend> {
    let shape = op.state_shape().ok_or_else(|| {
        EngineError::State(format!(
            "{} ({name}) cannot divide its state among another number of subtasks yet: \
             restore at the parallelism the checkpoint was taken at",
            op.name()
        ))
    })?;
    let r = ck.restored.as_ref().expect("restoring");
    let work = ck.store.work_dir();
    let mut sources = Vec::new();
    for t in old {
        let theirs = owned.config.key_groups_of(t.index, t.count);
        let dir = ck.store.checkpoint_dir(r.id).join(&t.name);
        if theirs.start < owned.groups.end && owned.groups.start < theirs.end && dir.exists() {
            let scratch = work.join(format!("{name}-from-{}", t.name));
            sources.push((RocksBackend::open(&scratch, Some(&dir))?, scratch));
        }
    }
    let mut backend = RocksBackend::open(&work.join(name), None)?;
    let refs: Vec<&dyn crate::state::StateBackend> = sources
        .iter()
        .map(|(b, _)| b as &dyn crate::state::StateBackend)
        .collect();
    crate::state::rescale::gather(&shape, &refs, owned, &mut backend)?;
    drop(refs);
    for (b, scratch) in sources {
        drop(b);
        let _ = std::fs::remove_dir_all(scratch);
    }
    Ok(backend)
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    #[test]
    fn a_source_snapshot_of_either_version_reads_back() {
        let s = SourceSnapshot {
            segments: BTreeMap::new(),
            version: SourceSnapshot::VERSION,
            position: Some("{\"t/0\":5}".into()),
            partitions: vec![PartitionSnapshot {
                id: 3,
                watermark: -7,
                ended: true,
            }],
            watermark: 11,
        };
        let text = s.to_json();
        assert!(text.contains("\"watermark\":-7"), "{text}");
        assert_eq!(SourceSnapshot::from_json(&text).unwrap(), s);
        // Version 1 wrote partitions as arrays and no version.
        let v1 = r#"{"position":"{\"t/0\":5}","partitions":[[3,-7,true]],"watermark":11}"#;
        let read = SourceSnapshot::from_json(v1).unwrap();
        assert_eq!((read.version, read.partitions), (1, s.partitions.clone()));
        assert!(SourceSnapshot::from_json(r#"{"partitions":[[1,2]],"watermark":0}"#).is_err());
    }
}
