//! The `kafka` sink: one record per row, value in the table's format (JSON or CSV), key from
//! `key.fields`, partitioned by `sink.partitioner`.
//!
//! A batch is acknowledged only when the broker has acknowledged every record of it, so the
//! sink is at-least-once and slows the job down when the broker does (backpressure).
//! `sink.delivery-guarantee = 'exactly-once'` is validated here and implemented with the
//! checkpoint work (Kafka transactions committed on checkpoint completion).

use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use weir_engine::connector::{Sink, SinkContext, SinkFactory};
use weir_engine::metrics::JobMetrics;
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::{KafkaOptions, NAME};
use crate::filesystem::Format;
use crate::format::{batch_to_csv, batch_to_json_lines};
use crate::options::session_time_zone;

/// How records are spread over partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partitioner {
    /// By key hash (murmur2, as the Java client), records without key spread by librdkafka.
    Default,
    /// Everything to partition 0 (Flink's `fixed` with one sink task).
    Fixed,
    RoundRobin,
}

fn partitioner(table: &TableDef) -> Result<Partitioner, String> {
    match table
        .option("sink.partitioner")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("default") => Ok(Partitioner::Default),
        Some("fixed") => Ok(Partitioner::Fixed),
        Some("round-robin") => Ok(Partitioner::RoundRobin),
        Some(other) => Err(format!(
            "option 'sink.partitioner' must be default, fixed or round-robin, not '{other}'"
        )),
    }
}

fn guarantee(table: &TableDef) -> Result<&'static str, String> {
    match table.option("sink.delivery-guarantee").map(|s| s.to_ascii_lowercase()).as_deref() {
        None | Some("at-least-once") | Some("none") => Ok("at-least-once"),
        Some("exactly-once") => {
            if table.option("sink.transactional-id-prefix").is_none() {
                return Err("'exactly-once' delivery needs the option 'sink.transactional-id-prefix'".into());
            }
            Ok("exactly-once")
        }
        Some(other) => Err(format!(
            "option 'sink.delivery-guarantee' must be at-least-once, exactly-once or none, not '{other}'"
        )),
    }
}

fn key_fields(table: &TableDef) -> Result<Vec<String>, String> {
    let Some(v) = table.option("key.fields") else {
        return Ok(vec![]);
    };
    let fields: Vec<String> = v
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for f in &fields {
        if table.column(f).is_none() {
            return Err(format!(
                "option 'key.fields' names '{f}', which is not a column"
            ));
        }
    }
    Ok(fields)
}

/// Creates `kafka` sinks.
#[derive(Debug, Default, Clone, Copy)]
pub struct KafkaSinkFactory;

impl SinkFactory for KafkaSinkFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        KafkaOptions::parse(table)?;
        partitioner(table)?;
        guarantee(table)?;
        key_fields(table)?;
        Ok(())
    }

    fn guarantee(&self, table: &TableDef) -> &'static str {
        // Transactions arrive with checkpoints; until then every mode delivers at least once.
        let _ = guarantee(table);
        "at-least-once"
    }

    fn create(&self, ctx: SinkContext) -> Result<Box<dyn Sink>> {
        let err = |m: String| EngineError::connector(NAME, m);
        let options = KafkaOptions::parse(&ctx.table).map_err(err)?;
        let partitioner = partitioner(&ctx.table).map_err(err)?;
        let keys = key_fields(&ctx.table).map_err(err)?;
        let key_idx = keys
            .iter()
            .map(|k| ctx.schema.index_of(k))
            .collect::<Result<Vec<_>, _>>()?;
        let mut config = options.client_config();
        super::set_default(&mut config, "partitioner", "murmur2_random");
        let producer: FutureProducer = config.create().map_err(|e| err(e.to_string()))?;
        let tz = session_time_zone(&ctx.settings).map_err(err)?;
        let topic = options.topics[0].clone();
        Ok(Box::new(KafkaSink {
            ctx,
            producer,
            topic,
            format: options.format,
            raw: options.raw,
            key_idx,
            partitioner,
            tz,
            next: 0,
            partitions: None,
        }))
    }
}

struct KafkaSink {
    ctx: SinkContext,
    producer: FutureProducer,
    topic: String,
    format: Format,
    raw: bool,
    key_idx: Vec<usize>,
    partitioner: Partitioner,
    tz: Option<chrono_tz::Tz>,
    next: i32,
    partitions: Option<i32>,
}

/// The lines of `batch` in `format`.
fn lines(batch: &RecordBatch, format: Format, tz: Option<chrono_tz::Tz>) -> Result<Vec<Vec<u8>>> {
    let mut buf = Vec::new();
    match format {
        Format::Json => batch_to_json_lines(batch, tz, &mut buf)?,
        Format::Csv => batch_to_csv(batch, tz, &mut buf, false)?,
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
    let col = col.as_any().downcast_ref::<BinaryArray>().expect("binary");
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

impl KafkaSink {
    async fn partition_count(&mut self) -> Result<i32> {
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
        .map_err(|e| EngineError::connector(NAME, e.to_string()))?;
        self.partitions = Some(n);
        Ok(n)
    }

    async fn write_batch(&mut self, batch: RecordBatch) -> Result<()> {
        let values = if self.raw {
            raw_values(&batch)?
        } else {
            lines(&batch, self.format, self.tz)?
        };
        let keys = if self.key_idx.is_empty() {
            None
        } else {
            Some(lines(
                &batch.project(&self.key_idx)?,
                Format::Json,
                self.tz,
            )?)
        };
        let count = match self.partitioner {
            Partitioner::RoundRobin => Some(self.partition_count().await?),
            _ => None,
        };
        let producer = self.producer.clone();
        let mut acks = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let mut rec: FutureRecord<'_, Vec<u8>, Vec<u8>> =
                FutureRecord::to(&self.topic).payload(v);
            if let Some(k) = keys.as_ref().map(|k| &k[i]) {
                rec = rec.key(k);
            }
            rec = match (self.partitioner, count) {
                (Partitioner::Fixed, _) => rec.partition(0),
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
                .map_err(|_| EngineError::connector(NAME, "the producer went away"))?
                .map_err(|(e, _)| EngineError::connector(NAME, format!("delivery failed: {e}")))?;
        }
        JobMetrics::add(&self.ctx.metrics.rows_out, values.len());
        Ok(())
    }
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
            Err((e, _)) => return Err(EngineError::connector(NAME, format!("cannot send: {e}"))),
        }
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write_batch(batch))
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let producer = self.producer.clone();
            tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))?
                .map_err(|e| EngineError::connector(NAME, format!("flush failed: {e}")))
        })
    }
}
