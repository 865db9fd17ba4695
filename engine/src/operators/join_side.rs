//! One input of an interval join: the rows it holds, by key, until no row of the other input
//! can match them any more.
//!
//! Rows are kept batch by batch in a [`RowSlots`] store (so checkpoints write each batch
//! once, and beyond the memory limit the oldest batches spill to RocksDB). Each held row is
//! listed under its key with its event time and the watermark of the other input at which it
//! can go; a heap finds those rows for every key at once, so state is freed by watermark
//! whether or not a key sees new rows. A side whose unmatched rows are emitted (the outer side
//! of an outer join) also remembers which rows matched, and checkpoints it:
//!
//! ```text
//! <side> b/ <slot>   rows       <side> r/ <slot>   rows that left
//! <side> m/ <slot>   bitmap of the slot's rows that matched (outer sides)
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::Row;

use super::key_index::Clock;
use super::row_slots::{bitmap, unbitmap, Restored, RowSlots};
use crate::error::Result;
use crate::observe::metrics::JobMetrics;
use crate::state::{SharedState, StateBackend};

/// A held row: where it is and when it was.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    /// Event time (ns).
    pub time: i64,
    pub slot: u32,
    pub row: u32,
    /// The other input's watermark at which it can go.
    expires: i64,
}

/// A restored row of a slot: its key (row format), time, index in the slot and expiry.
pub(crate) struct RestoredRow {
    pub key: Vec<u8>,
    pub time: i64,
    pub row: u32,
    pub expires: i64,
}

/// A row that has gone: where it was, and whether it ever matched.
pub(crate) struct Gone {
    pub slot: u32,
    pub row: u32,
    pub matched: bool,
}

/// The rows of one join input.
pub(crate) struct JoinSide {
    prefix: &'static [u8],
    pub rows: RowSlots,
    index: HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>,
    /// Held rows by key id; a key id is reused once its key holds nothing.
    held: Vec<Vec<Held>>,
    key_of: Vec<Box<[u8]>>,
    free: Vec<u32>,
    /// (expires, key id), earliest first; one entry per held row.
    expiry: BinaryHeap<Reverse<(i64, u32)>>,
    /// Which rows of each slot matched; only for a side whose unmatched rows are emitted.
    matched: Option<HashMap<u32, Vec<bool>>>,
    matched_dirty: BTreeSet<u32>,
    /// A processing-time TTL (`table.exec.state.ttl`) for a side no watermark frees.
    idle: Option<Idle>,
}

/// Rows in the order they were held, for a processing-time TTL.
struct Idle {
    ttl_ms: u64,
    clock: Clock,
    /// (held at, key id, slot, row), oldest first.
    arrivals: VecDeque<(u64, u32, u32, u32)>,
    dropped: u64,
}

impl JoinSide {
    /// An empty side holding rows of `schema` under backend keys starting with `prefix`;
    /// `outer` when its unmatched rows are emitted.
    pub fn new(schema: SchemaRef, prefix: &'static [u8], outer: bool) -> Self {
        Self {
            prefix,
            rows: RowSlots::with_prefix(schema, prefix),
            index: HashMap::default(),
            held: Vec::new(),
            key_of: Vec::new(),
            free: Vec::new(),
            expiry: BinaryHeap::new(),
            matched: outer.then(HashMap::new),
            matched_dirty: BTreeSet::new(),
            idle: None,
        }
    }

    /// Drop rows `ttl_ms` of processing time (read from `clock`) after they were held: for a
    /// side whose rows no watermark frees (a regular join with an unbounded other input).
    pub fn set_ttl(&mut self, ttl_ms: u64, clock: Clock) {
        self.idle = Some(Idle {
            ttl_ms,
            clock,
            arrivals: VecDeque::new(),
            dropped: 0,
        });
    }

    /// Rows dropped by the TTL so far.
    pub fn dropped(&self) -> u64 {
        self.idle.as_ref().map_or(0, |i| i.dropped)
    }

    /// Take the rows held longer than the TTL; they stay readable until [`JoinSide::release`].
    pub fn drop_idle(&mut self) -> Vec<Gone> {
        let Some(idle) = self.idle.as_mut() else {
            return Vec::new();
        };
        let now = (idle.clock)();
        let mut by_key: BTreeMap<u32, BTreeSet<(u32, u32)>> = BTreeMap::new();
        while let Some(&(at, id, slot, row)) = idle.arrivals.front() {
            if at.saturating_add(idle.ttl_ms) > now {
                break;
            }
            idle.arrivals.pop_front();
            by_key.entry(id).or_default().insert((slot, row));
        }
        let mut gone = Vec::new();
        for (id, rows) in by_key {
            gone.extend(self.take_rows(id, |h| rows.contains(&(h.slot, h.row))));
        }
        if let Some(idle) = self.idle.as_mut() {
            idle.dropped += gone.len() as u64;
        }
        gone
    }

    /// Spill beyond `limit` bytes into `state`.
    pub fn attach(&mut self, state: SharedState, limit: usize) {
        self.rows.attach(state, limit);
    }

    /// The rows held under `key`.
    pub fn candidates(&self, key: Row<'_>) -> &[Held] {
        match self.index.get(key.as_ref()) {
            Some(id) => &self.held[*id as usize],
            None => &[],
        }
    }

    /// Hold `batch` (rows that may still match): row `i` has key `keys[i]`, time `times[i]`,
    /// can go at `expires[i]`, and matched already when `matched[i]`.
    pub fn hold(
        &mut self,
        batch: RecordBatch,
        keys: &[Row<'_>],
        times: &[i64],
        expires: &[i64],
        matched: &[bool],
        metrics: &JobMetrics,
    ) -> Result<()> {
        let slot = self.rows.next_slot();
        for (i, key) in keys.iter().enumerate() {
            let row = i as u32;
            self.push(*key, times[i], slot, row, expires[i]);
        }
        if let Some(m) = self.matched.as_mut() {
            m.insert(slot, matched.to_vec());
            self.matched_dirty.insert(slot);
        }
        self.rows.add(batch, metrics)?;
        Ok(())
    }

    fn push(&mut self, key: Row<'_>, time: i64, slot: u32, row: u32, expires: i64) {
        self.push_key(key.as_ref(), time, slot, row, expires);
    }

    /// Row `row` of `slot` matched a row of the other input: whether it had not before (only
    /// a side that remembers matches can tell; others say false).
    pub fn set_matched(&mut self, slot: u32, row: u32) -> bool {
        let Some(m) = self.matched.as_mut() else {
            return false;
        };
        match m.get_mut(&slot).and_then(|b| b.get_mut(row as usize)) {
            Some(bit) if !*bit => {
                *bit = true;
                self.matched_dirty.insert(slot);
                true
            }
            _ => false,
        }
    }

    /// Take every row that can go once the other input's watermark is `watermark`, in the
    /// order they were held per key; they stay readable until [`JoinSide::release`].
    pub fn expire(&mut self, watermark: i64) -> Vec<Gone> {
        let mut keys = Vec::new();
        while let Some(Reverse((at, id))) = self.expiry.peek().copied() {
            if at > watermark {
                break;
            }
            self.expiry.pop();
            keys.push(id);
        }
        keys.sort_unstable();
        keys.dedup();
        let mut gone = Vec::new();
        for id in keys {
            gone.extend(self.take_rows(id, |h| h.expires <= watermark));
        }
        gone
    }

    /// Take the rows of key `id` that `leaves` picks, with whether they matched; a key left
    /// holding nothing is forgotten (its id is reused).
    fn take_rows(&mut self, id: u32, leaves: impl Fn(&Held) -> bool) -> Vec<Gone> {
        let list = &mut self.held[id as usize];
        let matched = &self.matched;
        let mut gone = Vec::new();
        list.retain(|h| {
            if !leaves(h) {
                return true;
            }
            let was = matched
                .as_ref()
                .and_then(|m| m.get(&h.slot)?.get(h.row as usize).copied())
                .unwrap_or(true);
            gone.push(Gone {
                slot: h.slot,
                row: h.row,
                matched: was,
            });
            false
        });
        if list.is_empty() {
            let key = std::mem::take(&mut self.key_of[id as usize]);
            self.index.remove(&key);
            self.free.push(id);
        }
        gone
    }

    /// Forget rows that [`JoinSide::expire`] gave.
    pub fn release(&mut self, gone: &[Gone]) {
        for g in gone {
            self.rows.release(g.slot, g.row);
            if !self.rows.holds(g.slot) {
                if let Some(m) = self.matched.as_mut() {
                    if m.remove(&g.slot).is_some() {
                        self.matched_dirty.insert(g.slot);
                    }
                }
            }
        }
    }

    /// Whether the side records which rows matched (the outer side of an outer join).
    pub fn tracks_matches(&self) -> bool {
        self.matched.is_some()
    }

    /// Keys held.
    pub fn keys(&self) -> usize {
        self.index.len()
    }

    /// Write what changed since the last snapshot.
    pub fn snapshot(&mut self, state: &mut dyn StateBackend) -> Result<()> {
        self.rows.snapshot(state)?;
        for slot in std::mem::take(&mut self.matched_dirty) {
            let key = [self.prefix, b"m/", &slot.to_be_bytes()].concat();
            match self.matched.as_ref().and_then(|m| m.get(&slot)) {
                Some(bits) => state.put(&key, &bitmap(bits))?,
                None => state.delete(&key)?,
            }
        }
        Ok(())
    }

    /// Load the rows a snapshot wrote; `place` gives each restored slot's live rows their
    /// keys, times and expiry (as [`JoinSide::hold`] had them).
    pub fn restore(
        &mut self,
        state: &dyn StateBackend,
        mut place: impl FnMut(&Restored) -> Result<Vec<RestoredRow>>,
    ) -> Result<()> {
        let spill = self.rows.pause_spilling();
        let restored = self.rows.restore(state);
        self.rows.resume_spilling(spill);
        for r in restored? {
            for p in place(&r)? {
                self.push_key(&p.key, p.time, r.slot, p.row, p.expires);
            }
            if let Some(m) = self.matched.as_mut() {
                let key = [self.prefix, b"m/", &r.slot.to_be_bytes()].concat();
                let n = r.batch.num_rows();
                let bits = match state.get(&key)? {
                    Some(b) => unbitmap(&b, n),
                    None => vec![false; n],
                };
                m.insert(r.slot, bits);
            }
        }
        Ok(())
    }

    fn push_key(&mut self, key: &[u8], time: i64, slot: u32, row: u32, expires: i64) {
        let id = match self.index.get(key) {
            Some(id) => *id,
            None => {
                let id = self.free.pop().unwrap_or_else(|| {
                    self.held.push(Vec::new());
                    self.key_of.push(Box::default());
                    (self.held.len() - 1) as u32
                });
                self.key_of[id as usize] = key.into();
                self.index.insert(key.into(), id);
                id
            }
        };
        self.held[id as usize].push(Held {
            time,
            slot,
            row,
            expires,
        });
        match self.idle.as_mut() {
            Some(idle) => idle.arrivals.push_back(((idle.clock)(), id, slot, row)),
            None => self.expiry.push(Reverse((expires, id))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::operators::groups::key_converter;

    static NOW: AtomicU64 = AtomicU64::new(0);

    fn clock() -> u64 {
        NOW.load(Ordering::Relaxed)
    }

    #[test]
    fn a_ttl_drops_rows_held_too_long_and_their_keys() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)]));
        let mut side = JoinSide::new(schema.clone(), b"L", false);
        side.set_ttl(50, clock);
        let converter = key_converter(&[DataType::Utf8]).unwrap();
        let metrics = JobMetrics::default();
        let mut hold = |keys: &[&str]| {
            let col: ArrayRef = Arc::new(StringArray::from(keys.to_vec()));
            let rows = converter
                .convert_columns(std::slice::from_ref(&col))
                .unwrap();
            let batch = RecordBatch::try_new(schema.clone(), vec![col]).unwrap();
            let keys: Vec<_> = rows.iter().collect();
            let n = keys.len();
            side.hold(
                batch,
                &keys,
                &vec![0; n],
                &vec![i64::MAX; n],
                &vec![false; n],
                &metrics,
            )
            .unwrap();
        };
        NOW.store(0, Ordering::Relaxed);
        hold(&["a", "b"]);
        NOW.store(40, Ordering::Relaxed);
        hold(&["a"]);
        NOW.store(60, Ordering::Relaxed);
        let gone = side.drop_idle();
        assert_eq!(gone.len(), 2, "the two rows held at 0");
        side.release(&gone);
        assert_eq!(side.keys(), 1, "`b` held nothing more and went");
        assert_eq!(side.dropped(), 2);
        NOW.store(100, Ordering::Relaxed);
        let gone = side.drop_idle();
        side.release(&gone);
        assert_eq!((gone.len(), side.keys()), (1, 0));
        assert_eq!(side.rows.memory_bytes(), 0, "every batch was released");
    }
}
