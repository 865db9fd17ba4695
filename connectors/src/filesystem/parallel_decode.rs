//! Decoding a JSON-lines or CSV file on several threads while keeping it one ordered stream.
//!
//! The reading task cuts the waiting whole lines into units of `batch_size` lines (a `memchr`
//! pass, cheap) and hands them to a pool of decoder threads, each with its own decoder; the
//! results come back in the order the units were cut. So the rows, their order and therefore
//! every watermark and lateness decision are exactly those of a single decoder: parallel
//! decoding changes the speed, never the result. A unit's position in the file travels with
//! it, and the source's checkpoint position is the end of the last unit it handed out, so a
//! restore (at any parallelism) resumes at the same line.

use std::collections::VecDeque;
use std::sync::{mpsc, Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::oneshot;
use weir_engine::{EngineError, Result};

use super::decode::{BadLine, SegmentDecoder};
use super::{CsvOptions, Format, NAME};

/// Whole lines cut from a file, to be decoded on a pool thread.
pub(crate) struct Unit {
    pub bytes: Vec<u8>,
    /// The file's name in record positions, and the line number of the unit's first line.
    pub name: Arc<str>,
    pub first_line: u64,
    /// The source's position once this unit is handed out (a `FilePosition` as JSON).
    pub end: String,
}

/// A decoded unit: its rows, and its bad lines (indexes relative to the unit's first line).
pub(crate) struct DecodedUnit {
    pub batch: Option<RecordBatch>,
    pub bad: Vec<BadLine>,
    pub name: Arc<str>,
    pub first_line: u64,
    pub len: usize,
    pub end: String,
}

struct Job {
    unit: Unit,
    reply: oneshot::Sender<Result<DecodedUnit>>,
}

/// Decoder threads and the units in flight, in cut order.
pub(crate) struct DecodePool {
    jobs: mpsc::Sender<Job>,
    in_flight: VecDeque<oneshot::Receiver<Result<DecodedUnit>>>,
    threads: usize,
}

/// How a pool thread builds its decoder.
#[derive(Clone)]
pub(crate) struct DecoderSpec {
    pub schema: SchemaRef,
    pub format: Format,
    pub csv: CsvOptions,
    pub batch_size: usize,
}

impl DecodePool {
    /// `threads` decoder threads (they end when the pool is dropped).
    pub(crate) fn new(threads: usize, spec: DecoderSpec) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..threads {
            let mut decoder = spec.decoder()?;
            let rx = rx.clone();
            std::thread::Builder::new()
                .name("weir-decode".into())
                .spawn(move || loop {
                    let job = match rx.lock().map(|r| r.recv()) {
                        Ok(Ok(job)) => job,
                        _ => return,
                    };
                    let _ = job.reply.send(decode_unit(&mut decoder, job.unit));
                })
                .map_err(|e| EngineError::connector(NAME, format!("decoder thread: {e}")))?;
        }
        Ok(Self {
            jobs: tx,
            in_flight: VecDeque::new(),
            threads,
        })
    }

    /// Whether more units should be cut now (enough to keep every thread busy).
    pub(crate) fn wants_more(&self) -> bool {
        self.in_flight.len() < 2 * self.threads
    }

    /// Decode `unit` on a pool thread.
    pub(crate) fn submit(&mut self, unit: Unit) {
        let (reply, rx) = oneshot::channel();
        if self.jobs.send(Job { unit, reply }).is_ok() {
            self.in_flight.push_back(rx);
        }
    }

    /// The oldest unit's result; `None` when nothing is in flight.
    pub(crate) async fn next(&mut self) -> Option<Result<DecodedUnit>> {
        let rx = self.in_flight.pop_front()?;
        Some(
            rx.await
                .unwrap_or_else(|_| Err(EngineError::connector(NAME, "a decoder thread stopped"))),
        )
    }
}

impl DecoderSpec {
    pub(crate) fn decoder(&self) -> Result<SegmentDecoder> {
        SegmentDecoder::new(self.schema.clone(), self.format, self.csv, self.batch_size)
            .map_err(|e| EngineError::connector(NAME, e.to_string()))
    }
}

/// Decode every segment of a unit; bad lines keep their line index within the unit.
fn decode_unit(decoder: &mut SegmentDecoder, unit: Unit) -> Result<DecodedUnit> {
    let (mut pos, mut line) = (0usize, 0usize);
    let mut batches = Vec::new();
    let mut bad = Vec::new();
    while pos < unit.bytes.len() {
        let segment = decoder
            .next_segment(&unit.bytes[pos..])
            .map_err(|e| EngineError::connector(NAME, format!("{}: {e}", unit.name)))?;
        bad.extend(segment.decoded.bad.into_iter().map(|mut b| {
            b.index += line;
            b
        }));
        batches.extend(segment.decoded.batch);
        pos += segment.len;
        line += segment.lines as usize;
    }
    let batch = match batches.len() {
        0 => None,
        1 => batches.pop(),
        _ => Some(datafusion::arrow::compute::concat_batches(
            &batches[0].schema(),
            &batches,
        )?),
    };
    Ok(DecodedUnit {
        batch,
        bad,
        name: unit.name,
        first_line: unit.first_line,
        len: unit.bytes.len(),
        end: unit.end,
    })
}
