//! Window results that are corrected after they were emitted: allowed lateness and early firing.
//!
//! With `window.allowed-lateness` a fired window's group table is kept until the watermark passes
//! its firing time plus the lateness; a late row inside that bound updates the table and the
//! window is re-emitted after the batch, as `-U` old / `+U` new for each group whose row changed
//! (`+I` for a group the late row created). With `window.early-fire.delay` open windows emit
//! their partial rows every delay of processing time, and the final firing is an update of them.
//! Both diff against the rows last emitted per window, which this module keeps.
//!
//! A row is late for a window when its row watermark (the watermark of the rows before it at
//! its source) has reached the window's firing time, even if the operator's watermark (the
//! minimum over its input channels) has not fired the window yet: another source subtask may
//! be behind, or the watermark may be in the next message. Such rows are held per window and
//! applied as late rows right after the window fires, so whether a row is part of the first
//! firing or an update does not depend on parallelism, batching or timing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;

use super::groups::GroupTable;
use crate::changelog::{changed_rows, ChangeBuilder, RowKind};
use crate::error::Result;
use crate::message::Message;
use weir_planner::stream_plan::EmitConfig;

type Key = (i64, i64);

pub(crate) struct WindowUpdates {
    pub config: EmitConfig,
    /// The rows last emitted per window (only kept when results update).
    emitted: BTreeMap<Key, RecordBatch>,
    /// Fired windows still taking late rows.
    pub retained: BTreeMap<Key, GroupTable>,
    /// Retained windows that late rows changed in the current batch.
    refire: BTreeSet<Key>,
    /// Open windows changed since the last early firing.
    pub early_dirty: BTreeSet<Key>,
    next_early: Option<Instant>,
    /// Rows late for a window that has not fired yet, applied once it has.
    held: BTreeMap<Key, Vec<RecordBatch>>,
}

impl WindowUpdates {
    pub fn new(config: EmitConfig) -> Self {
        let next_early = config
            .early_fire_ns
            .map(|ns| Instant::now() + Duration::from_nanos(ns as u64));
        Self {
            config,
            emitted: BTreeMap::new(),
            retained: BTreeMap::new(),
            refire: BTreeSet::new(),
            early_dirty: BTreeSet::new(),
            next_early,
            held: BTreeMap::new(),
        }
    }

    pub fn is_updating(&self) -> bool {
        self.config.is_updating()
    }

    /// The retained table of a fired window, marked for re-emission.
    pub fn late_table(&mut self, key: Key) -> Option<&mut GroupTable> {
        let t = self.retained.get_mut(&key)?;
        self.refire.insert(key);
        Some(t)
    }

    /// Windows to re-emit after a batch of late rows.
    pub fn take_refire(&mut self) -> Vec<Key> {
        std::mem::take(&mut self.refire).into_iter().collect()
    }

    /// True when an early firing is due (and schedules the next one).
    pub fn early_due(&mut self) -> bool {
        let (Some(at), Some(ns)) = (self.next_early, self.config.early_fire_ns) else {
            return false;
        };
        let now = Instant::now();
        if now < at {
            return false;
        }
        self.next_early = Some(now + Duration::from_nanos(ns as u64));
        true
    }

    /// Emit `rows` (a window's rows now) as changes against what the window emitted before.
    pub fn emit(&mut self, key: Key, rows: RecordBatch, out: &mut Vec<Message>) -> Result<()> {
        let mut changes = ChangeBuilder::default();
        let empty = rows.slice(0, 0);
        let old = self.emitted.get(&key).unwrap_or(&empty);
        let n_old = old.num_rows().min(rows.num_rows());
        let changed = changed_rows(old, &rows.slice(0, n_old), 0)?;
        for i in 0..rows.num_rows() {
            if i >= n_old {
                changes.push((n_old + i) as u32, RowKind::Insert);
            } else if changed.value(i) {
                changes.push(i as u32, RowKind::UpdateBefore);
                changes.push((n_old + i) as u32, RowKind::UpdateAfter);
            }
        }
        if let Some(b) = changes.build(old, &rows)? {
            out.push(Message::Batch(b));
        }
        self.emitted.insert(key, rows);
        Ok(())
    }

    /// A fired window: keep its table for late rows (`Some`), or forget it.
    pub fn fired(&mut self, key: Key, table: Option<GroupTable>) {
        match table {
            Some(t) => {
                self.retained.insert(key, t);
            }
            None => {
                self.emitted.remove(&key);
            }
        }
        self.early_dirty.remove(&key);
    }

    /// Drop retained windows whose lateness has passed (`expired` says which).
    pub fn expire(&mut self, expired: impl Fn(Key) -> bool) -> Vec<Key> {
        let gone: Vec<Key> = self
            .retained
            .keys()
            .copied()
            .filter(|k| expired(*k))
            .collect();
        for k in &gone {
            self.retained.remove(k);
            self.emitted.remove(k);
        }
        gone
    }

    /// Hold `rows`, late for window `key`, until it fires.
    pub fn hold(&mut self, key: Key, rows: RecordBatch) {
        if rows.num_rows() > 0 {
            self.held.entry(key).or_default().push(rows);
        }
    }

    /// The rows held for window `key`, taken out.
    pub fn take_held(&mut self, key: Key) -> Vec<RecordBatch> {
        self.held.remove(&key).unwrap_or_default()
    }

    /// The windows with held rows whose firing time `fired` says has come.
    pub fn held_windows(&self, fired: impl Fn(Key) -> bool) -> Vec<Key> {
        self.held.keys().copied().filter(|k| fired(*k)).collect()
    }

    /// Every window's held rows.
    pub fn held(&self) -> &BTreeMap<Key, Vec<RecordBatch>> {
        &self.held
    }

    pub fn emitted(&self) -> &BTreeMap<Key, RecordBatch> {
        &self.emitted
    }

    pub fn restore_emitted(&mut self, key: Key, rows: RecordBatch) {
        self.emitted.insert(key, rows);
    }
}
