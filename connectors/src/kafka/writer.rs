//! Turning result rows into Kafka records and producing them: value in the table's format,
//! key from `key.fields` in `key.format`, partition by `sink.partitioner`. Shared by the
//! at-least-once sink and the transactional one.

use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use weir_engine::connector::SinkContext;
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};

use super::key::{KeyFormat, KeyOptions};
use super::sink::Partitioner;
use super::{KafkaOptions, NAME};
use crate::filesystem::Format;
use crate::format::{batch_to_csv, batch_to_json_lines};
use crate::options::session_time_zone;

/// Record values and, when the table has key fields, keys.
type Encoded = (Vec<Vec<u8>>, Option<Vec<Vec<u8>>>);

pub(super) struct RecordWriter {
    pub producer: FutureProducer,
    pub topic: String,
    metrics: std::sync::Arc<weir_engine::observe::metrics::JobMetrics>,
    format: Format,
    raw: bool,
    key_format: Option<KeyFormat>,
    key_idx: Vec<usize>,
    /// The columns written to the value (all but the key's with `EXCEPT_KEY`).
    value_idx: Vec<usize>,
    partitioner: Partitioner,
    tz: Option<chrono_tz::Tz>,
    next: i32,
    partitions: Option<i32>,
    /// The sink subtask this writer serves (`fixed` writes to partition `subtask mod n`).
    subtask: usize,
}

fn err(m: impl std::fmt::Display) -> EngineError {
    EngineError::connector(NAME, m.to_string())
}

impl RecordWriter {
    /// A writer for the sink's table; `transactional_id` makes its producer transactional.
    pub fn new(
        ctx: &SinkContext,
        partitioner: Partitioner,
        transactional_id: Option<&str>,
    ) -> Result<Self> {
        let options = KafkaOptions::parse(&ctx.table).map_err(err)?;
        let keys = KeyOptions::parse(&ctx.table).map_err(err)?;
        let key_idx = keys
            .fields
            .iter()
            .map(|k| ctx.schema.index_of(k))
            .collect::<Result<Vec<_>, _>>()?;
        let value_idx = (0..ctx.schema.fields().len())
            .filter(|i| !(keys.except_key && key_idx.contains(i)))
            .collect();
        let mut config: ClientConfig = options.client_config();
        super::set_default(&mut config, "partitioner", "murmur2_random");
        if let Some(id) = transactional_id {
            config.set("transactional.id", id);
        }
        Ok(Self {
            producer: config.create().map_err(err)?,
            topic: options.topics[0].clone(),
            metrics: ctx.metrics.clone(),
            format: options.format,
            raw: options.raw,
            key_format: keys.format,
            key_idx,
            value_idx,
            partitioner,
            tz: session_time_zone(&ctx.settings).map_err(err)?,
            next: 0,
            partitions: None,
            subtask: ctx.subtask.index,
        })
    }

    /// Produce one record per row and wait until the broker has them all; `headers(i)` adds
    /// headers to row `i`'s record. Returns the number of records.
    pub async fn send(
        &mut self,
        batch: &RecordBatch,
        headers: Option<&(dyn Fn(usize) -> OwnedHeaders + Sync)>,
    ) -> Result<usize> {
        self.produce(batch, headers, None).await
    }

    /// Like [`RecordWriter::send`], but rows where `tombstones` is true are written as the key
    /// with a null value (upsert deletes).
    pub async fn send_upserts(
        &mut self,
        batch: &RecordBatch,
        tombstones: &[bool],
    ) -> Result<usize> {
        self.produce(batch, None, Some(tombstones)).await
    }

    async fn produce(
        &mut self,
        batch: &RecordBatch,
        headers: Option<&(dyn Fn(usize) -> OwnedHeaders + Sync)>,
        tombstones: Option<&[bool]>,
    ) -> Result<usize> {
        let (values, keys) = self.encode(batch)?;
        let count = match self.partitioner {
            Partitioner::RoundRobin | Partitioner::Fixed => Some(self.partition_count().await?),
            Partitioner::Default => None,
        };
        let fixed = count.map_or(0, |n| (self.subtask % n.max(1) as usize) as i32);
        let producer = self.producer.clone();
        let mut acks = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let mut rec: FutureRecord<'_, Vec<u8>, Vec<u8>> = FutureRecord::to(&self.topic);
            if !tombstones.is_some_and(|t| t[i]) {
                rec = rec.payload(v);
            }
            if let Some(k) = keys.as_ref().map(|k| &k[i]) {
                rec = rec.key(k);
            }
            if let Some(h) = headers {
                rec = rec.headers(h(i));
            }
            rec = match (self.partitioner, count) {
                (Partitioner::Fixed, _) => rec.partition(fixed),
                (Partitioner::RoundRobin, Some(n)) => {
                    self.next = (self.next + 1) % n;
                    rec.partition(self.next)
                }
                _ => rec,
            };
            acks.push(enqueue(&producer, rec).await?);
        }
        for a in acks {
            a.await
                .map_err(|_| err("the producer went away"))?
                .map_err(|(e, _)| err(format!("delivery failed: {e}")))?;
        }
        JobMetrics::add(&self.metrics.rows_out, values.len());
        Ok(values.len())
    }

    /// Values and (when configured) keys of the rows.
    fn encode(&self, batch: &RecordBatch) -> Result<Encoded> {
        let value_batch = batch.project(&self.value_idx)?;
        let values = if self.raw {
            raw_values(&value_batch)?
        } else {
            lines(&value_batch, self.format, self.tz)?
        };
        let keys = match self.key_format {
            None => None,
            Some(f) => {
                let key_batch = batch.project(&self.key_idx)?;
                Some(match f {
                    KeyFormat::Raw => raw_values(&key_batch)?,
                    KeyFormat::Json => lines(&key_batch, Format::Json, self.tz)?,
                    KeyFormat::Csv => lines(&key_batch, Format::Csv, self.tz)?,
                })
            }
        };
        Ok((values, keys))
    }

    pub async fn partition_count(&mut self) -> Result<i32> {
        if let Some(n) = self.partitions {
            return Ok(n);
        }
        let (producer, topic) = (self.producer.clone(), self.topic.clone());
        let n = tokio::task::spawn_blocking(move || {
            let md = producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10));
            md.map(|m| {
                m.topics()
                    .first()
                    .map_or(1, |t| t.partitions().len().max(1) as i32)
            })
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?
        .map_err(err)?;
        self.partitions = Some(n);
        Ok(n)
    }

    /// Wait until everything queued is delivered.
    pub async fn flush(&mut self) -> Result<()> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .map_err(|e| err(format!("flush failed: {e}")))
    }
}

/// The lines of `batch` in `format` (one record each; the MQTT sink's payloads too).
pub(crate) fn lines(
    batch: &RecordBatch,
    format: Format,
    tz: Option<chrono_tz::Tz>,
) -> Result<Vec<Vec<u8>>> {
    let mut buf = Vec::new();
    match format {
        Format::Json => batch_to_json_lines(batch, tz, &mut buf)?,
        Format::Csv => batch_to_csv(batch, tz, &mut buf, false)?,
        Format::Parquet => {
            return Err(EngineError::Internal(
                "Kafka records are not written as Parquet".into(),
            ))
        }
    }
    Ok(buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| l.to_vec())
        .collect())
}

/// `'format' = 'raw'`: the first column's bytes are the value.
fn raw_values(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    use datafusion::arrow::array::{Array, BinaryArray};
    let col = datafusion::arrow::compute::cast(
        batch.column(0),
        &datafusion::arrow::datatypes::DataType::Binary,
    )?;
    let col = col
        .as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or_else(|| EngineError::Internal("binary cast".into()))?;
    Ok((0..col.len())
        .map(|i| {
            if col.is_null(i) {
                vec![]
            } else {
                col.value(i).to_vec()
            }
        })
        .collect())
}

/// Hand a record to librdkafka's queue without waiting for its delivery; when the queue is
/// full, wait for deliveries to make room (this is where a slow broker slows the job down).
async fn enqueue<'a>(
    producer: &FutureProducer,
    mut rec: FutureRecord<'a, Vec<u8>, Vec<u8>>,
) -> Result<DeliveryFuture> {
    loop {
        match producer.send_result(rec) {
            Ok(f) => return Ok(f),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(err(format!("cannot send: {e}"))),
        }
    }
}
