//! The `kafka` sink: one record per row, value in the table's format (JSON, CSV or raw), key
//! from `key.fields` in `key.format` (and left out of the value with `value.fields-include =
//! 'EXCEPT_KEY'`), partitioned by `sink.partitioner`.
//!
//! By default a batch is acknowledged only when the broker has acknowledged every record of
//! it, so the sink is at-least-once and slows the job down when the broker does
//! (backpressure). `sink.delivery-guarantee = 'exactly-once'` in a checkpointing job uses
//! [`super::transactional`] instead.

use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use weir_engine::connector::{Sink, SinkContext, SinkFactory};
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::key::KeyOptions;
use super::writer::RecordWriter;
use super::{KafkaOptions, NAME};

/// How records are spread over partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Partitioner {
    /// By key hash (murmur2, as the Java client), records without key spread by librdkafka.
    Default,
    /// Each sink subtask to one partition, subtask `i` to partition `i mod n` (Flink's
    /// `fixed`; everything to partition 0 with one sink subtask).
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

/// Creates `kafka` sinks.
#[derive(Debug, Default, Clone, Copy)]
pub struct KafkaSinkFactory;

impl SinkFactory for KafkaSinkFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        KafkaOptions::parse(table)?.check_one_topic()?;
        partitioner(table)?;
        guarantee(table)?;
        KeyOptions::parse(table)?;
        Ok(())
    }

    fn guarantee(&self, table: &TableDef, checkpointing: bool) -> &'static str {
        match guarantee(table) {
            Ok("exactly-once") if checkpointing => "exactly-once",
            _ => "at-least-once",
        }
    }

    /// Each subtask has its own producer (and, exactly-once, its own transactional id
    /// `<prefix>-sink-<n>.<subtask>`; see `handover` for restores).
    fn parallel(&self, _table: &TableDef, _checkpointing: bool) -> bool {
        true
    }

    fn create(&self, ctx: SinkContext) -> Result<Box<dyn Sink>> {
        let err = |m: String| EngineError::connector(NAME, m);
        let exactly_once = guarantee(&ctx.table).map_err(err)? == "exactly-once";
        let partitioner = partitioner(&ctx.table).map_err(err)?;
        if exactly_once {
            if !ctx.checkpointing {
                return Err(err(
                    "'sink.delivery-guarantee' = 'exactly-once' commits on \
                     checkpoints: run the job with a checkpoint directory (--checkpoint-dir)"
                        .into(),
                ));
            }
            let sink = super::transactional::TransactionalSink::open(ctx, partitioner)?;
            return Ok(Box::new(sink));
        }
        let writer = RecordWriter::new(&ctx, partitioner, None)?;
        Ok(Box::new(KafkaSink { writer }))
    }
}

/// The at-least-once sink: every batch is acknowledged by the broker before the next one.
struct KafkaSink {
    writer: RecordWriter,
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.writer.send(&batch, None).await.map(|_| ()) })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.writer.flush())
    }
}
