//! The exactly-once Kafka sink (`sink.delivery-guarantee = 'exactly-once'`).
//!
//! Rows of a checkpoint interval are written ahead to a file in the sink's state directory
//! (Arrow IPC), not to Kafka. When the barrier passes, that file is sealed and becomes part of
//! the checkpoint; when the checkpoint completes, its rows are produced in one Kafka
//! transaction and committed. Every record carries `weir.txn` (the transactional id and the
//! checkpoint) and `weir.seq` (its row number) headers.
//!
//! Recovery does not depend on resuming a transaction of the crashed process (librdkafka cannot;
//! Arroyo loses data here, its issue #224): the restarted sink reads the tail of the topic back
//! with `read_committed`, finds which rows of each pending checkpoint are already visible, and
//! produces only the others in a new transaction. So a crash before, during or after a commit
//! leaves every row visible exactly once, also on brokers whose `read_committed` still shows
//! records of aborted transactions.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Duration;

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::Producer;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use weir_engine::checkpoint::pending;
use weir_engine::connector::SinkContext;
use weir_engine::{EngineError, Result};

use super::recovery_scan::{visible_seqs, RECOVERY_DEADLINE};
use super::sink::Partitioner;
use super::writer::RecordWriter;
use super::{KafkaOptions, NAME};

const TIMEOUT: Duration = Duration::from_secs(30);

fn err(m: impl std::fmt::Display) -> EngineError {
    EngineError::connector(NAME, m.to_string())
}

/// A sealed checkpoint interval waiting for its checkpoint to complete.
/// Version 1 wrote it as `[checkpoint, file, from]`; serde reads a struct from an array in
/// field order, so both forms read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pending {
    checkpoint: u64,
    /// The rows of the checkpoint's interval, written ahead (Arrow IPC).
    file: PathBuf,
    /// Per partition, an offset at or before the first record this checkpoint can produce.
    from: BTreeMap<i32, i64>,
}

pub(super) struct TransactionalSink {
    ctx: SinkContext,
    writer: RecordWriter,
    txn_id: String,
    dir: PathBuf,
    epoch: Option<StreamWriter<BufWriter<File>>>,
    pending: Vec<Pending>,
    /// Restored work still to finish before anything else.
    recovering: Option<Vec<Pending>>,
    ready: bool,
}

impl TransactionalSink {
    pub(super) fn open(ctx: SinkContext, partitioner: Partitioner) -> Result<Self> {
        let dir = ctx
            .state_dir
            .clone()
            .ok_or_else(|| err("the exactly-once sink needs the job's checkpoint directory"))?;
        std::fs::create_dir_all(&dir).map_err(err)?;
        let prefix = ctx
            .table
            .option("sink.transactional-id-prefix")
            .unwrap_or("weir")
            .to_string();
        let leaf = dir.file_name().map(|n| n.to_string_lossy().to_string());
        let txn_id = format!("{prefix}-{}", leaf.unwrap_or_default());
        let writer = RecordWriter::new(&ctx, partitioner, Some(&txn_id))?;
        let recovering = match &ctx.restore {
            // The sink runs as one task (`KafkaSinkFactory::parallel`), so a checkpoint has
            // one snapshot of it; several would be a checkpoint this sink cannot finish.
            Some(r) if !r.subtasks.is_empty() => {
                return Err(err(
                    "the checkpoint holds several subtasks of this sink; it runs as one",
                ))
            }
            Some(r) => Some(parse_pending(&r.pending)?),
            None => None,
        };
        Ok(Self {
            ctx,
            writer,
            txn_id,
            dir,
            epoch: None,
            pending: Vec::new(),
            recovering,
            ready: false,
        })
    }

    /// Fence any earlier producer of this transactional id (aborting its open transaction),
    /// finish the restored checkpoint's commits, and clear files no checkpoint refers to.
    async fn prepare(&mut self) -> Result<()> {
        if self.ready {
            return Ok(());
        }
        let producer = self.writer.producer.clone();
        blocking(move || producer.init_transactions(TIMEOUT)).await?;
        let keep: Vec<Pending> = self.recovering.take().unwrap_or_default();
        for p in &keep {
            self.publish(p, true).await?;
        }
        for e in std::fs::read_dir(&self.dir).map_err(err)?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        self.ready = true;
        Ok(())
    }

    fn append(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.epoch.is_none() {
            let f = File::create(self.dir.join("epoch.arrow")).map_err(err)?;
            let w = StreamWriter::try_new(BufWriter::new(f), &batch.schema())?;
            self.epoch = Some(w);
        }
        self.epoch.as_mut().expect("open").write(batch)?;
        Ok(())
    }

    /// Seal the interval's rows as checkpoint `id`'s.
    async fn seal(&mut self, id: u64) -> Result<String> {
        self.prepare().await?;
        if let Some(mut w) = self.epoch.take() {
            w.finish()?;
            let f = w.into_inner()?.into_inner().map_err(|e| err(e.error()))?;
            f.sync_all().map_err(err)?;
            let file = self.dir.join(format!("{id:08}.arrow"));
            std::fs::rename(self.dir.join("epoch.arrow"), &file).map_err(err)?;
            let from = self.end_offsets().await?;
            self.pending.push(Pending {
                checkpoint: id,
                file,
                from,
            });
        }
        pending::write(&self.pending)
    }

    async fn end_offsets(&mut self) -> Result<BTreeMap<i32, i64>> {
        let n = self.writer.partition_count().await?;
        let (producer, topic) = (self.writer.producer.clone(), self.writer.topic.clone());
        blocking(move || {
            (0..n)
                .map(|p| {
                    let (_, high) = producer.client().fetch_watermarks(&topic, p, TIMEOUT)?;
                    Ok((p, high))
                })
                .collect()
        })
        .await
    }

    /// Produce a sealed interval in one transaction; with `resume`, skip rows already visible.
    async fn publish(&mut self, p: &Pending, resume: bool) -> Result<()> {
        let marker = format!("{}:{}", self.txn_id, p.checkpoint);
        let Ok(file) = File::open(&p.file) else {
            return Ok(()); // published and cleaned up before the crash
        };
        let present = if resume {
            self.visible_rows(&marker, &p.from).await?
        } else {
            HashSet::new()
        };
        let producer = self.writer.producer.clone();
        blocking(move || producer.begin_transaction()).await?;
        let mut seq = 0u64;
        for batch in StreamReader::try_new(std::io::BufReader::new(file), None)? {
            let batch = batch?;
            let seqs: Vec<u64> = (seq..seq + batch.num_rows() as u64).collect();
            seq += batch.num_rows() as u64;
            let keep: Vec<u64> = seqs
                .iter()
                .copied()
                .filter(|s| !present.contains(s))
                .collect();
            let mask = BooleanArray::from_iter(seqs.iter().map(|s| Some(!present.contains(s))));
            let batch = filter_record_batch(&batch, &mask)?;
            let headers = |i: usize| {
                let s = keep[i].to_string();
                OwnedHeaders::new()
                    .insert(Header {
                        key: "weir.txn",
                        value: Some(marker.as_bytes()),
                    })
                    .insert(Header {
                        key: "weir.seq",
                        value: Some(s.as_bytes()),
                    })
            };
            self.writer.send(&batch, Some(&headers)).await?;
        }
        let producer = self.writer.producer.clone();
        blocking(move || producer.commit_transaction(TIMEOUT)).await?;
        let _ = std::fs::remove_file(&p.file);
        Ok(())
    }

    /// Row numbers of `marker`'s records already visible to `read_committed` readers.
    async fn visible_rows(&self, marker: &str, from: &BTreeMap<i32, i64>) -> Result<HashSet<u64>> {
        let options = KafkaOptions::parse(&self.ctx.table).map_err(err)?;
        let mut config: ClientConfig = options.client_config();
        config
            .set("group.id", format!("{}-recovery", self.txn_id))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        let (topic, from, marker) = (self.writer.topic.clone(), from.clone(), marker.to_string());
        tokio::task::spawn_blocking(move || {
            visible_seqs(&config, &topic, &from, &marker, RECOVERY_DEADLINE)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?
        .map_err(err)
    }
}

pub(crate) fn parse_pending(text: &str) -> Result<Vec<Pending>> {
    pending::read(text, "kafka sink")
}

/// Run a blocking librdkafka call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> rdkafka::error::KafkaResult<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?
        .map_err(err)
}

impl weir_engine::connector::Sink for TransactionalSink {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.prepare().await?;
            if batch.num_rows() > 0 {
                self.append(&batch)?;
            }
            Ok(())
        })
    }

    /// The final checkpoint has committed everything; rows after it (none in a finished job)
    /// were never checkpointed.
    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.epoch = None;
            let _ = std::fs::remove_file(self.dir.join("epoch.arrow"));
            Ok(())
        })
    }

    fn pre_commit(&mut self, checkpoint: u64) -> BoxFuture<'_, Result<String>> {
        Box::pin(self.seal(checkpoint))
    }

    fn commit(&mut self, checkpoint: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.prepare().await?;
            let (ready, later): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|p| p.checkpoint <= checkpoint);
            self.pending = later;
            for p in &ready {
                self.publish(p, false).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn pending_transactions_of_either_version_read_back() {
        let p = Pending {
            checkpoint: 9,
            file: PathBuf::from("/ck/sinks/sink-2/00000009.arrow"),
            from: BTreeMap::from([(0, 12), (3, 40)]),
        };
        let text = pending::write(std::slice::from_ref(&p)).unwrap();
        assert!(text.contains("\"from\":{\"0\":12,\"3\":40}"), "{text}");
        assert_eq!(parse_pending(&text).unwrap(), std::slice::from_ref(&p));
        let v1 = r#"[[9,"/ck/sinks/sink-2/00000009.arrow",{"0":12,"3":40}]]"#;
        assert_eq!(parse_pending(v1).unwrap(), [p]);
        assert!(parse_pending(r#"[[9,"f",{"x":1}]]"#).is_err());
    }
}
