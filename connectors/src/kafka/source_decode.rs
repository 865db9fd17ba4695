//! The Kafka source's decoding: each polled message laid out as one line of a region (value,
//! key splice, origin), the region decoded by the segment decoder into Arrow, metadata
//! columns appended, and every bad record sent to the dead letters with its offset.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BinaryArray};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::message::Message;
use weir_engine::connector::SourceEvent;
use weir_engine::observe::dead_letter::{BadRecord, OnError};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};

use super::super::dead_letter::Origin as DlqOrigin;
use super::super::key::{splice_key, KeySplice};
use super::super::metadata::RawHeaders;
use super::{kafka_err, KafkaSource};
use crate::kafka::NAME;
use crate::lines::{apply_time_policy, decode_lines, line_bytes, BadRow, Timed};

impl KafkaSource {
    /// Lay one message out for decoding: its value as a line of `region`, its origin in
    /// `meta`, its key and headers where a column or the dead-letter topic needs them. Skips a
    /// message of a partition not assigned or already read to its end; returns the partition
    /// when this message was its last.
    pub(in crate::kafka) fn take_message<M: Message>(
        &mut self,
        m: &M,
        region: &mut Vec<u8>,
        meta: &mut Vec<LineMeta>,
    ) -> Option<u32>
    where
        M::Headers: RawHeaders,
    {
        let id = self.index.get(m.topic()).and_then(|v| {
            v.get(usize::try_from(m.partition()).ok()?)
                .copied()
                .flatten()
        })?;
        let part = &mut self.parts[id as usize];
        if part.done || part.end.is_some_and(|e| m.offset() >= e) {
            return None;
        }
        part.next = Some(m.offset().saturating_add(1));
        let ended = part.end.is_some_and(|e| m.offset().saturating_add(1) >= e);
        part.done |= ended;
        let key = match (self.keep_keys, m.key()) {
            (true, Some(k)) => {
                self.keys.extend_from_slice(k);
                Some((self.keys.len() - k.len(), k.len()))
            }
            _ => None,
        };
        let headers = if self.keep_headers {
            self.headers.push(m.headers().map(|h| h.borrowed()))
        } else {
            (0, 0)
        };
        let origin = Origin {
            id,
            offset: m.offset(),
            key,
            timestamp: m.timestamp().to_millis(),
            headers,
        };
        let payload = m.payload().unwrap_or_default();
        let key = self.splice.as_ref().zip(m.key());
        push_line(region, payload, meta, origin, self.options.raw, key);
        ended.then_some(id)
    }

    /// `'format' = 'raw'`: each value, byte for byte, is the one column.
    pub(super) fn decode_raw(
        &mut self,
        region: Vec<u8>,
        meta: Vec<LineMeta>,
    ) -> Result<SourceEvent> {
        let lines: Vec<usize> = (0..meta.len()).collect();
        let event = self.raw_batch(&region, &meta, &lines);
        self.last = LastPoll {
            region,
            meta,
            row_lines: lines,
        };
        event
    }

    fn raw_batch(
        &mut self,
        region: &[u8],
        meta: &[LineMeta],
        lines: &[usize],
    ) -> Result<SourceEvent> {
        self.emitted += meta.len() as u64;
        JobMetrics::add(&self.ctx.metrics.bytes_in, region.len());
        if meta.is_empty() {
            return Ok(SourceEvent::Idle);
        }
        let value = |i: usize| {
            let end = meta.get(i + 1).map_or(region.len(), |n| n.start) - 1;
            &region[meta[i].start..end]
        };
        let col: ArrayRef = Arc::new(BinaryArray::from_iter_values((0..meta.len()).map(value)));
        let col = cast(&col, self.ctx.schema.field(0).data_type()).map_err(kafka_err)?;
        let batch = RecordBatch::try_new(self.ctx.schema.clone(), vec![col]).map_err(kafka_err)?;
        let batch = super::super::metadata::append(&self.ctx.table, batch, lines, meta, self)?;
        JobMetrics::add(&self.ctx.metrics.rows_in, batch.num_rows());
        Ok(SourceEvent::PartitionedBatch(
            batch,
            meta.iter().map(|m| m.id).collect(),
        ))
    }

    /// Decode the gathered lines; bad ones go to the dead letters with their offsets.
    pub(super) fn decode(&mut self, region: Vec<u8>, meta: Vec<LineMeta>) -> Result<SourceEvent> {
        JobMetrics::add(&self.ctx.metrics.bytes_in, region.len());
        let decoded = decode_lines(&mut self.decoder, &region, NAME)?;
        self.report_bad(decoded.bad, &region, &meta)?;
        let (batches, mut row_lines) = (decoded.batches, decoded.row_lines);
        self.emitted += meta.len() as u64;
        if batches.is_empty() {
            return Ok(SourceEvent::Idle);
        }
        let batch = concat_batches(&batches[0].schema(), &batches).map_err(kafka_err)?;
        let batch = self.apply_time_policy(batch, &mut row_lines, &region, &meta)?;
        JobMetrics::add(&self.ctx.metrics.rows_in, batch.num_rows());
        let batch =
            super::super::metadata::append(&self.ctx.table, batch, &row_lines, &meta, self)?;
        let row_parts = row_lines.iter().map(|l| meta[*l].id).collect();
        self.last = LastPoll {
            region,
            meta,
            row_lines,
        };
        Ok(SourceEvent::PartitionedBatch(batch, row_parts))
    }

    /// Bad lines to the dead letters, with their offsets.
    fn report_bad(&mut self, bad: Vec<BadRow>, region: &[u8], meta: &[LineMeta]) -> Result<()> {
        let starts: Vec<usize> = meta.iter().map(|m| m.start).collect();
        for b in bad {
            let raw = b.raw.unwrap_or_else(|| line_bytes(region, &starts, b.line));
            self.dead_letter(raw, b.reason, &meta[b.line])?;
        }
        Ok(())
    }

    /// [`weir_engine::connector::Source::reject`]: rows of the last batch, traced back to their
    /// records through the last poll, handled as bad records (with their offsets).
    pub(super) fn reject_rows(&mut self, rows: &[usize], reason: &str) -> Result<bool> {
        let last = std::mem::take(&mut self.last);
        if rows.iter().any(|r| *r >= last.row_lines.len()) {
            self.last = last;
            return Ok(false); // not the last batch: let the engine report them
        }
        let mut result = Ok(true);
        for &r in rows {
            let line = last.row_lines[r];
            let m = &last.meta[line];
            let end = last
                .meta
                .get(line + 1)
                .map_or(last.region.len(), |n| n.start)
                - 1;
            let raw = last.region[m.start..end].to_vec();
            if let Err(e) = self.dead_letter(raw, reason.to_string(), m) {
                result = Err(e);
                break;
            }
        }
        self.last = last;
        result
    }

    /// Epoch-number conversion and timestamp bounds; offending rows become dead letters.
    fn apply_time_policy(
        &mut self,
        batch: RecordBatch,
        row_lines: &mut Vec<usize>,
        region: &[u8],
        meta: &[LineMeta],
    ) -> Result<RecordBatch> {
        let Some(policy) = &self.time_policy else {
            return Ok(batch);
        };
        let timed = Timed {
            policy,
            schema: &self.ctx.schema,
            metrics: &self.ctx.metrics,
            name: NAME,
        };
        let (batch, bad) = apply_time_policy(timed, batch, row_lines)?;
        self.report_bad(bad, region, meta)?;
        Ok(batch)
    }

    fn position(&self, m: &LineMeta) -> String {
        let p = &self.parts[m.id as usize];
        format!("{}/{}@{}", p.topic, p.partition, m.offset)
    }

    /// Stop (on-error = fail), or count and report the record, and write it with its origin to
    /// the dead-letter topic (on-error = dead-letter, the default when a topic is set).
    fn dead_letter(&mut self, raw: Vec<u8>, reason: String, m: &LineMeta) -> Result<()> {
        let position = self.position(m);
        if self.options.on_error == OnError::Fail {
            return Err(EngineError::Execution(format!(
                "bad record at {position}: {reason}"
            )));
        }
        let to_topic = self.options.on_error == OnError::DeadLetter;
        if let Some(d) = self.dead_letter_topic.as_mut().filter(|_| to_topic) {
            let p = &self.parts[m.id as usize];
            let key = m.key.map(|(s, l)| &self.keys[s..s + l]);
            let from = DlqOrigin {
                topic: &p.topic,
                partition: p.partition,
                offset: m.offset,
            };
            d.send(&raw, key, &reason, from)?;
        }
        self.ctx.dead_letters.report(BadRecord {
            raw,
            reason,
            position,
        })
    }
}

/// The last poll's records, kept until the next poll reuses the buffers, so that rows the
/// engine drops can be traced to their records.
#[derive(Default)]
pub(in crate::kafka) struct LastPoll {
    pub(in crate::kafka) region: Vec<u8>,
    pub(in crate::kafka) meta: Vec<LineMeta>,
    /// The line of each row of the batch returned.
    pub(in crate::kafka) row_lines: Vec<usize>,
}

/// Where a line of the decode region came from.
pub(in crate::kafka) struct LineMeta {
    pub(in crate::kafka) id: u32,
    pub(in crate::kafka) offset: i64,
    /// The message key's range in `KafkaSource::keys` (kept when a dead-letter topic or a
    /// `key` metadata column needs it).
    pub(in crate::kafka) key: Option<(usize, usize)>,
    /// The message timestamp (ms).
    pub(in crate::kafka) timestamp: Option<i64>,
    /// The message's headers: (first, count) in `KafkaSource::headers`.
    pub(in crate::kafka) headers: (u32, u32),
    /// Byte offset of the line in the region.
    start: usize,
}

/// A polled message's origin, kept per line.
struct Origin {
    id: u32,
    offset: i64,
    key: Option<(usize, usize)>,
    timestamp: Option<i64>,
    headers: (u32, u32),
}

/// Append one record as a line; a line end inside it would split it, so it becomes a space.
fn push_line(
    region: &mut Vec<u8>,
    payload: &[u8],
    meta: &mut Vec<LineMeta>,
    o: Origin,
    raw: bool,
    key: Option<(&KeySplice, &[u8])>,
) {
    if !raw && payload.iter().all(|b| b.is_ascii_whitespace()) {
        return; // a tombstone or empty record carries no row
    }
    let start = region.len();
    region.extend_from_slice(payload);
    if let Some((how, key)) = key {
        splice_key(region, start, key, how);
    }
    if !raw {
        for b in &mut region[start..] {
            if *b == b'\n' || *b == b'\r' {
                *b = b' ';
            }
        }
    }
    region.push(b'\n');
    meta.push(LineMeta {
        id: o.id,
        offset: o.offset,
        key: o.key,
        timestamp: o.timestamp,
        headers: o.headers,
        start,
    });
}
