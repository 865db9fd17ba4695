//! Checkpoints: aligned barriers, consistent snapshots, two-phase commit of sinks, recovery.
//!
//! A job with a checkpoint directory runs a coordinator task beside its graph. Every interval
//! the coordinator asks each source for a barrier; a source records its position (and its
//! watermark state) and sends the barrier downstream in-band, after the rows it has already
//! sent. Each stateful operator writes its state when the barrier reaches it (after aligning
//! the barrier over all inputs) and each sink pre-commits (flushes into a transaction or
//! in-progress file). Everyone acknowledges with a snapshot; when all have, the coordinator
//! writes the checkpoint's `_metadata` (the moment it becomes complete) and tells the sinks to
//! commit. After a crash the job restarts from the latest complete checkpoint: sources seek,
//! operators reload state, sinks commit what that checkpoint had pre-committed and discard the
//! rest. The decisions live in [`tracker`] and [`aligner`], free of I/O; the files in [`store`].

pub mod aligner;
pub mod coordinator;
pub mod layout;
pub mod pending;
pub mod store;
pub mod tracker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use store::{fingerprint, CheckpointMeta, CheckpointStore};

/// How a job checkpoints (`--checkpoint-dir`, `execution.checkpointing.interval`).
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// The checkpoint directory (see [`store`] for its layout).
    pub dir: PathBuf,
    /// Time between checkpoint triggers (default 10 s).
    pub interval: Duration,
    /// Restore even when the checkpoint was taken by a different query.
    pub allow_changed_query: bool,
    /// Operator state above this many bytes moves from memory to RocksDB
    /// (`SET 'state.memory-limit' = '512 mb'`).
    pub memory_limit: usize,
    /// A checkpoint not complete after this long is abandoned; a savepoint or final checkpoint
    /// that times out fails the job (`SET 'execution.checkpointing.timeout'`, default 10 min).
    pub timeout: Duration,
}

/// The default `state.memory-limit`.
pub const DEFAULT_MEMORY_LIMIT: usize = 1 << 30;

impl CheckpointConfig {
    /// Checkpoints into `dir` every 10 s, refusing another query's checkpoints, 1 GiB of
    /// operator state in memory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            interval: Duration::from_secs(10),
            allow_changed_query: false,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            timeout: Duration::from_secs(600),
        }
    }
}

/// Which of its node's subtasks a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSlot {
    /// The subtask, from 0.
    pub index: usize,
    /// How many subtasks run the node.
    pub count: usize,
}

impl TaskSlot {
    /// The only task of its node.
    pub const SINGLE: TaskSlot = TaskSlot { index: 0, count: 1 };
}

/// Where a task's state comes from on restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// Nowhere: the task starts empty.
    Nothing,
    /// The checkpoint's task of the same name.
    Same,
    /// Every subtask of the node in the checkpoint, taken at another parallelism: the task
    /// takes its share (keyed state by key group, source positions merged).
    Rescale(Vec<OldTask>),
}

/// A subtask of the restored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldTask {
    /// Its task name.
    pub name: String,
    /// Which subtask it was.
    pub index: usize,
    /// How many subtasks ran its node.
    pub count: usize,
}

/// Why a barrier is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    /// A regular checkpoint, triggered every [`CheckpointConfig::interval`].
    Periodic,
    /// Every source has ended: the last checkpoint, after which the job is finished.
    Final,
    /// Stop with a savepoint: sources send the barrier and then end without a final watermark.
    Stop,
}

/// A request to the sources to inject barrier `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger {
    /// The checkpoint id (ids increase and never repeat within a directory).
    pub id: u64,
    /// Why the barrier is sent.
    pub kind: TriggerKind,
}

/// What tasks tell the coordinator.
#[derive(Debug)]
pub enum Event {
    /// A task has taken its snapshot for checkpoint `id`.
    Ack {
        /// The checkpoint acknowledged.
        id: u64,
        /// The task's name (as given by [`Checkpointing::register`]).
        task: String,
        /// What the task saved (opaque text, usually JSON), stored in the checkpoint's `_metadata`.
        snapshot: String,
    },
    /// A task could not snapshot; the checkpoint is dropped (the job usually fails too).
    Failed {
        /// The checkpoint that failed.
        id: u64,
        /// The task's name (as given by [`Checkpointing::register`]).
        task: String,
        /// Why the snapshot failed.
        error: String,
    },
    /// A source has read all of its input.
    SourceEnded(String),
    /// Stop with a savepoint (SIGTERM on `weir run`).
    Stop,
}

/// What one complete checkpoint cost.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointStats {
    /// The checkpoint id.
    pub id: u64,
    /// From the trigger to the durable `_metadata`.
    pub duration: Duration,
    /// Bytes of the checkpoint directory (files hard-linked from earlier checkpoints included).
    pub bytes: u64,
    /// When it completed.
    pub completed: std::time::SystemTime,
}

/// The checkpoint handles shared by one job's tasks.
pub struct Checkpointing {
    /// How the job checkpoints.
    pub config: CheckpointConfig,
    /// The checkpoint directory the job writes to.
    pub store: CheckpointStore,
    /// The checkpoint this run restored from.
    pub restored: Option<CheckpointMeta>,
    triggers: watch::Sender<Option<Trigger>>,
    events: mpsc::UnboundedSender<Event>,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
    committed: watch::Sender<u64>,
    participants: Mutex<Vec<String>>,
    /// The job's entries and every registered task's state layout (see [`layout`]).
    layouts: Mutex<BTreeMap<String, String>>,
    next_task: AtomicU32,
    /// The number of the node whose subtasks are registering.
    node_task: AtomicU32,
    stats: Mutex<Vec<CheckpointStats>>,
    failures: std::sync::atomic::AtomicU64,
}

impl Checkpointing {
    /// Checkpoint handles for one job writing into `store`, restored from `restored` if given.
    pub fn new(
        config: CheckpointConfig,
        store: CheckpointStore,
        restored: Option<CheckpointMeta>,
        job_layouts: BTreeMap<String, String>,
    ) -> Self {
        let (events, rx) = mpsc::unbounded_channel();
        let first = restored.as_ref().map_or(0, |m| m.id);
        Self {
            config,
            store,
            restored,
            triggers: watch::channel(None).0,
            events,
            events_rx: Mutex::new(Some(rx)),
            committed: watch::channel(first).0,
            participants: Mutex::new(Vec::new()),
            layouts: Mutex::new(job_layouts),
            next_task: AtomicU32::new(0),
            node_task: AtomicU32::new(0),
            stats: Mutex::new(Vec::new()),
            failures: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The job's recent complete checkpoints (the last 100), oldest first.
    pub fn stats(&self) -> Vec<CheckpointStats> {
        self.stats.lock().expect("lock").clone()
    }

    /// Checkpoints that failed or timed out since the job started.
    pub fn failures(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_failure(&self) {
        self.failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn record(&self, s: CheckpointStats) {
        let mut v = self.stats.lock().expect("lock");
        if v.len() == 100 {
            v.remove(0);
        }
        v.push(s);
    }

    /// Name a task that takes part in checkpoints (`source-0`, `op-2`, `sink-1`; subtask 1
    /// of a node run by several is `op-2.1`); names follow the plan's build order, one number
    /// per node whatever the parallelism, so the same query gives the same names on restart.
    /// A node's subtasks register one after another, index 0 first. `layout` is what its saved
    /// state depends on: restored state goes only to a task whose layout is unchanged.
    pub fn register(&self, kind: &str, layout: String, slot: TaskSlot) -> String {
        let n = match slot.index {
            0 => {
                let n = self.next_task.fetch_add(1, Ordering::Relaxed);
                self.node_task.store(n, Ordering::Relaxed);
                n
            }
            _ => self.node_task.load(Ordering::Relaxed),
        };
        let name = match slot.count {
            1 => format!("{kind}-{n}"),
            _ => format!("{kind}-{n}.{}", slot.index),
        };
        self.participants.lock().expect("lock").push(name.clone());
        self.layouts
            .lock()
            .expect("lock")
            .insert(name.clone(), layout);
        name
    }

    /// The job's and its tasks' layouts, as a checkpoint records them.
    pub fn layouts(&self) -> BTreeMap<String, String> {
        self.layouts.lock().expect("lock").clone()
    }

    /// Tasks whose layout differs from the restored checkpoint's (none when the checkpoint
    /// predates layouts), compared node by node: a node may run as more or fewer subtasks.
    pub fn task_changes(&self) -> Vec<layout::Change> {
        match &self.restored {
            Some(r) if !r.layouts.is_empty() => layout::changes(
                &layout::by_node(&r.layouts),
                &layout::by_node(&self.layouts()),
                layout::is_task,
            ),
            _ => Vec::new(),
        }
    }

    /// Where task `name` (subtask `slot`) takes its state from in the restored checkpoint.
    pub fn restore_plan(&self, name: &str, slot: TaskSlot) -> Restore {
        let Some(r) = &self.restored else {
            return Restore::Nothing;
        };
        if r.layouts.is_empty() {
            return Restore::Same; // a checkpoint of a version before parallelism
        }
        let ours = self.layouts.lock().expect("lock").get(name).cloned();
        let (node, _) = layout::node_of(name);
        let old: Vec<OldTask> = r
            .layouts
            .iter()
            .filter(|(_, l)| Some(*l) == ours.as_ref())
            .filter_map(|(n, _)| match layout::node_of(n) {
                (base, index) if base == node => Some((n.clone(), index.unwrap_or(0))),
                _ => None,
            })
            .map(|(name, index)| OldTask {
                name,
                index,
                count: 0,
            })
            .collect();
        // The node ran as `count` subtasks: as many as now, each restores its own (the same
        // name); otherwise every new subtask takes its share of all of them.
        let count = old.len();
        match count {
            0 => Restore::Nothing,
            _ if count == slot.count && old.iter().any(|t| t.name == name) => Restore::Same,
            _ if count == slot.count => Restore::Nothing,
            _ => Restore::Rescale(old.into_iter().map(|t| OldTask { count, ..t }).collect()),
        }
    }

    /// Whether task `name` may take its state from the restored checkpoint.
    fn fits(&self, name: &str) -> bool {
        let Some(r) = &self.restored else {
            return false;
        };
        r.layouts.is_empty() || r.layouts.get(name) == self.layouts.lock().expect("lock").get(name)
    }

    /// The snapshot task `name` saved in the restored checkpoint.
    pub fn restored_snapshot(&self, name: &str) -> Option<&str> {
        if !self.fits(name) {
            return None;
        }
        self.restored
            .as_ref()?
            .snapshots
            .get(name)
            .map(|s| s.as_str())
    }

    /// What every subtask of task `name`'s node saved in the restored checkpoint, by subtask
    /// index (only where its layout is `name`'s): a sink's pending commits, whichever of the
    /// node's subtasks publishes them. Empty without a restored checkpoint.
    pub fn restored_node_snapshots(&self, name: &str) -> Vec<String> {
        let Some(r) = &self.restored else {
            return Vec::new();
        };
        if r.layouts.is_empty() {
            return r.snapshots.get(name).cloned().into_iter().collect();
        }
        let ours = self.layouts.lock().expect("lock").get(name).cloned();
        let node = layout::node_of(name).0;
        let mut found: Vec<(usize, String)> = r
            .layouts
            .iter()
            .filter(|(n, l)| Some(*l) == ours.as_ref() && layout::node_of(n).0 == node)
            .map(|(n, _)| {
                let snapshot = r.snapshots.get(n).cloned().unwrap_or_default();
                (layout::node_of(n).1.unwrap_or(0), snapshot)
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, s)| s).collect()
    }

    /// Where operator `name`'s state of the restored checkpoint lives.
    pub fn restored_state_dir(&self, name: &str) -> Option<PathBuf> {
        if !self.fits(name) {
            return None;
        }
        let id = self.restored.as_ref()?.id;
        let dir = self.store.checkpoint_dir(id).join(name);
        dir.exists().then_some(dir)
    }

    /// Subscribe to checkpoint triggers: the latest trigger sent, `None` before the first.
    pub fn triggers(&self) -> watch::Receiver<Option<Trigger>> {
        self.triggers.subscribe()
    }

    /// The id of the latest complete checkpoint (sinks commit up to it).
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Tell the coordinator about `e` (dropped silently once the coordinator is gone).
    pub fn send(&self, e: Event) {
        let _ = self.events.send(e);
    }

    pub(crate) fn take_events(&self) -> Option<mpsc::UnboundedReceiver<Event>> {
        self.events_rx.lock().expect("lock").take()
    }

    pub(crate) fn participants(&self) -> Vec<String> {
        self.participants.lock().expect("lock").clone()
    }

    pub(crate) fn trigger(&self, t: Trigger) {
        self.triggers.send_replace(Some(t));
    }

    pub(crate) fn mark_committed(&self, id: u64) {
        self.committed.send_replace(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Handles restoring a checkpoint whose node `op-1` ran as `was` subtasks.
    fn restoring(was: usize) -> Checkpointing {
        let dir = std::env::temp_dir().join(format!("weir-plan-{}-{was}", std::process::id()));
        let mut layouts: BTreeMap<String, String> = BTreeMap::new();
        for i in 0..was {
            let name = match was {
                1 => "op-1".to_string(),
                _ => format!("op-1.{i}"),
            };
            layouts.insert(name, "W".into());
        }
        layouts.insert("sink-0".into(), "out".into());
        let meta = CheckpointMeta {
            id: 4,
            fingerprint: String::new(),
            finished: false,
            snapshots: BTreeMap::new(),
            layouts,
        };
        let store = CheckpointStore::open(&dir).unwrap();
        Checkpointing::new(
            CheckpointConfig::new(&dir),
            store,
            Some(meta),
            BTreeMap::new(),
        )
    }

    fn plans(ck: &Checkpointing, count: usize, layout: &str) -> Vec<Restore> {
        let _sink = ck.register("sink", "out".into(), TaskSlot::SINGLE);
        (0..count)
            .map(|index| {
                let slot = TaskSlot { index, count };
                let name = ck.register("op", layout.into(), slot);
                ck.restore_plan(&name, slot)
            })
            .collect()
    }

    #[test]
    fn a_subtask_restores_its_own_state_or_a_share_of_every_old_subtasks() {
        let same = plans(&restoring(2), 2, "W");
        assert_eq!(same, [Restore::Same, Restore::Same]);
        // Subtask 0 exists at both parallelisms, yet it must take its share of both.
        let more = plans(&restoring(2), 4, "W");
        let old: Vec<(String, usize, usize)> = match &more[0] {
            Restore::Rescale(old) => old
                .iter()
                .map(|t| (t.name.clone(), t.index, t.count))
                .collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(old, [("op-1.0".into(), 0, 2), ("op-1.1".into(), 1, 2)]);
        assert!(more.iter().all(|p| matches!(p, Restore::Rescale(_))));
        let fewer = plans(&restoring(4), 1, "W");
        assert!(matches!(&fewer[0], Restore::Rescale(old) if old.len() == 4));
        assert_eq!(plans(&restoring(2), 4, "changed")[0], Restore::Nothing);
    }
}
