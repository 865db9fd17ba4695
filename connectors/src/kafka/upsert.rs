//! The `upsert-kafka` sink (Flink's connector): writes an updating result as the latest value
//! per key. The message key is the table's `PRIMARY KEY ... NOT ENFORCED` columns in
//! `key.format`; `+I` and `+U` rows are written as the key's new value in `value.format`, `-D`
//! rows as a tombstone (the key with a null value), and `-U` rows are skipped because the `+U`
//! after them replaces the value. Reading the topic and keeping the last value per key (dropping
//! keys whose last value is a tombstone) gives the result table.
//!
//! Records of one key go to one partition (murmur2 of the key, as the Java client), so their
//! order is kept. Every batch waits for the broker's acknowledgement (at-least-once; replays
//! after a crash rewrite the same latest values, which an upsert topic absorbs).

use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use weir_engine::changelog::{has_op, split_op};
use weir_engine::connector::{Sink, SinkContext, SinkFactory};
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::sink::Partitioner;
use super::upsert_state::Materializer;
use super::writer::RecordWriter;

/// The connector name in `'connector' = 'upsert-kafka'`.
pub const UPSERT_NAME: &str = "upsert-kafka";

/// The options of an upsert table as a plain `kafka` table with its key spelt out.
fn as_kafka_table(table: &TableDef) -> Result<TableDef, String> {
    if table.primary_key.is_empty() {
        return Err(
            "'upsert-kafka' needs a PRIMARY KEY (..) NOT ENFORCED: its columns are \
                    the message key"
                .into(),
        );
    }
    for k in [
        "key.fields",
        "format",
        "sink.delivery-guarantee",
        "sink.partitioner",
    ] {
        if table.options.contains_key(k) {
            return Err(format!("option '{k}' does not apply to 'upsert-kafka'"));
        }
    }
    let mut t = table.clone();
    let value = t
        .options
        .remove("value.format")
        .ok_or("connector 'upsert-kafka' needs the option 'value.format' (json, csv or raw)")?;
    if !t.options.contains_key("key.format") {
        return Err(
            "connector 'upsert-kafka' needs the option 'key.format' (json, csv or raw)".into(),
        );
    }
    t.options.insert("connector".into(), super::NAME.into());
    t.options.insert("format".into(), value);
    t.options
        .insert("key.fields".into(), table.primary_key.join(";"));
    Ok(t)
}

/// Creates `upsert-kafka` sinks.
#[derive(Debug, Default, Clone, Copy)]
pub struct UpsertKafkaSinkFactory;

impl SinkFactory for UpsertKafkaSinkFactory {
    fn name(&self) -> &'static str {
        UPSERT_NAME
    }

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        let t = as_kafka_table(table)?;
        super::KafkaOptions::parse(&t)?.check_one_topic()?;
        super::key::KeyOptions::parse(&t)?;
        Ok(())
    }

    fn guarantee(&self, _table: &TableDef, _checkpointing: bool) -> &'static str {
        "at-least-once (idempotent upserts per key)"
    }

    fn accepts_updates(&self, _table: &TableDef) -> bool {
        true
    }

    fn create(&self, mut ctx: SinkContext) -> Result<Box<dyn Sink>> {
        let err = |m: String| EngineError::connector(UPSERT_NAME, m);
        ctx.table = std::sync::Arc::new(as_kafka_table(&ctx.table).map_err(err)?);
        if has_op(&ctx.schema) {
            let fields = ctx.schema.fields()[1..].to_vec();
            ctx.schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        }
        let key_columns = ctx
            .table
            .primary_key
            .iter()
            .map(|k| ctx.schema.index_of(k).map_err(|e| err(e.to_string())))
            .collect::<Result<Vec<usize>>>()?;
        let materializer = Materializer::new(ctx.schema.clone(), key_columns)?;
        let writer = RecordWriter::new(&ctx, Partitioner::Default, None)?;
        Ok(Box::new(UpsertKafkaSink {
            writer,
            materializer,
        }))
    }
}

struct UpsertKafkaSink {
    writer: RecordWriter,
    materializer: Materializer,
}

impl UpsertKafkaSink {
    async fn write_changes(&mut self, batch: RecordBatch) -> Result<()> {
        if !has_op(&batch.schema()) {
            // Append-only rows: each is its key's new value.
            let none = vec![false; batch.num_rows()];
            return self.writer.send_upserts(&batch, &none).await.map(|_| ());
        }
        let (kinds, rows) = split_op(&batch)?;
        let w = self.materializer.apply(&kinds, &rows)?;
        self.writer
            .send_upserts(&w.rows, &w.tombstones)
            .await
            .map(|_| ())
    }
}

impl Sink for UpsertKafkaSink {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write_changes(batch))
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.writer.flush())
    }
}
