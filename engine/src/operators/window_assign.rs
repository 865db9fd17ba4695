//! Window table-valued functions: places each row in its windows and appends `window_start`,
//! `window_end` and `window_time`.
//!
//! A row goes only to windows that are still open under the watermark in force before it (the
//! determinism rule); a row with no open window left is late, dropped and counted. For SESSION
//! windows the row's own proto-session `[t, t + gap)` is appended and the session aggregation
//! merges them.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{EngineError, Result};
use crate::late::{LateContext, LateRows};
use crate::message::{Message, StreamBatch};
use crate::observe::op_metrics::EventCounts;
use crate::operator::Operator;
use crate::window::kernels::{
    assign_windows, to_wall, window_time, Assignments, TimeContext, UnitSpec,
};
use weir_planner::stream_plan::WindowAssignNode;

/// Places rows in their windows and appends `window_start`, `window_end` and `window_time`.
pub struct WindowAssignOperator {
    spec: UnitSpec,
    session_gap: Option<i64>,
    time_index: usize,
    time: TimeContext,
    watermark: i64,
    /// `window.allowed-lateness` (ns): windows stay open to rows this long after firing.
    lateness: i64,
    schema: SchemaRef,
    /// Late rows dropped: counted, and kept for the late-data destination.
    late: LateRows,
}

impl WindowAssignOperator {
    /// The operator for `node`, with time interpreted by `time`.
    pub fn new(node: &WindowAssignNode, time: TimeContext) -> Result<Self> {
        let spec = UnitSpec::new(&node.spec, time.unit).map_err(EngineError::Execution)?;
        let session_gap = spec.session_gap();
        Ok(Self {
            spec,
            session_gap,
            time_index: node.time_index,
            time,
            watermark: i64::MIN,
            lateness: node.allowed_lateness_ns,
            schema: node.schema.clone(),
            late: LateRows::default(),
        })
    }

    fn sessions(&self, batch: &StreamBatch, gap: i64) -> Result<Assignments> {
        let ts = cast(
            batch.batch.column(self.time_index),
            &datafusion::arrow::datatypes::DataType::Int64,
        )?;
        let ts = ts.as_any().downcast_ref::<Int64Array>().expect("int64");
        let mut a = Assignments {
            rows: vec![],
            starts: vec![],
            ends: vec![],
            late: Vec::new(),
        };
        for i in 0..ts.len() {
            if ts.is_valid(i) {
                let w = to_wall(ts.value(i), &self.time);
                a.rows.push(i as u32);
                a.starts.push(w);
                a.ends.push(w.saturating_add(gap));
            }
        }
        Ok(a)
    }

    fn build(&self, batch: &StreamBatch, a: Assignments) -> Result<StreamBatch> {
        let idx = UInt32Array::from(a.rows);
        let all_rows = idx.len() == batch.num_rows()
            && idx
                .values()
                .iter()
                .enumerate()
                .all(|(i, r)| *r as usize == i);
        let mut cols: Vec<ArrayRef> = if all_rows {
            batch.batch.columns().to_vec()
        } else {
            batch
                .batch
                .columns()
                .iter()
                .map(|c| take(c, &idx, None))
                .collect::<Result<_, _>>()?
        };
        let times: Vec<i64> = a.ends.iter().map(|e| window_time(*e, &self.time)).collect();
        for (vals, f) in [a.starts, a.ends, times]
            .into_iter()
            .zip(self.schema.fields().iter().rev().take(3).rev())
        {
            cols.push(cast(
                &(Arc::new(Int64Array::from(vals)) as ArrayRef),
                f.data_type(),
            )?);
        }
        let out = RecordBatch::try_new(self.schema.clone(), cols)?;
        let row_watermarks = match &batch.row_watermarks {
            Some(w) if all_rows => Some(w.clone()),
            Some(w) => Some(
                take(w, &idx, None)?
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .cloned()
                    .expect("int64"),
            ),
            None => None,
        };
        Ok(StreamBatch {
            batch: out,
            row_watermarks,
            kinds: None,
            ingest_ns: batch.ingest_ns,
        })
    }
}

impl Operator for WindowAssignOperator {
    fn name(&self) -> &'static str {
        "WindowAssign"
    }

    fn process_batch(&mut self, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let a = match self.session_gap {
            Some(gap) => self.sessions(&batch, gap)?,
            None => {
                // With allowed lateness a window takes rows until the watermark passes its
                // firing time by the lateness: judge openness against a watermark that far back.
                let shifted = match (&batch.row_watermarks, self.lateness) {
                    (Some(w), l) if l > 0 => Some(Int64Array::from_iter_values(
                        w.values().iter().map(|v| v.saturating_sub(l)),
                    )),
                    _ => None,
                };
                assign_windows(
                    batch.batch.column(self.time_index).as_ref(),
                    &self.spec,
                    &self.time,
                    shifted.as_ref().or(batch.row_watermarks.as_ref()),
                    self.watermark.saturating_sub(self.lateness),
                )
                .map_err(EngineError::Execution)?
            }
        };
        let cx = LateContext {
            operator: "WindowAssign",
            reason: "every window of the row had fired",
            unit: self.time.unit,
        };
        self.late.push(&batch.batch, &a.late, &cx)?;
        if !a.rows.is_empty() {
            out.push(Message::Batch(self.build(&batch, a)?));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<Message>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    fn late_rows(&mut self) -> Option<&mut LateRows> {
        Some(&mut self.late)
    }

    fn counts(&self) -> EventCounts {
        EventCounts {
            late_rows: Some(self.late.count()),
            ..Default::default()
        }
    }
}
