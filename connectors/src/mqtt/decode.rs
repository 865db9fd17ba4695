//! The MQTT source's decoding: each message's payload laid out as one line of a region, the
//! region decoded into Arrow by the shared line decoder ([`crate::lines`]), the metadata
//! columns (`topic`, `qos`, `retain`, `message_id`) appended, and every bad payload sent to
//! the dead letters with its topic and message id as its origin.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BinaryArray, BooleanArray, Int32Array, StringArray};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::record_batch::RecordBatch;
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use weir_engine::connector::SourceEvent;
use weir_engine::observe::dead_letter::{BadRecord, OnError};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};

use super::options::NAME;
use super::source::{mqtt_err, MqttSource};
use crate::lines::{
    append_metadata, apply_time_policy, decode_lines, line_bytes, push_payload_line, BadRow, Timed,
};

/// Where a line of the decode region came from.
pub(crate) struct Line {
    pub(crate) topic: String,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    /// The packet identifier (none at QoS 0).
    pub(crate) message_id: Option<u16>,
}

/// The messages of one poll: their payloads as lines, where each starts, and their origins;
/// kept until the next poll so that rows the engine drops can be traced to their messages.
#[derive(Default)]
pub(crate) struct Poll {
    pub(crate) region: Vec<u8>,
    pub(crate) starts: Vec<usize>,
    pub(crate) lines: Vec<Line>,
    /// The line of each row of the batch returned.
    pub(crate) row_lines: Vec<usize>,
}

impl Poll {
    pub(crate) fn clear(&mut self) {
        self.region.clear();
        self.starts.clear();
        self.lines.clear();
        self.row_lines.clear();
    }

    /// Lay one message out; an empty payload (a retained message being cleared) carries no
    /// row unless the format is raw.
    pub(crate) fn push(&mut self, p: &Publish, raw: bool) {
        if !raw && p.payload.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let start = if raw {
            let start = self.region.len();
            self.region.extend_from_slice(&p.payload);
            self.region.push(b'\n');
            start
        } else {
            push_payload_line(&mut self.region, &p.payload)
        };
        self.starts.push(start);
        self.lines.push(Line {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            qos: p.qos as u8,
            retain: p.retain,
            message_id: (p.qos != QoS::AtMostOnce).then_some(p.pkid),
        });
    }

    fn raw_line(&self, line: usize) -> Vec<u8> {
        line_bytes(&self.region, &self.starts, line)
    }
}

/// `topic@message-id` (just the topic at QoS 0).
pub(crate) fn origin(line: &Line) -> String {
    match line.message_id {
        Some(id) => format!("{}@{id}", line.topic),
        None => line.topic.clone(),
    }
}

/// The user properties of a dead letter: why, and where it came from.
pub(crate) fn dead_letter_properties(reason: &str, line: &Line) -> PublishProperties {
    let mut user = vec![
        ("weir.reason".to_string(), reason.to_string()),
        ("weir.source.topic".to_string(), line.topic.clone()),
    ];
    if let Some(id) = line.message_id {
        user.push(("weir.source.message-id".to_string(), id.to_string()));
    }
    PublishProperties {
        user_properties: user,
        ..Default::default()
    }
}

impl MqttSource {
    /// Decode a poll; bad payloads go to the dead letters.
    pub(super) fn decode(&mut self, mut poll: Poll) -> Result<SourceEvent> {
        JobMetrics::add(&self.ctx.metrics.bytes_in, poll.region.len());
        let (batch, row_lines) = match self.format.raw {
            true => (self.raw_batch(&poll)?, (0..poll.lines.len()).collect()),
            false => self.decode_lines(&poll)?,
        };
        poll.row_lines = row_lines;
        let event = match batch {
            Some(b) => {
                let b = append_metadata(&self.ctx.table, b, |key| metadata_column(key, &poll))?;
                JobMetrics::add(&self.ctx.metrics.rows_in, b.num_rows());
                SourceEvent::Batch(b)
            }
            None => SourceEvent::Idle,
        };
        self.last = poll;
        Ok(event)
    }

    /// JSON or CSV payloads through the segment decoder and the timestamp policy.
    fn decode_lines(&mut self, poll: &Poll) -> Result<(Option<RecordBatch>, Vec<usize>)> {
        let decoded = decode_lines(&mut self.decoder, &poll.region, NAME)?;
        self.report_bad(decoded.bad, poll)?;
        let (batches, mut row_lines) = (decoded.batches, decoded.row_lines);
        let Some(first) = batches.first() else {
            return Ok((None, row_lines));
        };
        let batch = concat_batches(&first.schema(), &batches).map_err(mqtt_err)?;
        let Some(policy) = &self.time_policy else {
            return Ok((Some(batch), row_lines));
        };
        let timed = Timed {
            policy,
            schema: &self.ctx.schema,
            metrics: &self.ctx.metrics,
            name: NAME,
        };
        let (batch, bad) = apply_time_policy(timed, batch, &mut row_lines)?;
        self.report_bad(bad, poll)?;
        Ok((Some(batch), row_lines))
    }

    /// `'format' = 'raw'`: each payload, byte for byte, is the one column.
    fn raw_batch(&self, poll: &Poll) -> Result<Option<RecordBatch>> {
        if poll.lines.is_empty() {
            return Ok(None);
        }
        let values: Vec<Vec<u8>> = (0..poll.lines.len()).map(|i| poll.raw_line(i)).collect();
        let col: ArrayRef = Arc::new(BinaryArray::from_iter_values(values.iter()));
        let col = cast(&col, self.ctx.schema.field(0).data_type()).map_err(mqtt_err)?;
        Ok(Some(
            RecordBatch::try_new(self.ctx.schema.clone(), vec![col]).map_err(mqtt_err)?,
        ))
    }

    fn report_bad(&mut self, bad: Vec<BadRow>, poll: &Poll) -> Result<()> {
        for b in bad {
            let raw = b.raw.unwrap_or_else(|| poll.raw_line(b.line));
            if let Some(line) = poll.lines.get(b.line) {
                self.dead_letter(raw, b.reason, line)?;
            }
        }
        Ok(())
    }

    /// [`weir_engine::connector::Source::reject`]: rows of the last batch, traced back to their
    /// messages, handled as bad records.
    pub(super) fn reject_rows(&mut self, rows: &[usize], reason: &str) -> Result<bool> {
        let last = std::mem::take(&mut self.last);
        if rows.iter().any(|r| *r >= last.row_lines.len()) {
            self.last = last;
            return Ok(false); // not the last batch: let the engine report them
        }
        let mut result = Ok(true);
        for &r in rows {
            let line = last.row_lines[r];
            let Some(from) = last.lines.get(line) else {
                continue;
            };
            if let Err(e) = self.dead_letter(last.raw_line(line), reason.to_string(), from) {
                result = Err(e);
                break;
            }
        }
        self.last = last;
        result
    }

    /// Stop (on-error = fail), or count and report the record, and publish it with its origin
    /// to the dead-letter topic (on-error = dead-letter, the default when a topic is set).
    fn dead_letter(&mut self, raw: Vec<u8>, reason: String, line: &Line) -> Result<()> {
        let position = origin(line);
        if self.on_error == OnError::Fail {
            return Err(EngineError::Execution(format!(
                "bad record at {position}: {reason}"
            )));
        }
        self.publish_dead_letter(&raw, &reason, line)?;
        self.ctx.dead_letters.report(BadRecord {
            raw,
            reason,
            position,
        })
    }
}

/// The values of metadata column `key` for the rows of `poll`.
fn metadata_column(key: &str, poll: &Poll) -> Result<ArrayRef> {
    let rows = poll.row_lines.iter().filter_map(|l| poll.lines.get(*l));
    Ok(match key {
        "topic" => Arc::new(StringArray::from_iter_values(rows.map(|m| &m.topic))),
        "qos" => Arc::new(Int32Array::from_iter_values(rows.map(|m| i32::from(m.qos)))),
        "retain" => Arc::new(BooleanArray::from_iter(rows.map(|m| Some(m.retain)))),
        "message_id" => Arc::new(Int32Array::from_iter(
            rows.map(|m| m.message_id.map(i32::from)),
        )),
        other => return Err(mqtt_err(format!("no metadata key '{other}'"))),
    })
}
