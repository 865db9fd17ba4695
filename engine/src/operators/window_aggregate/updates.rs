//! The updating side of a window aggregation (allowed lateness, early firing): firing into
//! retained tables, re-emitting windows that late rows changed, rows held until their window
//! fires, and the state of all of it in checkpoints (see [`super::super::window_updates`]).

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, Int64Array, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::record_batch::RecordBatch;

use super::{key_arrays, parse_key, prefixed, ts_values, WindowAggregateOperator};
use crate::error::Result;
use crate::message::{Message, StreamBatch};
use crate::operators::groups::GroupTable;
use crate::state::{decode_columns, encode_columns, StateBackend};
use crate::window::kernels::fire_time_ns;

impl WindowAggregateOperator {
    /// Fire a window held in memory: its rows, or with updating results, the changes against
    /// what it emitted early (and keep it for late rows when lateness is allowed).
    pub(super) fn fire(
        &mut self,
        key: (i64, i64),
        mut table: GroupTable,
        out: &mut Vec<Message>,
    ) -> Result<()> {
        if !self.updates.is_updating() {
            let batch = self.emit(key, table)?;
            if batch.num_rows() > 0 {
                out.push(Message::Batch(StreamBatch::new(batch)));
            }
            return Ok(());
        }
        if self.updates.config.allowed_lateness_ns > 0 {
            self.late_dirty.insert(key);
            let rows = self.current(key, &mut table)?;
            self.updates.emit(key, rows, out)?;
            self.updates.fired(key, Some(table));
        } else {
            let rows = self.emit(key, table)?;
            self.updates.emit(key, rows, out)?;
            self.updates.fired(key, None);
        }
        Ok(())
    }

    /// A window's rows as they stand, leaving its table usable.
    fn current(&self, key: (i64, i64), table: &mut GroupTable) -> Result<RecordBatch> {
        let cols = table.snapshot(&self.converter)?;
        let copy = GroupTable::restore(&self.converter, self.aggs.clone(), &cols, self.n_keys)?;
        self.emit(key, copy)
    }

    /// Re-emit windows that late rows changed.
    fn refire(&mut self, out: &mut Vec<Message>) -> Result<()> {
        for key in self.updates.take_refire() {
            if let Some(mut t) = self.updates.retained.remove(&key) {
                let rows = self.current(key, &mut t)?;
                self.updates.retained.insert(key, t);
                self.updates.emit(key, rows, out)?;
            }
        }
        Ok(())
    }

    /// Re-emit windows that late rows changed, and open windows when an early firing is due.
    pub(super) fn flush_updates(&mut self, out: &mut Vec<Message>) -> Result<()> {
        self.refire(out)?;
        if !self.updates.early_due() {
            return Ok(());
        }
        for key in std::mem::take(&mut self.updates.early_dirty) {
            if let Some(mut t) = self.windows.remove(&key) {
                let rows = self.current(key, &mut t)?;
                self.windows.insert(key, t);
                self.updates.emit(key, rows, out)?;
            }
        }
        Ok(())
    }

    pub(super) fn expire_retained(&mut self) {
        let (time, wm) = (&self.time, self.watermark);
        let lateness = self.updates.config.allowed_lateness_ns;
        let gone = self
            .updates
            .expire(|k| fire_time_ns(k.0, time).saturating_add(lateness) <= wm);
        self.late_dirty.extend(gone);
    }

    /// Retained windows that changed, and every window's last emitted rows.
    pub(super) fn snapshot_updates(&mut self, state: &mut dyn StateBackend) -> Result<()> {
        for key in std::mem::take(&mut self.late_dirty) {
            let k = prefixed(b"f/", key);
            match self.updates.retained.get_mut(&key) {
                Some(t) => state.put(&k, &encode_columns(&t.snapshot(&self.converter)?)?)?,
                None => state.delete(&k)?,
            }
        }
        state.delete_prefix(b"e/")?;
        for (key, rows) in self.updates.emitted() {
            state.put(&prefixed(b"e/", *key), &encode_columns(rows.columns())?)?;
        }
        state.delete_prefix(b"h/")?;
        for (key, batches) in self.updates.held() {
            let rows = concat_batches(&self.input_schema, batches)?;
            // The keys first, so that a rescale splits held rows by key.
            let mut cols = key_arrays(&self.key_exprs, &rows)?;
            cols.extend(rows.columns().iter().cloned());
            state.put(&prefixed(b"h/", *key), &encode_columns(&cols)?)?;
        }
        Ok(())
    }

    pub(super) fn restore_updates(&mut self, state: &dyn StateBackend) -> Result<()> {
        for (k, v) in state.scan(b"f/")? {
            let cols = decode_columns(&v)?;
            let t = GroupTable::restore(&self.converter, self.aggs.clone(), &cols, self.n_keys)?;
            self.updates.retained.insert(parse_key(&k)?, t);
        }
        for (k, v) in state.scan(b"e/")? {
            let rows = RecordBatch::try_new(self.schema.clone(), decode_columns(&v)?)?;
            self.updates.restore_emitted(parse_key(&k)?, rows);
        }
        for (k, v) in state.scan(b"h/")? {
            let cols = decode_columns(&v)?.split_off(self.n_keys);
            let rows = RecordBatch::try_new(self.input_schema.clone(), cols)?;
            self.updates.hold(parse_key(&k)?, rows);
        }
        Ok(())
    }

    /// Hold the rows of `b` that are late by their row watermarks `wms` for a window the
    /// operator has not fired yet (`window_updates`); the other rows, to apply now.
    pub(super) fn hold_early_late(
        &mut self,
        b: &RecordBatch,
        wms: &Int64Array,
    ) -> Result<RecordBatch> {
        let n = b.num_rows();
        let ends = ts_values(&self.group_exprs[self.end].evaluate(b)?.into_array(n)?)?;
        let (time, wm) = (&self.time, self.watermark);
        let waits = |i: usize| {
            let fires = fire_time_ns(ends.value(i), time);
            fires > wm && wms.is_valid(i) && fires <= wms.value(i)
        };
        if !(0..n).any(waits) {
            return Ok(b.clone());
        }
        let starts = ts_values(&self.group_exprs[self.start].evaluate(b)?.into_array(n)?)?;
        let mut held: BTreeMap<(i64, i64), Vec<u32>> = BTreeMap::new();
        let mut now = Vec::new();
        for i in 0..n {
            match waits(i) {
                true => held.entry((ends.value(i), starts.value(i))).or_default(),
                false => &mut now,
            }
            .push(i as u32);
        }
        for (key, rows) in held {
            let rows = take_record_batch(b, &UInt32Array::from(rows))?;
            self.updates.hold(key, rows);
        }
        Ok(take_record_batch(b, &UInt32Array::from(now))?)
    }

    /// Apply the rows held for window `key`, which has fired (as late rows), and re-emit it.
    pub(super) fn release_held(&mut self, key: (i64, i64), out: &mut Vec<Message>) -> Result<()> {
        let held = self.updates.take_held(key);
        if held.is_empty() {
            return Ok(());
        }
        self.late_dirty.insert(key);
        for b in held {
            self.apply_rows(&b)?;
        }
        self.refire(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::DataType;
    use weir_planner::stream_plan::WindowAggregateNode;

    use super::*;
    use crate::observe::metrics::JobMetrics;
    use crate::operator::Operator;
    use crate::state::MemoryBackend;

    const S: i64 = 1_000_000_000;

    fn node() -> WindowAggregateNode {
        let mut node = crate::operators::minute_counts();
        // 'window.allowed-lateness' = '1 min'.
        node.emit.allowed_lateness_ns = 60 * S;
        node
    }

    fn operator(node: &WindowAggregateNode) -> WindowAggregateOperator {
        let time = crate::runtime::job::time_context(&node.time).unwrap();
        WindowAggregateOperator::new(node, time, Arc::new(JobMetrics::default())).unwrap()
    }

    /// Rows of key `a` in window [0 s, 60 s) at `secs`, with row watermarks `wms` (s).
    fn rows(node: &WindowAggregateNode, secs: &[i64], wms: &[i64]) -> StreamBatch {
        let schema = node.input.schema();
        let n = secs.len();
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                let ms = |v: Vec<i64>| Arc::new(TimestampMillisecondArray::from(v)) as ArrayRef;
                match (f.name().as_str(), f.data_type()) {
                    (_, DataType::Utf8) => Arc::new(StringArray::from(vec!["a"; n])),
                    ("window_start", _) => ms(vec![0; n]),
                    ("window_end", _) => ms(vec![60_000; n]),
                    ("window_time", _) => ms(vec![59_999; n]),
                    _ => ms(secs.iter().map(|s| s * 1000).collect()),
                }
            })
            .collect();
        let b = RecordBatch::try_new(schema, cols).unwrap();
        let wms = Int64Array::from_iter_values(wms.iter().map(|w| w * S));
        StreamBatch::with_row_watermarks(b, wms)
    }

    /// (kind, n) of each output row.
    fn changes(out: &[Message]) -> Vec<(i8, i64)> {
        let mut all = Vec::new();
        for m in out {
            let Message::Batch(b) = m else { continue };
            let n = b.batch.column(b.batch.num_columns() - 1);
            let n = n.as_any().downcast_ref::<Int64Array>().expect("count");
            for i in 0..b.num_rows() {
                let kind = b.kinds.as_ref().map_or(0, |k| k[i]);
                all.push((kind, n.value(i)));
            }
        }
        all
    }

    #[test]
    fn a_row_late_by_its_row_watermark_waits_through_a_checkpoint_and_updates_the_window() {
        let node = node();
        let mut op = operator(&node);
        let mut out = Vec::new();
        // At 10 s, judged at 10 s: in the window. At 30 s, judged at 90 s: the window had
        // fired where the row was read, though no watermark has fired it here yet.
        op.process_batch(rows(&node, &[10, 30], &[10, 90]), &mut out)
            .unwrap();
        assert!(out.is_empty(), "{out:?}");
        let mut state = MemoryBackend::default();
        op.snapshot(&mut state).unwrap();
        let mut op = operator(&node);
        op.restore(&state).unwrap();
        op.on_watermark(90 * S, &mut out).unwrap();
        // The first firing without the late row, then the update it makes.
        assert_eq!(changes(&out), vec![(0, 1), (1, 1), (2, 2)]);
        assert_eq!(op.counts().late_updates, Some(1));
    }
}
