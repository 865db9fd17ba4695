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
//!
//! The sink runs one subtask per subtask of its input, each with its own transactional id and
//! state directory; a restore at any parallelism is finished by the first subtask
//! ([`super::handover`]). The subtasks take turns to commit ([`commit_turn`]), so one
//! transaction per topic is open at a time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
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

use super::handover::{self, OldSubtask};
use super::recovery_scan::{visible_seqs, RECOVERY_DEADLINE};
use super::sink::Partitioner;
use super::writer::RecordWriter;
use super::{KafkaOptions, NAME};

const TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn err(m: impl std::fmt::Display) -> EngineError {
    EngineError::connector(NAME, m.to_string())
}

/// A sealed checkpoint interval waiting for its checkpoint to complete.
/// Version 1 wrote it as `[checkpoint, file, from]`; serde reads a struct from an array in
/// field order, so both forms read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(super) checkpoint: u64,
    /// The rows of the checkpoint's interval, written ahead (Arrow IPC).
    pub(super) file: PathBuf,
    /// Per partition, an offset at or before the first record this checkpoint can produce.
    pub(super) from: BTreeMap<i32, i64>,
}

pub(super) struct TransactionalSink {
    ctx: SinkContext,
    writer: RecordWriter,
    txn_id: String,
    dir: PathBuf,
    epoch: Option<StreamWriter<BufWriter<File>>>,
    pending: Vec<Pending>,
    /// The restored checkpoint's subtasks, which the first subtask finishes before anything
    /// else (empty for the others).
    recovering: Vec<OldSubtask>,
    /// The files of the restored checkpoint's intervals, which no subtask clears.
    restored_files: HashSet<PathBuf>,
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
        let old = handover::old_subtasks(&ctx, &prefix, &dir)?;
        let restored_files = handover::referenced(&old);
        let recovering = match ctx.subtask.index {
            0 => {
                handover::fence_all(&ctx, &old, TIMEOUT)?;
                old
            }
            _ => Vec::new(),
        };
        Ok(Self {
            ctx,
            writer,
            txn_id,
            dir,
            epoch: None,
            pending: Vec::new(),
            recovering,
            restored_files,
            ready: false,
        })
    }

    /// Fence any earlier producer of this transactional id, finish the restored checkpoint's
    /// commits (the first subtask, for every old subtask: their producers were fenced at
    /// open), and clear files no checkpoint refers to.
    async fn prepare(&mut self) -> Result<()> {
        if self.ready {
            return Ok(());
        }
        let producer = self.writer.producer.clone();
        blocking(move || producer.init_transactions(TIMEOUT)).await?;
        let owned = handover::current_dirs(&self.ctx, &self.dir);
        for old in std::mem::take(&mut self.recovering) {
            for p in &old.pending {
                self.publish(p, &old.txn_id, true).await?;
            }
            if !owned.contains(&old.dir) {
                handover::clear_dir(&old.dir, &HashSet::new());
                let _ = std::fs::remove_dir(&old.dir);
            }
        }
        handover::clear_dir(&self.dir, &self.restored_files);
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
    /// `txn_id` is the transactional id of the subtask that sealed it (the records' marker).
    async fn publish(&mut self, p: &Pending, txn_id: &str, resume: bool) -> Result<()> {
        let marker = format!("{txn_id}:{}", p.checkpoint);
        let Ok(file) = File::open(&p.file) else {
            return Ok(()); // published and cleaned up before the crash
        };
        let bootstrap = self.ctx.table.option("properties.bootstrap.servers");
        let turn = commit_turn(bootstrap.unwrap_or_default(), &self.writer.topic);
        let _turn = turn.lock().await;
        let present = if resume {
            let seen = self.visible_rows(&marker, &p.from).await?;
            tracing::info!(
                "kafka sink '{}': {} rows of transaction {marker} were already committed",
                self.ctx.table.name,
                seen.len()
            );
            seen
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

/// The turn to commit into `topic` of the brokers `bootstrap`, shared by every transactional
/// sink of the process writing there: one transaction per topic is open at a time. Kafka
/// itself allows transactions to overlap, but some Kafka-protocol brokers do not keep them
/// apart: tansu 0.6 (which the tests run against) can leave a commit unfinished when another
/// transaction is open on the same partition, which holds every `read_committed` reader back
/// for good. A turn is short (it produces a sealed interval from its local file), and the
/// subtasks still write their intervals in parallel.
fn commit_turn(bootstrap: &str, topic: &str) -> Arc<tokio::sync::Mutex<()>> {
    type Turns = std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;
    static TURNS: OnceLock<Turns> = OnceLock::new();
    let mut turns = TURNS.get_or_init(Default::default).lock().expect("lock");
    turns
        .entry(format!("{bootstrap}/{topic}"))
        .or_default()
        .clone()
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
            let txn_id = self.txn_id.clone();
            for p in &ready {
                self.publish(p, &txn_id, false).await?;
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
