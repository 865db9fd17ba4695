//! The one message type that flows between operators.
//!
//! Batches, watermarks, checkpoint barriers and the end of a stream all travel in a single
//! [`Message`] enum on bounded channels, so every operator sees them in one order. Watermarks are
//! carried as `i64` nanoseconds since the epoch (`WATERMARK_MAX` is +infinity, `WATERMARK_MIN`
//! means "no watermark yet").

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::array::{Array, Int64Array, Int8Array};
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::compute::filter;
use datafusion::arrow::record_batch::RecordBatch;

/// No watermark has been seen yet.
pub const WATERMARK_MIN: i64 = i64::MIN;
/// The final watermark of a bounded stream: every window fires.
pub const WATERMARK_MAX: i64 = i64::MAX;

/// A record batch plus, when known, the watermark that was in force *before* each row.
///
/// Sources compute the per-row watermark with a running maximum so that results never depend
/// on how rows were grouped into batches (the determinism rule in `docs/semantics.md`). Stateless
/// operators keep the column aligned with the rows; stateful operators judge lateness by it.
#[derive(Debug, Clone)]
pub struct StreamBatch {
    /// The rows.
    pub batch: RecordBatch,
    /// Watermark (ns) in force before each row, or `None` when the operator watermark applies.
    pub row_watermarks: Option<Int64Array>,
    /// The changelog kind of each row ([`crate::changelog::RowKind`] as `i8`); `None` means every
    /// row is an insert (append-only streams never carry kinds).
    pub kinds: Option<ScalarBuffer<i8>>,
    /// Wall clock (ns since the epoch) when the source read the rows this batch came from; 0
    /// when unknown. Operators need not set it: the task running them stamps their output with
    /// the latest ingestion time of their input (end-to-end latency metrics).
    pub ingest_ns: i64,
}

impl StreamBatch {
    /// Rows without per-row watermarks or kinds (all inserts).
    pub fn new(batch: RecordBatch) -> Self {
        Self {
            batch,
            row_watermarks: None,
            kinds: None,
            ingest_ns: 0,
        }
    }

    /// The same rows with changelog kinds.
    pub fn with_kinds(mut self, kinds: impl Into<ScalarBuffer<i8>>) -> Self {
        let kinds = kinds.into();
        debug_assert_eq!(self.batch.num_rows(), kinds.len());
        self.kinds = Some(kinds);
        self
    }

    /// Rows with the watermark (ns) in force before each row; `wm` has one value per row.
    pub fn with_row_watermarks(batch: RecordBatch, wm: Int64Array) -> Self {
        debug_assert_eq!(batch.num_rows(), wm.len());
        Self {
            batch,
            row_watermarks: Some(wm),
            kinds: None,
            ingest_ns: 0,
        }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// The rows at `idx`, in that order, with their watermarks and kinds.
    pub fn take(
        &self,
        idx: &datafusion::arrow::array::UInt32Array,
    ) -> datafusion::arrow::error::Result<StreamBatch> {
        use datafusion::arrow::compute::take;
        let cols = self
            .batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), idx, None))
            .collect::<datafusion::arrow::error::Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(self.batch.schema(), cols)?;
        let row_watermarks = match &self.row_watermarks {
            Some(w) => take(w, idx, None)?
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned(),
            None => None,
        };
        let kinds = self
            .kinds
            .as_ref()
            .map(|k| ScalarBuffer::from_iter(idx.values().iter().map(|i| k[*i as usize])));
        Ok(StreamBatch {
            batch,
            row_watermarks,
            kinds,
            ingest_ns: self.ingest_ns,
        })
    }

    /// Keep the rows where `mask` is true, in both the batch and the watermark column.
    pub fn filter(&self, mask: &BooleanArray) -> datafusion::arrow::error::Result<StreamBatch> {
        let batch = datafusion::arrow::compute::filter_record_batch(&self.batch, mask)?;
        let row_watermarks = match &self.row_watermarks {
            Some(wm) => {
                let f = filter(wm, mask)?;
                Some(
                    f.as_any()
                        .downcast_ref::<Int64Array>()
                        .cloned()
                        .expect("int64"),
                )
            }
            None => None,
        };
        let kinds = match &self.kinds {
            Some(k) => Some(
                filter(&Int8Array::new(k.clone(), None), mask)?
                    .as_any()
                    .downcast_ref::<Int8Array>()
                    .expect("int8")
                    .values()
                    .clone(),
            ),
            None => None,
        };
        Ok(StreamBatch {
            batch,
            row_watermarks,
            kinds,
            ingest_ns: self.ingest_ns,
        })
    }
}

/// A checkpoint barrier (aligned, in-band).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    /// The checkpoint this barrier belongs to.
    pub checkpoint_id: u64,
}

/// Everything that travels between operators.
#[derive(Debug, Clone)]
pub enum Message {
    /// A batch of rows.
    Batch(StreamBatch),
    /// Event time has reached this value (ns); it never goes backwards on one channel.
    Watermark(i64),
    /// A checkpoint barrier: everything before it belongs to that checkpoint.
    Barrier(Barrier),
    /// The input has been quiet for its source's `'scan.watermark.idle-timeout'`: it holds no
    /// watermark back until its next batch or watermark (see `runtime/idleness.rs`).
    Idle,
    /// The input is finished; no message follows.
    EndOfStream,
}
