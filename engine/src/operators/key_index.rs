//! Keys of updating state: key rows interned to dense group numbers, the groups one batch
//! touched (in first-touch order), and state TTL by processing time.
//!
//! Keys are encoded with Arrow's row format once per batch; a new key costs one allocation, a
//! known one none. With `table.exec.state.ttl` every group remembers when it was last touched and
//! a sweep (at most every tenth of the TTL) drops groups idle longer than the TTL, renumbering the
//! rest; the operator drops the same groups from its own per-group state.

use std::collections::HashMap;
use std::time::Instant;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::row::{RowConverter, Rows};

use crate::error::Result;

/// Milliseconds of processing time since the process started (a test may replace it).
pub type Clock = fn() -> u64;

/// The default [`Clock`]: milliseconds since the first call in this process.
pub fn process_clock() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Interns key rows to dense group numbers and expires idle groups (see the module docs).
pub struct KeyIndex {
    converter: RowConverter,
    map: HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>,
    rows: Rows,
    /// Last processing time (ms) each group was touched; empty without a TTL.
    touched_at: Vec<u64>,
    ttl_ms: Option<u64>,
    next_sweep: u64,
    clock: Clock,
    /// Per-group batch stamp, to list each touched group once.
    stamp: Vec<u32>,
    batch_no: u32,
    /// Groups dropped by the TTL so far.
    expired: u64,
}

impl KeyIndex {
    /// An empty index whose keys are encoded by `converter`; `ttl_ms` (processing-time
    /// milliseconds read from `clock`) enables expiry of idle groups.
    pub fn new(converter: RowConverter, ttl_ms: Option<u64>, clock: Clock) -> Self {
        let rows = converter.empty_rows(64, 1024);
        Self {
            converter,
            map: HashMap::default(),
            rows,
            touched_at: vec![],
            ttl_ms,
            next_sweep: 0,
            clock,
            stamp: vec![],
            batch_no: 0,
            expired: 0,
        }
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.rows.num_rows()
    }

    /// True when there are no groups.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key in row format, by group.
    pub fn rows(&self) -> &Rows {
        &self.rows
    }

    /// The row converter that encodes the keys.
    pub fn converter(&self) -> &RowConverter {
        &self.converter
    }

    /// The group of each row of `keys`, and the distinct groups in first-touch order.
    pub fn intern(&mut self, keys: &[ArrayRef]) -> Result<(Vec<usize>, Vec<usize>)> {
        let rows = self.converter.convert_columns(keys)?;
        self.batch_no = self.batch_no.wrapping_add(1);
        let now = self.ttl_ms.map(|_| (self.clock)());
        let mut groups = Vec::with_capacity(rows.num_rows());
        let mut touched = Vec::new();
        for row in rows.iter() {
            let g = match self.map.get(row.as_ref()) {
                Some(g) => *g as usize,
                None => {
                    let g = self.rows.num_rows();
                    self.map.insert(row.as_ref().into(), g as u32);
                    self.rows.push(row);
                    self.stamp.push(0);
                    if now.is_some() {
                        self.touched_at.push(0);
                    }
                    g
                }
            };
            if self.stamp[g] != self.batch_no {
                self.stamp[g] = self.batch_no;
                touched.push(g);
                if let Some(t) = now {
                    self.touched_at[g] = t;
                }
            }
            groups.push(g);
        }
        Ok((groups, touched))
    }

    /// The groups expired so far, as the operator's counts.
    pub fn counts(&self) -> crate::observe::op_metrics::EventCounts {
        crate::observe::op_metrics::EventCounts {
            expired_keys: Some(self.expired),
            ..Default::default()
        }
    }

    /// The number of keys and the bytes of the index plus `per_group_bytes` the operator keeps
    /// beside it, for metrics.
    pub fn state_size_with(&self, per_group_bytes: usize) -> crate::observe::op_metrics::StateSize {
        let mut size = self.state_size();
        size.bytes += per_group_bytes as u64;
        size
    }

    fn state_size(&self) -> crate::observe::op_metrics::StateSize {
        // Each key's row twice (the rows, and the map's own copy), the map's buckets (a boxed
        // slice, a group number and a control byte), and the per-group stamps and TTL times.
        let rows = self.rows.size();
        let bucket = std::mem::size_of::<(Box<[u8]>, u32)>() + 1;
        let bytes = 2 * rows
            + self.map.capacity() * bucket
            + self.touched_at.capacity() * std::mem::size_of::<u64>()
            + self.stamp.capacity() * std::mem::size_of::<u32>();
        crate::observe::op_metrics::StateSize {
            keys: self.len() as u64,
            bytes: bytes as u64,
            ..Default::default()
        }
    }

    /// Key columns of `groups`, in that order.
    pub fn key_columns(&self, groups: &[usize]) -> Result<Vec<ArrayRef>> {
        let mut rows = self.converter.empty_rows(groups.len(), 0);
        for g in groups {
            rows.push(self.rows.row(*g));
        }
        Ok(self.converter.convert_rows(&rows)?)
    }

    /// Every key's columns in group order (checkpoints).
    pub fn all_key_columns(&self) -> Result<Vec<ArrayRef>> {
        Ok(self.converter.convert_rows(&self.rows)?)
    }

    /// Re-create groups `0..` from key columns (restore).
    pub fn restore(&mut self, keys: &[ArrayRef]) -> Result<()> {
        let (_, _) = self.intern(keys)?;
        Ok(())
    }

    /// With a TTL, when a sweep is due: drop groups idle longer than the TTL and return which
    /// groups were kept (the caller drops the others from its state), or `None` when nothing
    /// expired.
    pub fn expire(&mut self) -> Option<Vec<bool>> {
        let ttl = self.ttl_ms?;
        let now = (self.clock)();
        if now < self.next_sweep {
            return None;
        }
        self.next_sweep = now + (ttl / 10).max(1);
        let keep: Vec<bool> = self
            .touched_at
            .iter()
            .map(|t| now.saturating_sub(*t) < ttl)
            .collect();
        if keep.iter().all(|k| *k) {
            return None;
        }
        let mut rows = self.converter.empty_rows(self.len(), 0);
        let mut touched = Vec::new();
        self.map.clear();
        for (g, k) in keep.iter().enumerate() {
            if *k {
                self.map
                    .insert(self.rows.row(g).as_ref().into(), rows.num_rows() as u32);
                rows.push(self.rows.row(g));
                touched.push(self.touched_at[g]);
            }
        }
        self.rows = rows;
        self.touched_at = touched;
        self.stamp = vec![0; self.rows.num_rows()];
        self.expired += keep.iter().filter(|k| !**k).count() as u64;
        Some(keep)
    }
}

/// Keep the items of `v` where `keep` is true.
pub fn retain_by<T>(v: &mut Vec<T>, keep: &[bool]) {
    let mut i = 0;
    v.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}
