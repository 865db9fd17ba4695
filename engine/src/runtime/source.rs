//! Drives a connector source: decoded batches -> computed columns -> watermarks.
//!
//! The watermark is computed per row with a running maximum, so each row carries the watermark
//! that was in force before it and results never depend on batch boundaries. Rows whose event
//! time is NULL cannot be placed in time: they go to the dead letters with that reason.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::compute::{cast, filter_record_batch, is_not_null};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use tokio::sync::watch;

use crate::checkpoint::{Trigger, TriggerKind};
use crate::connector::{Source, SourceEvent};
use crate::error::{EngineError, Result};
use crate::message::{Barrier, Message, StreamBatch, WATERMARK_MAX, WATERMARK_MIN};
use crate::observe::dead_letter::{BadRecord, DeadLetters};
use crate::observe::metrics::JobMetrics;
use crate::observe::op_metrics::{OperatorMetrics, PartitionStat, Timed};
use crate::operators::project::project;
use crate::runtime::chain::Output;
use crate::runtime::checkpointed::{SourceCheckpoint, SourceSnapshot};
use crate::runtime::partitions::PartitionWatermarks;
use crate::runtime::segments::{SegmentBoard, SubtaskSegments};
use crate::runtime::watermark_expr::{WatermarkExpr, WatermarkValues};
use crate::window::kernels::to_ns;
use weir_planner::stream_plan::SourceNode;

/// Watermark values as integers in their time unit (nanoseconds when not a timestamp).
fn raw_values(values: &WatermarkValues) -> Result<(Int64Array, TimeUnit)> {
    let unit = match values.values.data_type() {
        DataType::Timestamp(u, _) => *u,
        _ => TimeUnit::Nanosecond,
    };
    let wm = cast(&values.values, &DataType::Int64)?;
    let wm = wm.as_any().downcast_ref::<Int64Array>().expect("int64");
    Ok((wm.clone(), unit))
}

/// The next checkpoint trigger of a checkpointing source; never, without checkpoints.
async fn next_trigger(ck: Option<&mut SourceCheckpoint>) -> Option<Trigger> {
    match ck {
        Some(ck) => ck.next_trigger().await,
        None => std::future::pending().await,
    }
}

/// The task around a connector source: computes columns and watermarks and sends messages
/// downstream.
pub struct SourceDriver {
    /// The source's plan node (table, computed columns, watermark expression).
    pub node: SourceNode,
    /// The connector's source.
    pub source: Box<dyn Source>,
    /// The table's dead letters (rows whose event time is NULL are reported here).
    pub dead_letters: DeadLetters,
    /// The job's counters.
    pub metrics: Arc<JobMetrics>,
    watermark: i64,
    partitions: PartitionWatermarks,
    /// Every partition was idle when last looked at, and downstream was told.
    idle: bool,
    ck: Option<SourceCheckpoint>,
    op_metrics: Option<Arc<OperatorMetrics>>,
    /// Records sent downstream per partition, and each partition's metrics label.
    counts: BTreeMap<u32, (u64, String)>,
    /// The watermark expression (a fixed delay recognised) and the rowtime column.
    wm: Option<(WatermarkExpr, usize)>,
    /// The segments of an ordered stream this subtask reads, and the board its node's
    /// subtasks share (`runtime/segments.rs`).
    segments: SubtaskSegments,
    board: Arc<SegmentBoard>,
    /// A segment read ahead while the segments before it are still being read by the other
    /// subtasks ([`SourceDriver::hold_segment`]): its events, handed on once they are due.
    held: VecDeque<SourceEvent>,
    /// The connector's position where the held segment starts: what a checkpoint records
    /// until the held rows have gone downstream.
    held_position: Option<Option<String>>,
}

impl SourceDriver {
    /// Count rows sent and time blocked on the output channel (EXPLAIN ANALYZE).
    pub fn set_op_metrics(&mut self, m: Arc<OperatorMetrics>) {
        self.op_metrics = Some(m);
    }

    /// A driver for `source`; `scan.watermark.idle-timeout` on the table sets the partition
    /// idle timeout.
    pub fn new(
        node: SourceNode,
        source: Box<dyn Source>,
        dead_letters: DeadLetters,
        metrics: Arc<JobMetrics>,
    ) -> Self {
        let idle = node
            .table
            .option("scan.watermark.idle-timeout")
            .and_then(|v| weir_planner::interval::parse_duration(v).ok())
            .filter(|ns| *ns > 0)
            .map(|ns| std::time::Duration::from_nanos(ns as u64));
        let wm = node
            .watermark
            .clone()
            .map(|(e, rowtime)| (WatermarkExpr::new(e), rowtime));
        Self {
            wm,
            node,
            source,
            dead_letters,
            metrics,
            watermark: WATERMARK_MIN,
            partitions: PartitionWatermarks::new(idle),
            idle: false,
            ck: None,
            op_metrics: None,
            counts: BTreeMap::new(),
            segments: SubtaskSegments::default(),
            board: Arc::new(SegmentBoard::default()),
            held: VecDeque::new(),
            held_position: None,
        }
    }

    /// Share `board` with the node's other subtasks (they read one ordered stream's segments).
    pub fn set_segment_board(&mut self, board: Arc<SegmentBoard>) {
        self.board = board;
    }

    /// Take part in checkpoints, resuming the watermarks of `restored`.
    pub fn set_checkpointing(&mut self, ck: SourceCheckpoint, restored: Option<&SourceSnapshot>) {
        if let Some(r) = restored {
            self.partitions.restore(&r.partitions, Instant::now());
            self.watermark = r.watermark;
            self.segments.restore(&r.segments, &self.board);
        }
        self.ck = Some(ck);
    }

    /// Answer a checkpoint trigger: acknowledge with the position and send the barrier after
    /// the rows already sent. True when the source must end now (final checkpoint, savepoint).
    async fn on_trigger(&mut self, t: Trigger, tx: &mut Output) -> Result<bool> {
        let Some(ck) = self.ck.as_mut() else {
            return Ok(false);
        };
        let position = match &self.held_position {
            Some(held) => held.clone(),
            None => self.source.snapshot()?,
        };
        let snapshot = SourceSnapshot {
            version: SourceSnapshot::VERSION,
            position,
            partitions: self.partitions.snapshot(),
            watermark: self.watermark,
            segments: self.segments.snapshot(),
        };
        ck.ack(t.id, &snapshot);
        tx.send(Message::Barrier(Barrier {
            checkpoint_id: t.id,
        }))
        .await?;
        if t.kind == TriggerKind::Periodic {
            return Ok(false);
        }
        tx.send(Message::EndOfStream).await?;
        Ok(true)
    }

    /// The input is exhausted. With checkpoints, stay to answer triggers until the final one.
    async fn on_end(&mut self, tx: &mut Output, cancel: &mut watch::Receiver<bool>) -> Result<()> {
        tx.send(Message::Watermark(WATERMARK_MAX)).await?;
        let Some(ck) = self.ck.as_mut() else {
            tx.send(Message::EndOfStream).await?;
            return Ok(());
        };
        ck.ended();
        loop {
            let ck = self.ck.as_mut().expect("checkpointing");
            let t = tokio::select! {
                biased;
                _ = cancel.changed() => return Err(EngineError::Cancelled),
                t = ck.next_trigger() => t,
            };
            let Some(t) = t else { return Ok(()) };
            if self.on_trigger(t, tx).await? {
                return Ok(());
            }
        }
    }

    /// Run until the source ends, the job is cancelled, or downstream goes away.
    pub async fn run(mut self, mut tx: Output, mut cancel: watch::Receiver<bool>) -> Result<()> {
        if let Some(om) = &self.op_metrics {
            tx.sent_by(om.clone());
        }
        loop {
            // Held rows go downstream before a barrier: their position is not the source's.
            if self.held.is_empty() {
                self.held_position = None;
                if let Some(t) = self.ck.as_mut().and_then(|c| c.take_trigger()) {
                    if self.on_trigger(t, &mut tx).await? {
                        return Ok(());
                    }
                }
            }
            if let Some(position) = self.ck.as_mut().and_then(|c| c.take_completed()) {
                self.source.checkpoint_complete(&position)?;
            }
            // Busy: the time spent inside the source's polls, not the time it waits for data.
            let busy = self.op_metrics.as_ref().map(|m| &m.busy_ns);
            let event = match self.held.pop_front() {
                Some(e) => e,
                None => tokio::select! {
                    biased;
                    _ = cancel.changed() => return Err(EngineError::Cancelled),
                    e = Timed::new(self.source.next(), busy) => e?,
                },
            };
            let msgs = match event {
                SourceEvent::Batch(b) => self.timed_prepare(b, None)?,
                SourceEvent::PartitionedBatch(b, parts) => self.timed_prepare(b, Some(parts))?,
                // A subtask given no partition (more subtasks than partitions) is idle from the
                // start, so it never holds the watermark back (as Flink).
                SourceEvent::Partitions(ids) if ids.is_empty() && !self.idle => {
                    self.idle = true;
                    vec![Message::Idle]
                }
                SourceEvent::Partitions(ids) => {
                    self.partitions.declare(&ids, Instant::now());
                    vec![]
                }
                SourceEvent::PartitionEnd(id) => {
                    self.partitions.end(id);
                    let msgs = self.advance_idle();
                    self.publish_partitions();
                    msgs
                }
                SourceEvent::Idle => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    let msgs = self.advance_idle();
                    self.publish_partitions();
                    msgs
                }
                SourceEvent::SegmentStart(n) => {
                    if self.enter_segment(n, &mut tx, &mut cancel).await? {
                        return Ok(());
                    }
                    vec![]
                }
                SourceEvent::SegmentEnd(n) => {
                    let max = self.segments.end(n);
                    self.board.post(n, max);
                    vec![]
                }
                SourceEvent::End => return self.on_end(&mut tx, &mut cancel).await,
            };
            for m in msgs {
                let rows = match &m {
                    Message::Batch(b) => b.num_rows(),
                    _ => 0,
                };
                if !tx.send(m).await? {
                    return Ok(());
                }
                if let Some(om) = &self.op_metrics {
                    OperatorMetrics::add(&om.rows_out, rows);
                    om.watermark
                        .store(self.watermark, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    /// Start segment `n` once every earlier segment is read, answering checkpoint triggers
    /// while waiting (the other subtasks may need this one's barrier to go on). Rows of the
    /// segment start from the earlier segments' maximum. True when a trigger ended the source.
    async fn enter_segment(
        &mut self,
        n: u64,
        tx: &mut Output,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<bool> {
        self.segments.start(n);
        if self.board.prefix(n).is_none() && self.hold_segment(n, tx, cancel).await? {
            return Ok(true);
        }
        let mut complete = self.board.subscribe();
        loop {
            if let Some(prefix) = self.board.prefix(n) {
                self.watermark = self.watermark.max(prefix);
                return Ok(false);
            }
            let trigger = next_trigger(self.ck.as_mut());
            tokio::select! {
                biased;
                _ = cancel.changed() => return Err(EngineError::Cancelled),
                t = trigger => match t {
                    Some(t) if self.on_trigger(t, tx).await? => return Ok(true),
                    _ => {}
                },
                _ = complete.changed() => {}
            }
        }
    }

    /// Read segment `n` ahead while the segments before it are not all read: hold its events
    /// and post its maximum as soon as its end is read, so the subtask reading the next
    /// segment need not wait for this one's rows to go through the operators after the
    /// source (they go once the earlier segments are posted, [`SourceDriver::enter_segment`]).
    /// Until then a checkpoint records the position where the segment starts. Holds at most a
    /// segment's rows (`'source.split-size'`). True when a trigger ended the source.
    async fn hold_segment(
        &mut self,
        n: u64,
        tx: &mut Output,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<bool> {
        self.held_position = Some(self.source.snapshot()?);
        let mut max = self.segments.current.map_or(WATERMARK_MIN, |c| c.1);
        loop {
            let trigger = next_trigger(self.ck.as_mut());
            let event = tokio::select! {
                biased;
                _ = cancel.changed() => return Err(EngineError::Cancelled),
                t = trigger => match t {
                    Some(t) if self.on_trigger(t, tx).await? => return Ok(true),
                    _ => continue,
                },
                e = self.source.next() => e?,
            };
            let last = match &event {
                SourceEvent::Batch(b) => {
                    max = max.max(self.watermark_max(b)?);
                    false
                }
                SourceEvent::SegmentEnd(m) if *m == n => {
                    self.board.post(n, max);
                    true
                }
                _ => true,
            };
            self.held.push_back(event);
            if last {
                return Ok(false);
            }
        }
    }

    /// The largest watermark value among a decoded batch's rows (what
    /// [`SourceDriver::prepare`] will fold into the segment's running maximum).
    fn watermark_max(&self, decoded: &RecordBatch) -> Result<i64> {
        let Some((wm_expr, _)) = &self.wm else {
            return Ok(WATERMARK_MIN);
        };
        if decoded.num_rows() == 0 {
            return Ok(WATERMARK_MIN);
        }
        let full = project(decoded, &self.node.columns, &self.node.table.schema())?;
        let values = wm_expr.evaluate(&full)?;
        let (wm, unit) = raw_values(&values)?;
        Ok(match datafusion::arrow::compute::max(&wm) {
            None => WATERMARK_MIN,
            Some(v) => to_ns(v, unit).saturating_sub(values.delay_ns),
        })
    }

    /// [`SourceDriver::prepare`], its time counted as busy.
    fn timed_prepare(&mut self, b: RecordBatch, parts: Option<Vec<u32>>) -> Result<Vec<Message>> {
        let start = Instant::now();
        let msgs = self.prepare(b, parts);
        if let Some(om) = &self.op_metrics {
            OperatorMetrics::add_time(&om.busy_ns, start);
        }
        msgs
    }

    /// The watermark may advance without data: a partition ended or went idle. When every
    /// partition is idle the source is, and says so once ([`Message::Idle`]).
    fn advance_idle(&mut self) -> Vec<Message> {
        if self.node.watermark.is_none() {
            return vec![];
        }
        let now = Instant::now();
        let wm = self.partitions.current(now);
        let mut msgs = Vec::new();
        if wm > self.watermark && wm != WATERMARK_MAX {
            self.watermark = wm;
            msgs.push(Message::Watermark(wm));
        }
        if !self.idle && self.partitions.all_idle(now) {
            self.idle = true;
            msgs.push(Message::Idle);
        }
        msgs
    }

    /// Report `rows` of `full` as dead letters, formatted as values (the source could not give
    /// their raw records).
    fn report_rows(&self, full: &RecordBatch, rows: &[usize], reason: &str) -> Result<()> {
        let opts = FormatOptions::default().with_null("NULL");
        let fmts: Vec<ArrayFormatter> = full
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<_, _>>()?;
        for &i in rows {
            let raw: Vec<String> = fmts.iter().map(|f| f.value(i).to_string()).collect();
            self.dead_letters.report(BadRecord {
                raw: format!("[{}]", raw.join(", ")).into_bytes(),
                reason: reason.to_string(),
                position: format!("table {}", self.node.table.name),
            })?;
        }
        Ok(())
    }

    /// Computed columns, the watermark column, and the messages for one decoded batch.
    fn prepare(&mut self, decoded: RecordBatch, parts: Option<Vec<u32>>) -> Result<Vec<Message>> {
        if decoded.num_rows() == 0 {
            return Ok(vec![]);
        }
        let ingest_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let full = project(&decoded, &self.node.columns, &self.node.table.schema())?;
        let Some((wm_expr, rowtime)) = self.wm.clone() else {
            self.count_partitions(full.num_rows(), parts.as_deref());
            self.publish_partitions();
            let out = full.project(&self.node.projection)?;
            let mut batch = StreamBatch::new(out);
            batch.ingest_ns = ingest_ns;
            return Ok(vec![Message::Batch(batch)]);
        };
        let (full, parts) = self.drop_null_time(full, parts, rowtime)?;
        if full.num_rows() == 0 {
            return Ok(vec![]);
        }
        self.count_partitions(full.num_rows(), parts.as_deref());
        self.idle = false;
        let wm = wm_expr.evaluate(&full)?;
        let before = self.row_watermarks(&wm, parts.as_deref())?;
        self.publish_partitions();
        let out = full.project(&self.node.projection)?;
        let mut batch = StreamBatch::with_row_watermarks(out, before);
        batch.ingest_ns = ingest_ns;
        Ok(vec![
            Message::Batch(batch),
            Message::Watermark(self.watermark),
        ])
    }

    /// Add a batch's rows to their partitions' counts (runs of one partition count at once).
    fn count_partitions(&mut self, rows: usize, parts: Option<&[u32]>) {
        let Some(parts) = parts else {
            self.add_to_partition(0, rows as u64);
            return;
        };
        let mut i = 0;
        while i < parts.len() {
            let id = parts[i];
            let run = parts[i..].iter().take_while(|p| **p == id).count();
            self.add_to_partition(id, run as u64);
            i += run;
        }
    }

    fn add_to_partition(&mut self, id: u32, n: u64) {
        if !self.counts.contains_key(&id) {
            let label = self
                .source
                .partition_label(id)
                .unwrap_or_else(|| id.to_string());
            self.counts.insert(id, (0, label));
        }
        if let Some((c, _)) = self.counts.get_mut(&id) {
            *c += n;
        }
    }

    /// Show every partition's records, watermark and idleness in the task's metrics.
    fn publish_partitions(&mut self) {
        let Some(om) = self.op_metrics.clone() else {
            return;
        };
        let status = self.partitions.status(Instant::now());
        for s in &status {
            self.add_to_partition(s.id, 0);
        }
        let mut shown = om.partitions.lock().expect("lock");
        for (id, (records, label)) in &self.counts {
            let (wm, idle, ended) = status
                .iter()
                .find(|s| s.id == *id)
                .map_or((WATERMARK_MIN, false, false), |s| {
                    (s.watermark, s.idle, s.ended)
                });
            // Updated in place: the label is cloned once, when the partition first shows.
            let stat = shown.entry(*id).or_insert_with(|| PartitionStat {
                label: label.clone(),
                ..Default::default()
            });
            (stat.records, stat.watermark, stat.idle, stat.ended) = (*records, wm, idle, ended);
        }
    }

    /// The source watermark before each row, advancing the partitions' watermarks row by row.
    fn row_watermarks(
        &mut self,
        values: &WatermarkValues,
        parts: Option<&[u32]>,
    ) -> Result<Int64Array> {
        let delay = values.delay_ns;
        let (wm, unit) = raw_values(values)?;
        let wm = &wm;
        let now = Instant::now();
        match parts {
            Some(p) => p.iter().for_each(|id| self.partitions.touch(*id, now)),
            None => self.partitions.touch(0, now),
        }
        if let (None, Some((n, seg_wm))) = (parts, self.segments.current) {
            let (before, part) = self.running_max(wm, (unit, delay), seg_wm);
            self.segments.current = Some((n, part));
            self.partitions.advance(0, self.watermark);
            return Ok(before);
        }
        if let (None, Some(part_wm)) = (parts, self.partitions.only_live(0)) {
            let (before, part) = self.running_max(wm, (unit, delay), part_wm);
            self.partitions.advance(0, part);
            return Ok(before);
        }
        let mut before = Vec::with_capacity(wm.len());
        for i in 0..wm.len() {
            before.push(self.watermark);
            if wm.is_valid(i) {
                let part = parts.map_or(0, |p| p[i]);
                let ns = to_ns(wm.value(i), unit).saturating_sub(delay);
                if self.partitions.advance(part, ns) {
                    self.watermark = self.watermark.max(self.partitions.current(now));
                }
            }
        }
        Ok(Int64Array::from(before))
    }

    /// Row watermarks of a source with one partition (or in one segment): each row's is the
    /// source watermark before it, which is the running maximum of the values so far (one
    /// pass, no lookups). Also the partition's (segment's) new maximum.
    fn running_max(
        &mut self,
        wm: &Int64Array,
        at: (TimeUnit, i64),
        part_wm: i64,
    ) -> (Int64Array, i64) {
        let (unit, delay) = at;
        let (mut part, mut source) = (part_wm, self.watermark);
        let mut before = Vec::with_capacity(wm.len());
        for i in 0..wm.len() {
            before.push(source);
            if wm.is_valid(i) {
                part = part.max(to_ns(wm.value(i), unit).saturating_sub(delay));
                source = source.max(part);
            }
        }
        self.watermark = source;
        (Int64Array::from(before), part)
    }

    fn drop_null_time(
        &mut self,
        full: RecordBatch,
        parts: Option<Vec<u32>>,
        rowtime: usize,
    ) -> Result<(RecordBatch, Option<Vec<u32>>)> {
        let col = full.column(rowtime).clone();
        if col.null_count() == 0 {
            return Ok((full, parts));
        }
        let name = self.node.table.schema().field(rowtime).name().clone();
        let reason = format!("event-time column `{name}` is NULL (missing or unreadable)");
        let rows: Vec<usize> = (0..full.num_rows()).filter(|i| col.is_null(*i)).collect();
        if !self.source.reject(&rows, &reason)? {
            self.report_rows(&full, &rows, &reason)?;
        }
        let parts = parts.map(|p| {
            p.into_iter()
                .enumerate()
                .filter(|(i, _)| col.is_valid(*i))
                .map(|(_, v)| v)
                .collect()
        });
        Ok((filter_record_batch(&full, &is_not_null(&col)?)?, parts))
    }
}
