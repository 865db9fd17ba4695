//! Rows an operator holds, kept batch by batch ("slots"): the rows session windows hold until
//! their session fires, a join's rows until no row of the other input can match them, a
//! temporal join's versions.
//!
//! Each input batch's kept rows form one slot; a row leaves its slot when the operator
//! releases it, and a slot goes when its last row has left.
//!
//! Checkpoints are incremental: a slot's rows are written once (the first checkpoint after it
//! arrived, or when it is spilled), and afterwards only which of its rows have left (a bitmap);
//! a slot whose rows are all gone is deleted. So a checkpoint costs the rows that arrived and
//! the slots that changed since the last one, not the state size.
//!
//! Beyond the job's memory limit (`state.memory-limit`, checkpointing jobs only) the oldest
//! slots move to the operator's RocksDB and are read back when their rows are gathered.
//! Several stores can share one backend, each under its own key prefix:
//!
//! ```text
//! <prefix> b/ <slot u32 BE>   the slot's rows (Arrow IPC, the operator's input columns)
//! <prefix> r/ <slot u32 BE>   bitmap of the slot's rows that have left (absent: none has)
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{EngineError, Result};
use crate::observe::metrics::JobMetrics;
use crate::state::{decode_columns, encode_columns, SharedState, StateBackend};

const ROWS: &[u8] = b"b/";
const LEFT: &[u8] = b"r/";

/// One input batch's kept rows.
struct Slot {
    /// The rows; `None` while spilled (they are under `b/<slot>` in the backend).
    batch: Option<RecordBatch>,
    /// Which rows have left (their session fired).
    left: Vec<bool>,
    /// Rows still held.
    live: usize,
    /// `b/<slot>` is in the backend.
    stored: bool,
    /// Memory the rows take while in memory.
    bytes: usize,
}

/// Where spilled slots go.
pub(crate) struct SpillTo {
    state: SharedState,
    limit: usize,
}

/// A slot's rows as a restore finds them: re-admit `live` of `batch`.
pub(crate) struct Restored {
    pub slot: u32,
    pub batch: RecordBatch,
    pub live: Vec<u32>,
}

/// The rows an operator holds, by slot.
pub(crate) struct RowSlots {
    schema: SchemaRef,
    /// Put before every key, so several stores can share one backend (a join's two sides).
    prefix: &'static [u8],
    slots: HashMap<u32, Slot>,
    next_slot: u32,
    /// Slots whose stored form is behind memory (new, rows left, or gone).
    dirty: BTreeSet<u32>,
    in_memory: usize,
    spill: Option<SpillTo>,
}

impl RowSlots {
    /// An empty store for rows of `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        Self::with_prefix(schema, b"")
    }

    /// An empty store whose keys in the backend start with `prefix`.
    pub fn with_prefix(schema: SchemaRef, prefix: &'static [u8]) -> Self {
        Self {
            schema,
            prefix,
            slots: HashMap::new(),
            next_slot: 0,
            dirty: BTreeSet::new(),
            in_memory: 0,
            spill: None,
        }
    }

    /// Spill to `state` beyond `limit` bytes of buffered rows.
    pub fn attach(&mut self, state: SharedState, limit: usize) {
        self.spill = Some(SpillTo { state, limit });
    }

    /// Stop spilling until [`RowSlots::resume_spilling`]: while a restore holds the state
    /// backend's lock, spilling (which takes it) must not happen.
    pub fn pause_spilling(&mut self) -> Option<SpillTo> {
        self.spill.take()
    }

    /// Spill again, to what [`RowSlots::pause_spilling`] returned.
    pub fn resume_spilling(&mut self, spill: Option<SpillTo>) {
        self.spill = spill;
    }

    /// The id the next [`RowSlots::add`] gives its batch.
    pub fn next_slot(&self) -> u32 {
        self.next_slot
    }

    /// Hold `batch` (every row of it) as a new slot; spills the oldest slots when over the limit.
    pub fn add(&mut self, batch: RecordBatch, metrics: &JobMetrics) -> Result<u32> {
        let slot = self.next_slot;
        self.next_slot = self.next_slot.wrapping_add(1);
        self.insert(slot, batch, false);
        self.dirty.insert(slot);
        self.enforce_limit(metrics)?;
        Ok(slot)
    }

    fn insert(&mut self, slot: u32, batch: RecordBatch, stored: bool) {
        let bytes = batch.get_array_memory_size();
        self.in_memory += bytes;
        let n = batch.num_rows();
        self.slots.insert(
            slot,
            Slot {
                batch: Some(batch),
                left: vec![false; n],
                live: n,
                stored,
                bytes,
            },
        );
    }

    /// Row `row` of `slot` has left (its session fired).
    pub fn release(&mut self, slot: u32, row: u32) {
        let Some(s) = self.slots.get_mut(&slot) else {
            return;
        };
        if let Some(left) = s.left.get_mut(row as usize).filter(|l| !**l) {
            *left = true;
            s.live -= 1;
            self.dirty.insert(slot);
        }
        if s.live == 0 {
            if s.batch.is_some() {
                self.in_memory -= s.bytes;
            }
            self.slots.remove(&slot);
        }
    }

    /// Over the memory limit: move the oldest in-memory slots to the backend.
    fn enforce_limit(&mut self, metrics: &JobMetrics) -> Result<()> {
        let Some(sp) = &self.spill else { return Ok(()) };
        if self.in_memory <= sp.limit {
            return Ok(());
        }
        let mut ids: Vec<u32> = self
            .slots
            .iter()
            .filter(|(_, s)| s.batch.is_some())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let mut state = sp.state.lock().expect("state lock");
        for id in ids {
            if self.in_memory <= sp.limit {
                break;
            }
            let s = self.slots.get_mut(&id).expect("listed");
            let batch = s.batch.take().expect("in memory");
            if !s.stored {
                state.put(
                    &slot_key(self.prefix, ROWS, id),
                    &encode_columns(batch.columns())?,
                )?;
                s.stored = true;
            }
            self.in_memory -= s.bytes;
            JobMetrics::add(&metrics.spilled_windows, 1);
        }
        Ok(())
    }

    /// The rows `picks` name (slot, row), in that order, in one batch; spilled slots are read
    /// back from the backend.
    pub fn gather(&self, picks: &[(u32, u32)]) -> Result<RecordBatch> {
        if picks.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        let mut at: BTreeMap<u32, usize> = BTreeMap::new();
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut idx = Vec::with_capacity(picks.len());
        for &(slot, row) in picks {
            let i = match at.get(&slot) {
                Some(i) => *i,
                None => {
                    batches.push(self.slot_batch(slot)?);
                    at.insert(slot, batches.len() - 1);
                    batches.len() - 1
                }
            };
            idx.push((i, row as usize));
        }
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        Ok(interleave_record_batch(&refs, &idx)?)
    }

    fn slot_batch(&self, slot: u32) -> Result<RecordBatch> {
        let s = self.slots.get(&slot).ok_or_else(|| missing(slot))?;
        if let Some(b) = &s.batch {
            return Ok(b.clone());
        }
        let sp = self.spill.as_ref().ok_or_else(|| missing(slot))?;
        let bytes = sp
            .state
            .lock()
            .expect("state lock")
            .get(&slot_key(self.prefix, ROWS, slot))?
            .ok_or_else(|| missing(slot))?;
        self.decode(&bytes)
    }

    fn decode(&self, bytes: &[u8]) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(
            self.schema.clone(),
            decode_columns(bytes)?,
        )?)
    }

    /// Write what changed since the last snapshot: new slots' rows, which rows left, gone slots.
    pub fn snapshot(&mut self, state: &mut dyn StateBackend) -> Result<()> {
        for id in std::mem::take(&mut self.dirty) {
            let Some(s) = self.slots.get_mut(&id) else {
                state.delete(&slot_key(self.prefix, ROWS, id))?;
                state.delete(&slot_key(self.prefix, LEFT, id))?;
                continue;
            };
            if !s.stored {
                let batch = s.batch.as_ref().expect("an unstored slot is in memory");
                state.put(
                    &slot_key(self.prefix, ROWS, id),
                    &encode_columns(batch.columns())?,
                )?;
                s.stored = true;
            }
            if s.live < s.left.len() {
                state.put(&slot_key(self.prefix, LEFT, id), &bitmap(&s.left))?;
            }
        }
        Ok(())
    }

    /// Load the slots a snapshot wrote; returns each with the rows still held, in slot order.
    /// Slots beyond the memory limit are left in the backend (spilled), as they were.
    pub fn restore(&mut self, state: &dyn StateBackend) -> Result<Vec<Restored>> {
        let mut out = Vec::new();
        for (k, v) in state.scan(&[self.prefix, ROWS].concat())? {
            let slot = parse_slot(&k[self.prefix.len()..])?;
            let batch = self.decode(&v)?;
            let left = match state.get(&slot_key(self.prefix, LEFT, slot))? {
                Some(bits) => unbitmap(&bits, batch.num_rows()),
                None => vec![false; batch.num_rows()],
            };
            let live: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|i| !left[*i as usize])
                .collect();
            self.insert(slot, batch.clone(), true);
            let over = self
                .spill
                .as_ref()
                .is_some_and(|sp| self.in_memory > sp.limit);
            let s = self.slots.get_mut(&slot).expect("inserted");
            s.live = live.len();
            s.left = left;
            if over {
                // Beyond the limit the restored rows stay where they are, in the backend.
                s.batch = None;
                self.in_memory -= s.bytes;
            }
            self.next_slot = self.next_slot.max(slot.wrapping_add(1));
            out.push(Restored { slot, batch, live });
        }
        Ok(out)
    }

    /// Whether `slot` still holds rows.
    pub fn holds(&self, slot: u32) -> bool {
        self.slots.contains_key(&slot)
    }

    /// Bytes of rows held in memory.
    pub fn memory_bytes(&self) -> usize {
        self.in_memory
    }

    /// Slots held, in memory or spilled.
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.slots.len()
    }
}

fn missing(slot: u32) -> EngineError {
    EngineError::State(format!("held rows of slot {slot} are missing"))
}

/// The backend key of `slot` under `kind` (rows or which rows left), after the store's prefix.
fn slot_key(prefix: &[u8], kind: &[u8], slot: u32) -> Vec<u8> {
    [prefix, kind, &slot.to_be_bytes()].concat()
}

fn parse_slot(key: &[u8]) -> Result<u32> {
    key.get(2..6)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| EngineError::State("bad held rows key".into()))
}

pub(crate) fn bitmap(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
        out[i / 8] |= 1 << (i % 8);
    }
    out
}

pub(crate) fn unbitmap(bytes: &[u8], n: usize) -> Vec<bool> {
    (0..n)
        .map(|i| bytes.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryBackend;
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::{Arc, Mutex};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]))
    }

    fn batch(values: &[i64]) -> RecordBatch {
        let col = Arc::new(Int64Array::from(values.to_vec()));
        RecordBatch::try_new(schema(), vec![col]).unwrap()
    }

    fn values(b: &RecordBatch) -> Vec<i64> {
        let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        (0..a.len()).map(|i| a.value(i)).collect()
    }

    #[test]
    fn a_checkpoint_writes_new_slots_once_then_only_which_rows_left() {
        let metrics = JobMetrics::default();
        let mut rows = RowSlots::new(schema());
        let mut state = MemoryBackend::default();
        let a = rows.add(batch(&[1, 2, 3]), &metrics).unwrap();
        rows.snapshot(&mut state).unwrap();
        assert!(state.get(&slot_key(b"", ROWS, a)).unwrap().is_some());
        state.delete(&slot_key(b"", ROWS, a)).unwrap();
        rows.release(a, 1);
        rows.snapshot(&mut state).unwrap();
        // The rows were not written again; only the bitmap of rows that left.
        assert!(state.get(&slot_key(b"", ROWS, a)).unwrap().is_none());
        assert_eq!(
            state.get(&slot_key(b"", LEFT, a)).unwrap(),
            Some(vec![0b010])
        );
        rows.release(a, 0);
        rows.release(a, 2);
        rows.snapshot(&mut state).unwrap();
        assert!(
            state.scan(b"").unwrap().is_empty(),
            "a slot with no rows is gone"
        );
    }

    #[test]
    fn restore_gives_back_the_rows_still_held() {
        let metrics = JobMetrics::default();
        let mut rows = RowSlots::new(schema());
        let mut state = MemoryBackend::default();
        let a = rows.add(batch(&[1, 2, 3]), &metrics).unwrap();
        let b = rows.add(batch(&[4]), &metrics).unwrap();
        rows.release(a, 0);
        rows.snapshot(&mut state).unwrap();
        let mut again = RowSlots::new(schema());
        let restored = again.restore(&state).unwrap();
        let live: Vec<(u32, Vec<u32>)> =
            restored.iter().map(|r| (r.slot, r.live.clone())).collect();
        assert_eq!(live, vec![(a, vec![1, 2]), (b, vec![0])]);
        assert_eq!(
            values(&again.gather(&[(b, 0), (a, 2)]).unwrap()),
            vec![4, 3]
        );
        assert!(again.next_slot() > b);
    }

    #[test]
    fn beyond_the_limit_the_oldest_slots_spill_and_are_read_back() {
        let metrics = JobMetrics::default();
        let mut rows = RowSlots::new(schema());
        let shared: SharedState = Arc::new(Mutex::new(Box::new(MemoryBackend::default())));
        rows.attach(shared.clone(), 1);
        let a = rows.add(batch(&[1, 2]), &metrics).unwrap();
        let b = rows.add(batch(&[3]), &metrics).unwrap();
        assert_eq!(rows.memory_bytes(), 0, "every slot is spilled");
        assert_eq!(JobMetrics::get(&metrics.spilled_windows), 2);
        assert_eq!(values(&rows.gather(&[(b, 0), (a, 1)]).unwrap()), vec![3, 2]);
        let mut again = RowSlots::new(schema());
        again.attach(shared.clone(), 1);
        let restored = again.restore(&**shared.lock().unwrap()).unwrap();
        assert_eq!(restored.len(), 2);
        assert_eq!(
            again.memory_bytes(),
            0,
            "restored beyond the limit: still spilled"
        );
        assert_eq!(again.slots(), 2);
        assert_eq!(values(&again.gather(&[(a, 0)]).unwrap()), vec![1]);
        assert_eq!(again.gather(&[]).unwrap().num_rows(), 0, "nothing picked");
        // A spilled slot was written when it spilled; the snapshot does not write it again.
        let mut state = shared.lock().unwrap();
        state.delete(&slot_key(b"", ROWS, a)).unwrap();
        rows.snapshot(&mut **state).unwrap();
        assert!(state.get(&slot_key(b"", ROWS, a)).unwrap().is_none());
    }
}
