//! The order in which a session window sees its rows: by their row watermarks, whatever order
//! the channels deliver them in.
//!
//! A session is decided row by row (a row first fires its key's sessions that the watermark at
//! that row has passed, then joins or opens one), so the order of one key's rows matters. Rows
//! of one key can reach a subtask from several source subtasks (a file read in segments, Kafka
//! partitions), in an order that depends on timing. So rows wait here until the operator's
//! watermark passes their row watermark: by then no row with a smaller one can still come
//! (every later row's is at least the watermark), and the due rows go on sorted by (row
//! watermark, event time): the order of a single reader, ties broken by time, the same at any
//! parallelism, batching or timing. Sessions fire on watermarks, so waiting delays no result.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, UInt32Array};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, lexsort_to_indices};
use datafusion::arrow::compute::{take, take_record_batch, SortColumn};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::state::{decode_columns, encode_columns};

/// Rows waiting for the watermark, each with its row watermark.
#[derive(Debug, Default)]
pub(crate) struct PendingRows {
    waiting: Vec<(RecordBatch, Int64Array)>,
}

/// Due rows in order, with their row watermarks.
pub(crate) struct DueRows {
    pub batch: RecordBatch,
    pub watermarks: Int64Array,
}

impl PendingRows {
    /// Hold `batch`, whose rows carry `watermarks`.
    pub(crate) fn push(&mut self, batch: RecordBatch, watermarks: Int64Array) {
        if batch.num_rows() > 0 {
            self.waiting.push((batch, watermarks));
        }
    }

    /// Rows held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.iter().map(|(b, _)| b.num_rows()).sum()
    }

    /// Bytes of the held batches.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.waiting
            .iter()
            .map(|(b, w)| b.get_array_memory_size() + w.get_array_memory_size())
            .sum()
    }

    /// The rows whose row watermark is below `wm`, sorted by (row watermark, `times`), taken
    /// out; `times` gives a batch's event times.
    pub(crate) fn due(
        &mut self,
        wm: i64,
        schema: &SchemaRef,
        times: impl Fn(&RecordBatch) -> Result<Int64Array>,
    ) -> Result<Option<DueRows>> {
        let (mut due, mut due_wm, mut kept) = (Vec::new(), Vec::new(), Vec::new());
        for (b, w) in std::mem::take(&mut self.waiting) {
            let is_due = w.iter().map(|v| Some(v.is_some_and(|v| v < wm)));
            let mask = datafusion::arrow::array::BooleanArray::from_iter(is_due);
            match mask.true_count() {
                0 => kept.push((b, w)),
                n if n == b.num_rows() => {
                    due.push(b);
                    due_wm.push(w);
                }
                _ => {
                    let not = datafusion::arrow::compute::not(&mask)?;
                    due.push(filter_record_batch(&b, &mask)?);
                    due_wm.push(filtered(&w, &mask)?);
                    kept.push((filter_record_batch(&b, &not)?, filtered(&w, &not)?));
                }
            }
        }
        self.waiting = kept;
        if due.is_empty() {
            return Ok(None);
        }
        let batch = concat_batches(schema, &due)?;
        let wms: Vec<&dyn Array> = due_wm.iter().map(|w| w as &dyn Array).collect();
        let wms = datafusion::arrow::compute::concat(&wms)?;
        let t: ArrayRef = Arc::new(times(&batch)?);
        let order = lexsort_to_indices(
            &[
                SortColumn {
                    values: wms.clone(),
                    options: None,
                },
                SortColumn {
                    values: t,
                    options: None,
                },
            ],
            None,
        )?;
        Ok(Some(sorted(&batch, &wms, &order)?))
    }

    /// The held rows as Arrow columns, the row watermarks last (for a checkpoint).
    pub(crate) fn encode(&self, schema: &SchemaRef) -> Result<Vec<u8>> {
        let batches: Vec<&RecordBatch> = self.waiting.iter().map(|(b, _)| b).collect();
        let mut cols = concat_batches(schema, batches)?.columns().to_vec();
        let wms: Vec<&dyn Array> = self.waiting.iter().map(|(_, w)| w as &dyn Array).collect();
        cols.push(match wms.is_empty() {
            true => Arc::new(Int64Array::from(Vec::<i64>::new())),
            false => datafusion::arrow::compute::concat(&wms)?,
        });
        encode_columns(&cols)
    }

    /// Hold again the rows [`PendingRows::encode`] wrote.
    pub(crate) fn restore(&mut self, bytes: &[u8], schema: &SchemaRef) -> Result<()> {
        let mut cols = decode_columns(bytes)?;
        let wms = cols.pop().ok_or_else(|| {
            crate::error::EngineError::State("waiting session rows without watermarks".into())
        })?;
        let wms = wms
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned()
            .ok_or_else(|| crate::error::EngineError::State("bad row watermarks".into()))?;
        self.push(RecordBatch::try_new(schema.clone(), cols)?, wms);
        Ok(())
    }
}

fn filtered(w: &Int64Array, mask: &datafusion::arrow::array::BooleanArray) -> Result<Int64Array> {
    let f = datafusion::arrow::compute::filter(w, mask)?;
    Ok(f.as_any()
        .downcast_ref::<Int64Array>()
        .expect("int64")
        .clone())
}

fn sorted(batch: &RecordBatch, wms: &ArrayRef, order: &UInt32Array) -> Result<DueRows> {
    let w = take(wms.as_ref(), order, None)?;
    Ok(DueRows {
        batch: take_record_batch(batch, order)?,
        watermarks: w
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("int64")
            .clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch(times: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(times.to_vec()))]).unwrap()
    }

    fn times(b: &RecordBatch) -> Result<Int64Array> {
        Ok(b.column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone())
    }

    #[test]
    fn rows_wait_for_the_watermark_and_leave_in_row_watermark_then_time_order() {
        let schema = batch(&[]).schema();
        let mut p = PendingRows::default();
        // A later segment's rows arrive first.
        p.push(batch(&[50, 40]), Int64Array::from(vec![20, 20]));
        p.push(batch(&[12, 9, 30]), Int64Array::from(vec![5, 10, 20]));
        assert!(p.due(5, &schema, times).unwrap().is_none(), "none below 5");
        let due = p.due(20, &schema, times).unwrap().unwrap();
        assert_eq!(times(&due.batch).unwrap().values().to_vec(), vec![12, 9]);
        assert_eq!(due.watermarks.values().to_vec(), vec![5, 10]);
        assert_eq!(p.len(), 3, "rows at the watermark itself still wait");
        let bytes = p.encode(&schema).unwrap();
        let mut again = PendingRows::default();
        again.restore(&bytes, &schema).unwrap();
        let due = again.due(i64::MAX, &schema, times).unwrap().unwrap();
        assert_eq!(
            times(&due.batch).unwrap().values().to_vec(),
            vec![30, 40, 50]
        );
    }
}
