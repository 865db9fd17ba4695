//! The `upsert-kafka` sink (Flink's connector): writes an updating result as the latest value
//! per key. The message key is the table's `PRIMARY KEY ... NOT ENFORCED` columns in
//! `key.format`; `+I` and `+U` rows are written as the key's new value in `value.format`, `-D`
//! rows as a tombstone (the key with a null value), and `-U` rows are skipped because the `+U`
//! after them replaces the value. Reading the topic and keeping the last value per key (dropping
//! keys whose last value is a tombstone) gives the result table.
//!
//! A changelog goes through a materializer ([`super::upsert_state`]) so a key whose row left the
//! result gets a tombstone; in a checkpointing job its state is part of every checkpoint
//! ([`super::upsert_store`]), so after a crash it holds what it held at the checkpoint.
//!
//! Records of one key go to one partition (murmur2 of the key, as the Java client), so their
//! order is kept. Every batch waits for the broker's acknowledgement (at-least-once; replays
//! after a crash rewrite the same latest values, which an upsert topic absorbs).

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use weir_engine::changelog::{has_op, split_op, RowKind};
use weir_engine::connector::{Sink, SinkContext, SinkFactory};
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::sink::Partitioner;
use super::upsert_state::Materializer;
use super::upsert_store::StateFiles;
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
        let materialize = materializes(
            &ctx.settings,
            ctx.upsert_key.as_deref(),
            &ctx.table.primary_key,
        );
        let mut materializer = match materialize.map_err(err)? {
            true => Some(Materializer::new(ctx.schema.clone(), key_columns)?),
            false => None,
        };
        let files = match (&mut materializer, &ctx.state_dir, ctx.checkpointing) {
            (Some(m), Some(dir), true) => {
                let restore = ctx.restore.as_ref().map(|r| r.pending.as_str());
                Some(StateFiles::open(dir.clone(), restore, m)?)
            }
            _ => None,
        };
        let writer = RecordWriter::new(&ctx, Partitioner::Default, None)?;
        Ok(Box::new(UpsertKafkaSink {
            writer,
            materializer,
            files,
        }))
    }
}

/// Flink's `table.exec.sink.upsert-materialize`. `AUTO` (the default) materializes unless the
/// planner derived the query's upsert key and it is the table's `PRIMARY KEY` (a GROUP BY of
/// the key columns, a deduplication by them): then a `-U` always has its `+U` and rows leave
/// only through a `-D`, so the changelog can be written as it is. `FORCE` always materializes;
/// `NONE` never does (a `-U` is skipped and only a `-D` deletes its key).
fn materializes(
    settings: &std::collections::BTreeMap<String, String>,
    upsert_key: Option<&[String]>,
    primary_key: &[String],
) -> Result<bool, String> {
    let option = "table.exec.sink.upsert-materialize";
    let same_key = upsert_key.is_some_and(|k| {
        let k: std::collections::BTreeSet<&String> = k.iter().collect();
        k == primary_key.iter().collect()
    });
    match settings
        .get(option)
        .map(|v| v.to_ascii_uppercase())
        .as_deref()
    {
        None | Some("AUTO") => Ok(!same_key),
        Some("FORCE") => Ok(true),
        Some("NONE") => Ok(false),
        Some(other) => Err(format!("'{option}' is '{other}'; use AUTO, FORCE or NONE")),
    }
}

struct UpsertKafkaSink {
    writer: RecordWriter,
    /// `None` when the changelog is written as it is (see [`materializes`]).
    materializer: Option<Materializer>,
    /// The materializer's checkpoints (checkpointing jobs).
    files: Option<StateFiles>,
}

impl UpsertKafkaSink {
    async fn write_changes(&mut self, batch: RecordBatch) -> Result<()> {
        if !has_op(&batch.schema()) {
            // Append-only rows: each is its key's new value.
            let none = vec![false; batch.num_rows()];
            return self.writer.send_upserts(&batch, &none).await.map(|_| ());
        }
        let (kinds, rows) = split_op(&batch)?;
        let Some(m) = self.materializer.as_mut() else {
            // As it is: `+I`/`+U` write the key's value, `-D` a tombstone, `-U` is skipped.
            let keep: Vec<bool> = kinds.iter().map(|k| *k != RowKind::UpdateBefore).collect();
            let rows = filter_record_batch(&rows, &BooleanArray::from(keep))?;
            let deletes: Vec<bool> = kinds
                .iter()
                .filter(|k| **k != RowKind::UpdateBefore)
                .map(|k| *k == RowKind::Delete)
                .collect();
            return self.writer.send_upserts(&rows, &deletes).await.map(|_| ());
        };
        let w = m.apply(&kinds, &rows)?;
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

    /// Every batch was acknowledged when written; the materializer's changes are saved.
    fn pre_commit(&mut self, checkpoint: u64) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move {
            self.writer.flush().await?;
            match (&mut self.files, &mut self.materializer) {
                (Some(f), Some(m)) => f.save(checkpoint, m),
                _ => Ok(String::new()),
            }
        })
    }

    fn commit(&mut self, checkpoint: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            match &mut self.files {
                Some(f) => f.committed(checkpoint),
                None => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::materializes;
    use std::collections::BTreeMap;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn auto_materializes_unless_the_querys_key_is_the_tables_key() {
        let auto = BTreeMap::new();
        let pk = keys(&["b", "a"]);
        assert!(!materializes(&auto, Some(&keys(&["a", "b"])), &pk).unwrap());
        assert!(materializes(&auto, Some(&keys(&["a"])), &pk).unwrap());
        assert!(materializes(&auto, None, &pk).unwrap());
        let set =
            |v: &str| BTreeMap::from([("table.exec.sink.upsert-materialize".into(), v.into())]);
        assert!(materializes(&set("force"), Some(&keys(&["a", "b"])), &pk).unwrap());
        assert!(!materializes(&set("NONE"), None, &pk).unwrap());
        let e = materializes(&set("sometimes"), None, &pk).unwrap_err();
        assert!(e.contains("AUTO, FORCE or NONE"), "{e}");
    }
}
