//! A subtask's share of a JSON-lines or CSV stream of files: every `n`-th segment (`split`),
//! decoded on a thread of its own that reads ahead while the engine waits for the segments
//! before (the watermarks of a single reader need them), so the subtasks decode in parallel.
//!
//! The thread sends, per segment, a start, its decoded units of `batch_size` lines and an end;
//! the source hands them out as [`SourceEvent`]s. Its position is that of the last piece
//! handed out, never of what the thread read ahead.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::mpsc;
use weir_engine::connector::{Source, SourceContext, SourceEvent};
use weir_engine::observe::dead_letter::{BadRecord, OnError};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};

use super::source::{dead_letter, OpenFile, CHUNK_BYTES};
use super::split::{SegmentPlan, SplitPosition, Stripe};
use super::units::{DecodedUnit, DecoderSpec};
use super::NAME;

/// Decoded units a reading thread may be ahead by.
const READ_AHEAD: usize = 64;

/// What the reading thread sends.
enum Piece {
    Start(u64),
    /// Rows of the current segment, and the file offset after them.
    Rows(DecodedUnit, u64),
    End(u64),
    Failed(EngineError),
}

/// A subtask reading its segments.
pub(crate) struct SplitSource {
    ctx: SourceContext,
    on_error: OnError,
    pieces: mpsc::Receiver<Piece>,
    /// Segments a restored position shows read, to announce before anything else.
    announce: VecDeque<u64>,
    restored: SplitPosition,
    /// This subtask's stripe: its segments below `below` are read.
    stripe: Stripe,
    /// The segment handed out last and the offset reached in it.
    current: Option<(u64, u64)>,
    rate: Option<f64>,
    started: Option<std::time::Instant>,
    emitted: u64,
}

impl SplitSource {
    /// Subtask `ctx.split` of the files of `plan`, from `restored` (what is already read).
    pub(crate) fn new(
        ctx: SourceContext,
        plan: SegmentPlan,
        restored: SplitPosition,
        spec: (DecoderSpec, OnError, Option<f64>),
    ) -> Result<Self> {
        let (decoder, on_error, rate) = spec;
        let (index, count) = (ctx.split.index as u64, ctx.split.count as u64);
        let announce: VecDeque<u64> = (0..plan.total).filter(|n| restored.is_done(*n)).collect();
        let todo: Vec<(u64, Option<u64>)> = (index..plan.total)
            .step_by(count as usize)
            .filter(|n| !restored.is_done(*n))
            .map(|n| (n, restored.partial.get(&n).copied()))
            .collect();
        let below = todo.first().map_or(plan.total, |t| t.0);
        let (tx, pieces) = mpsc::channel(READ_AHEAD);
        let reader = Reader { plan, decoder, tx };
        std::thread::Builder::new()
            .name("weir-file-split".into())
            .spawn(move || {
                let tx = reader.tx.clone();
                let run = std::panic::AssertUnwindSafe(|| reader.run(todo));
                if std::panic::catch_unwind(run).is_err() {
                    let e = EngineError::connector(NAME, "a file reader thread panicked");
                    let _ = tx.blocking_send(Piece::Failed(e));
                }
            })
            .map_err(|e| EngineError::connector(NAME, format!("reader thread: {e}")))?;
        Ok(Self {
            ctx,
            on_error,
            pieces,
            announce,
            restored,
            stripe: Stripe {
                count,
                index,
                below,
            },
            current: None,
            rate: rate.map(|r| r / count as f64),
            started: None,
            emitted: 0,
        })
    }

    /// The next event from the reading thread.
    async fn next_event(&mut self) -> Result<SourceEvent> {
        if let Some(n) = self.announce.pop_front() {
            return Ok(SourceEvent::SegmentEnd(n));
        }
        loop {
            let Some(piece) = self.pieces.recv().await else {
                return Ok(SourceEvent::End);
            };
            match piece {
                Piece::Start(n) => {
                    let from = self.restored.partial.get(&n).copied();
                    self.current = Some((n, from.unwrap_or(0)));
                    return Ok(SourceEvent::SegmentStart(n));
                }
                Piece::Rows(unit, offset) => {
                    if let Some((_, at)) = self.current.as_mut() {
                        *at = offset;
                    }
                    if let Some(b) = self.hand_out(unit)? {
                        self.emitted += b.num_rows() as u64;
                        return Ok(SourceEvent::Batch(b));
                    }
                }
                Piece::End(n) => {
                    self.current = None;
                    self.stripe.below = n + self.stripe.count;
                    return Ok(SourceEvent::SegmentEnd(n));
                }
                Piece::Failed(e) => return Err(e),
            }
        }
    }

    /// A decoded unit's bad lines to the dead letters; its rows, if any.
    fn hand_out(
        &mut self,
        unit: DecodedUnit,
    ) -> Result<Option<datafusion::arrow::record_batch::RecordBatch>> {
        JobMetrics::add(&self.ctx.metrics.bytes_in, unit.len);
        for bad in unit.bad {
            let record = BadRecord {
                raw: bad.raw,
                reason: bad.reason,
                position: format!("{}:{}", unit.name, unit.first_line + bad.index as u64),
            };
            dead_letter(&self.ctx, self.on_error, record)?;
        }
        if let Some(b) = &unit.batch {
            JobMetrics::add(&self.ctx.metrics.rows_in, b.num_rows());
        }
        Ok(unit.batch)
    }

    /// `scan.records-per-second` (this subtask's share): wait until the rows so far are due.
    async fn pace(&mut self) {
        let Some(rate) = self.rate else { return };
        let started = *self.started.get_or_insert_with(std::time::Instant::now);
        let due = started + std::time::Duration::from_secs_f64(self.emitted as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
    }

    /// What is read: everything the restored position says, this subtask's stripe, and where
    /// its current segment and later partly read ones stand.
    fn position(&self) -> SplitPosition {
        let mut p = SplitPosition {
            split_bytes: self.restored.split_bytes,
            done: self.restored.done.clone(),
            partial: BTreeMap::new(),
        };
        if !p.done.contains(&self.stripe) {
            p.done.push(self.stripe);
        }
        let mine = |n: &u64| n % self.stripe.count == self.stripe.index && *n >= self.stripe.below;
        for (n, off) in self.restored.partial.iter().filter(|(n, _)| mine(n)) {
            p.partial.insert(*n, *off);
        }
        if let Some((n, off)) = self.current {
            p.partial.insert(n, off);
        }
        p
    }
}

impl Source for SplitSource {
    fn next(&mut self) -> BoxFuture<'_, Result<SourceEvent>> {
        async move {
            self.pace().await;
            self.next_event().await
        }
        .boxed()
    }

    fn snapshot(&mut self) -> Result<Option<String>> {
        serde_json::to_string(&self.position())
            .map(Some)
            .map_err(|e| EngineError::State(e.to_string()))
    }
}

/// The reading thread: its segments in order, each cut into units and decoded.
struct Reader {
    plan: SegmentPlan,
    decoder: DecoderSpec,
    tx: mpsc::Sender<Piece>,
}

impl Reader {
    /// Read `todo` (segment, offset to resume at); stops when the source is dropped.
    fn run(self, todo: Vec<(u64, Option<u64>)>) {
        let mut decoder = match self.decoder.decoder() {
            Ok(d) => d,
            Err(e) => return drop(self.tx.blocking_send(Piece::Failed(e))),
        };
        for (n, from) in todo {
            if self.tx.blocking_send(Piece::Start(n)).is_err() {
                return;
            }
            if let Err(e) = self.segment(n, from, &mut decoder) {
                let _ = self.tx.blocking_send(Piece::Failed(e));
                return;
            }
            if self.tx.blocking_send(Piece::End(n)).is_err() {
                return;
            }
        }
    }

    /// Send segment `n`'s rows from byte `from` (its start when `None`).
    fn segment(
        &self,
        n: u64,
        from: Option<u64>,
        decoder: &mut super::decode::SegmentDecoder,
    ) -> Result<()> {
        let b = self.plan.bounds(n)?;
        let f = &self.plan.files[b.file];
        let start = from.unwrap_or(b.start).max(b.start);
        let header =
            self.decoder.format == super::Format::Csv && self.decoder.csv.ignore_first_line;
        let mut file = OpenFile::open_range(
            f.path.clone(),
            f.name.clone(),
            (start, b.end),
            header,
            CHUNK_BYTES,
        )?;
        let name: Arc<str> = Arc::from(f.name.as_str());
        let mut first_line: Option<u64> = None;
        while file.has_lines()? {
            // Decoded straight from the file's buffer: about `batch_size` whole lines.
            let segment = decoder
                .next_segment(file.region())
                .map_err(|e| EngineError::connector(NAME, format!("{name}: {e}")))?;
            let mut decoded = DecodedUnit {
                batch: segment.decoded.batch,
                bad: segment.decoded.bad,
                name: name.clone(),
                first_line: file.line,
                len: segment.len,
            };
            file.consume(segment.len, segment.lines);
            if !decoded.bad.is_empty() {
                let base = match first_line {
                    Some(l) => l,
                    None => *first_line.insert(lines_before(&f.path, &f.name, start)?),
                };
                decoded.first_line += base - 1;
            }
            if self
                .tx
                .blocking_send(Piece::Rows(decoded, file.position()))
                .is_err()
            {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// The 1-based line number of byte `offset` (a line start) of a file: for dead-letter origins
/// of a segment that starts inside it, counted only when one has a bad line.
fn lines_before(path: &std::path::Path, name: &str, offset: u64) -> Result<u64> {
    use std::io::Read;
    let fail =
        |e: std::io::Error| EngineError::connector(NAME, format!("cannot read '{name}': {e}"));
    let file = std::fs::File::open(path).map_err(fail)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file.take(offset));
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 1;
    loop {
        let n = reader.read(&mut buf).map_err(fail)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
}
