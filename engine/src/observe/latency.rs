//! End-to-end latency: how long after a row's event time, and after the source read it, the row
//! became visible at the sink (written, or committed for a sink that holds rows until a
//! checkpoint completes).
//!
//! Nothing is observed per row into shared state. A sink task folds each batch's event times
//! into [`PendingTimes`], a count per cell of a millisecond grid whose cells widen when they
//! would exceed [`MAX_CELLS`] (so memory stays bounded however far apart the event times are),
//! and turns the cells into histogram observations when the rows become visible: immediately
//! for an at-least-once sink, at commit for a two-phase-commit sink. The histograms live in
//! [`crate::observe::metrics::JobMetrics::latency`], one per sink and basis, and are served as
//! `weir_end_to_end_latency_seconds` (event time) and `weir_ingestion_latency_seconds`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::compute::{cast, max, min};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use crate::message::StreamBatch;
use crate::observe::metrics::JobMetrics;

/// Upper bounds (seconds) of the latency histogram buckets; a last bucket takes the rest.
pub const BUCKETS: [f64; 17] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0, 86400.0,
];

/// Cells a [`PendingTimes`] holds before it widens them.
pub const MAX_CELLS: usize = 4096;

/// Rows of a batch folded one by one; a larger batch is sampled down to about this many.
const SAMPLES: usize = 256;

/// Cells one batch is folded into before merging (a batch spanning more time gets wider cells,
/// at most 1/64 of its event-time spread: fewer cells keep the merge off the hot path).
const BATCH_CELLS: i64 = 64;

/// What a latency is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Basis {
    /// The row's event time (its rowtime column, or the window end of a window result).
    EventTime,
    /// The wall clock when the source read the row (for a window result: the input that
    /// closed the window).
    Ingestion,
}

/// A latency histogram with [`BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last one is above every bound.
    pub counts: [u64; BUCKETS.len() + 1],
    /// Sum of the observed latencies (seconds).
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl LatencyHistogram {
    /// Add `n` observations of `secs`.
    pub fn observe_n(&mut self, secs: f64, n: u64) {
        let i = BUCKETS.partition_point(|b| *b < secs);
        self.counts[i] += n;
        self.sum += secs * n as f64;
        self.count += n;
    }

    /// The smallest bucket bound below which at least `q` of the observations lie (`f64::MAX`
    /// when that is the last bucket, `None` when empty).
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let want = (q * self.count as f64).ceil() as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want.max(1) {
                return Some(BUCKETS.get(i).copied().unwrap_or(f64::MAX));
            }
        }
        Some(f64::MAX)
    }
}

/// Times (ms since the epoch) of rows not yet visible, counted per grid cell.
#[derive(Debug, Default, Clone)]
pub struct PendingTimes {
    /// A cell covers `1 << shift` milliseconds.
    shift: u32,
    cells: HashMap<i64, u64>,
}

impl PendingTimes {
    /// Add `n` rows at time `ms`.
    pub fn add(&mut self, ms: i64, n: u64) {
        if n > 0 {
            *self.cells.entry(ms >> self.shift).or_default() += n;
            self.bound();
        }
    }

    /// Add every non-null value of `ms`, plus `offset_ms`, one row each. A large batch is
    /// folded from a regular sample: the first valid row of each run of `step` rows stands for
    /// the run's valid rows, so the count is exact and the shape an estimate within a batch.
    pub fn add_all(&mut self, ms: &Int64Array, offset_ms: i64) {
        let (Some(lo), Some(hi)) = (min(ms), max(ms)) else {
            return;
        };
        let mut local_shift = self.shift;
        while i128::from(hi >> local_shift) - i128::from(lo >> local_shift)
            >= i128::from(BATCH_CELLS)
        {
            local_shift += 1;
        }
        let base = lo >> local_shift;
        let mut counts = vec![0u64; ((hi >> local_shift) - base + 1) as usize];
        let values = ms.values();
        let step = (values.len() / SAMPLES).max(1);
        for start in (0..values.len()).step_by(step) {
            let len = step.min(values.len() - start);
            let valid = match ms.nulls() {
                None => len,
                Some(n) => len - n.slice(start, len).null_count(),
            };
            if let Some(i) = (start..start + len).find(|i| ms.is_valid(*i)) {
                counts[((values[i] >> local_shift) - base) as usize] += valid as u64;
            }
        }
        let half = (1i64 << local_shift) / 2;
        for (i, c) in counts.into_iter().enumerate().filter(|(_, c)| *c > 0) {
            let center = ((base + i as i64) << local_shift) + half + offset_ms;
            *self.cells.entry(center >> self.shift).or_default() += c;
        }
        self.bound();
    }

    /// Widen the cells until there are at most [`MAX_CELLS`].
    fn bound(&mut self) {
        while self.cells.len() > MAX_CELLS {
            self.shift += 1;
            let mut wider: HashMap<i64, u64> = HashMap::with_capacity(self.cells.len() / 2);
            for (k, c) in self.cells.drain() {
                *wider.entry(k >> 1).or_default() += c;
            }
            self.cells = wider;
        }
    }

    /// Rows waiting.
    pub fn len(&self) -> u64 {
        self.cells.values().sum()
    }

    /// True when no row waits.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Observe every row as visible at `now_ms` (latency = now minus the cell's middle; rows
    /// from the future count as 0) and forget them.
    pub fn drain_into(&mut self, now_ms: i64, h: &mut LatencyHistogram) {
        let half = (1i64 << self.shift) / 2;
        for (k, c) in self.cells.drain() {
            let t = (k << self.shift) + half;
            h.observe_n((now_ms - t).max(0) as f64 / 1e3, c);
        }
        self.shift = 0;
    }

    /// Take the rows out, leaving this empty.
    pub fn take(&mut self) -> PendingTimes {
        std::mem::take(self)
    }

    /// Add another set of waiting rows.
    pub fn merge(&mut self, other: PendingTimes) {
        let half = (1i64 << other.shift) / 2;
        for (k, c) in other.cells {
            self.add((k << other.shift) + half, c);
        }
    }
}

/// Milliseconds of a timestamp column (`None` when it is not a timestamp).
fn millis(batch: &RecordBatch, col: usize) -> Option<Int64Array> {
    let c = batch.columns().get(col)?;
    let DataType::Timestamp(_, tz) = c.data_type() else {
        return None;
    };
    let ms = cast(c, &DataType::Timestamp(TimeUnit::Millisecond, tz.clone())).ok()?;
    let ms = cast(&ms, &DataType::Int64).ok()?;
    ms.as_any().downcast_ref::<Int64Array>().cloned()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The latency bookkeeping of one sink (or query result stream).
pub struct LatencyRecorder {
    metrics: Arc<JobMetrics>,
    sink: Arc<str>,
    /// The result column holding the event time and the ns to add to it, if the rows have one.
    event_col: Option<(usize, i64)>,
    event: PendingTimes,
    ingest: PendingTimes,
    /// Rows pre-committed under a checkpoint and waiting for its commit.
    epochs: BTreeMap<u64, (PendingTimes, PendingTimes)>,
}

impl LatencyRecorder {
    /// A recorder for sink `sink` whose rows hold their event time in column `event_col` (with
    /// ns to add, see `StreamNode::event_time_columns`).
    pub fn new(metrics: Arc<JobMetrics>, sink: &str, event_col: Option<(usize, i64)>) -> Self {
        Self {
            metrics,
            sink: Arc::from(sink),
            event_col,
            event: PendingTimes::default(),
            ingest: PendingTimes::default(),
            epochs: BTreeMap::new(),
        }
    }

    /// Note a batch handed to the sink (not visible yet).
    pub fn written(&mut self, b: &StreamBatch) {
        let rows = b.num_rows() as u64;
        if rows == 0 {
            return;
        }
        if let Some((col, offset_ns)) = self.event_col {
            if let Some(ms) = millis(&b.batch, col) {
                self.event.add_all(&ms, offset_ns / 1_000_000);
            }
        }
        if b.ingest_ns > 0 {
            self.ingest.add(b.ingest_ns / 1_000_000, rows);
        }
    }

    /// Everything written so far is visible now (an at-least-once sink after a write).
    pub fn visible(&mut self) {
        let (mut e, mut i) = (self.event.take(), self.ingest.take());
        self.observe(&mut e, &mut i);
    }

    /// Checkpoint `id` pre-committed what was written so far.
    pub fn pre_committed(&mut self, id: u64) {
        let e = self.event.take();
        let i = self.ingest.take();
        self.epochs.insert(id, (e, i));
    }

    /// Checkpoints up to `id` were committed: their rows are visible now.
    pub fn committed(&mut self, id: u64) {
        let later = self.epochs.split_off(&(id + 1));
        let done = std::mem::replace(&mut self.epochs, later);
        let (mut e, mut i) = (PendingTimes::default(), PendingTimes::default());
        for (_, (de, di)) in done {
            e.merge(de);
            i.merge(di);
        }
        self.observe(&mut e, &mut i);
    }

    fn observe(&self, e: &mut PendingTimes, i: &mut PendingTimes) {
        if e.is_empty() && i.is_empty() {
            return;
        }
        let now = now_ms();
        let mut all = self.metrics.latency.lock().expect("lock");
        for (times, basis) in [(e, Basis::EventTime), (i, Basis::Ingestion)] {
            if times.is_empty() {
                continue;
            }
            let h = all.entry((Arc::clone(&self.sink), basis)).or_default();
            times.drain_into(now, h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_take_counts_and_sums() {
        let mut h = LatencyHistogram::default();
        h.observe_n(0.004, 2);
        h.observe_n(4.0, 3);
        h.observe_n(1e6, 1);
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[9], 3, "4 s falls under the 5 s bound");
        assert_eq!(h.counts[BUCKETS.len()], 1);
        assert_eq!(h.count, 6);
        assert_eq!(h.quantile_bound(0.5), Some(5.0));
        assert_eq!(h.quantile_bound(1.0), Some(f64::MAX));
    }

    #[test]
    fn exact_counts_with_bounded_cells() {
        let mut p = PendingTimes::default();
        // A week of event times, one row per second: far more than MAX_CELLS milliseconds.
        let week = 7 * 86_400;
        let ms = Int64Array::from_iter_values((0..week).map(|s| 1_000_000 + s * 1000));
        p.add_all(&ms, 0);
        assert!(p.cells.len() <= MAX_CELLS);
        assert_eq!(p.len(), week as u64);
        let mut h = LatencyHistogram::default();
        p.drain_into(1_000_000 + week * 1000, &mut h);
        assert_eq!(h.count, week as u64);
        assert!(p.is_empty());
    }

    #[test]
    fn a_sampled_batch_still_counts_every_row() {
        let mut p = PendingTimes::default();
        let ms = Int64Array::from_iter((0..10_007).map(|i| (i % 13 != 0).then_some(50_000 + i)));
        p.add_all(&ms, 0);
        let rows = p.len();
        assert_eq!(rows, (10_007 - ms.null_count()) as u64);
        let mut h = LatencyHistogram::default();
        p.drain_into(60_007, &mut h);
        assert_eq!(h.count, rows);
        let mean = h.sum / h.count as f64;
        assert!(
            (4.9..5.1).contains(&mean),
            "rows 0-10 s old average 5 s: {mean}"
        );
    }

    #[test]
    fn latency_is_now_minus_event_time_within_a_cell() {
        let mut p = PendingTimes::default();
        p.add_all(
            &Int64Array::from(vec![Some(9_000), None, Some(9_000)]),
            1000,
        );
        let mut h = LatencyHistogram::default();
        p.drain_into(12_000, &mut h);
        assert_eq!(h.count, 2);
        assert!((h.sum - 4.0).abs() < 0.01, "{}", h.sum);
        assert_eq!(h.counts[8], 2, "2 s falls under 2.5 s");
    }

    #[test]
    fn rows_wait_for_their_checkpoint() {
        let m = Arc::new(JobMetrics::default());
        let mut r = LatencyRecorder::new(m.clone(), "out", None);
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        let mut b = StreamBatch::new(RecordBatch::new_empty(Arc::new(
            datafusion::arrow::datatypes::Schema::empty(),
        )));
        b.ingest_ns = now;
        let batch = RecordBatch::try_new_with_options(
            Arc::new(datafusion::arrow::datatypes::Schema::empty()),
            vec![],
            &datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(5)),
        )
        .unwrap();
        b.batch = batch;
        r.written(&b);
        r.pre_committed(1);
        r.written(&b);
        assert!(m.latency.lock().unwrap().is_empty(), "nothing visible yet");
        r.committed(1);
        let h = m.latency.lock().unwrap()[&(Arc::from("out"), Basis::Ingestion)].clone();
        assert_eq!(h.count, 5, "only checkpoint 1's rows");
    }
}
