//! The `kafka` source: assigns partitions itself (no consumer-group rebalancing, as in Flink and
//! Arroyo), reads them from the configured start to an optional end offset, and yields decoded
//! batches that name each row's partition so the engine keeps a watermark per partition.
//!
//! Message values are decoded straight into Arrow: the payloads of a poll are laid end to end
//! as lines and handed to the same segment decoder as the filesystem source, so a bad record is
//! isolated and reported as `topic/partition@offset` without slowing the good ones.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use weir_engine::connector::{Source, SourceContext, SourceEvent, SourceFactory};
use weir_engine::observe::dead_letter::OnError;
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::dead_letter::DeadLetterTopic;
use super::key::{KeyOptions, KeySplice};
use super::metadata::HeaderStore;
use super::offsets::{check_topics_exist, discover, resolve_offsets, Reset, Retry, StartPlan};
use super::scan::{bounded, startup, Bounded, Startup};
use super::{set_default, KafkaOptions, NAME};
use crate::filesystem::decode::SegmentDecoder;
use crate::options::number_option;
use crate::timestamps::TimePolicy;

#[path = "source_decode.rs"]
mod decode;
#[cfg(any(test, feature = "fuzzing"))]
#[path = "source_fuzz.rs"]
pub(crate) mod fuzz;

pub(super) use decode::{LastPoll, LineMeta};

/// How long a poll gathers messages for one batch after the first arrives.
const LINGER: Duration = Duration::from_millis(20);

/// Creates `kafka` sources.
#[derive(Debug, Default, Clone, Copy)]
pub struct KafkaSourceFactory;

impl SourceFactory for KafkaSourceFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn metadata_keys(&self) -> &'static [&'static str] {
        super::metadata::KEYS
    }

    /// The partitions are spread over the subtasks (one with none is idle).
    fn max_splits(&self, _table: &TableDef) -> usize {
        usize::MAX
    }

    /// Every subtask's offsets in one map (each new subtask seeks its own partitions in it).
    /// A subtask's position also carries the offsets it was restored with, so a partition may
    /// appear twice after an earlier rescale: offsets only grow, and the larger one is the
    /// partition's reader's.
    fn merge_positions(
        &self,
        _table: &TableDef,
        positions: &[Option<String>],
    ) -> Result<Option<String>, String> {
        let mut merged: BTreeMap<String, i64> = BTreeMap::new();
        let mut any = false;
        for text in positions.iter().flatten() {
            any = true;
            for (tp, offset) in parse_positions(text).map_err(|e| e.to_string())? {
                let o = merged.entry(tp).or_insert(offset);
                *o = (*o).max(offset);
            }
        }
        Ok(any.then(|| serde_json::to_string(&merged).expect("offsets serialise")))
    }

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        let options = KafkaOptions::parse(table)?;
        startup(table)?;
        bounded(table)?;
        Reset::parse(table.option("properties.auto.offset.reset"))?;
        number_option::<f64>(table, "scan.records-per-second")?;
        TimePolicy::parse(table, &table.physical_schema())?;
        KeyOptions::parse(table)?.check_source(table, options.format, options.raw)
    }

    fn check_external(&self, table: &TableDef) -> Result<(), String> {
        check_topics_exist(&KafkaOptions::parse(table)?)
    }

    fn is_bounded(&self, table: &TableDef) -> bool {
        !matches!(bounded(table), Ok(Bounded::Unbounded))
    }

    fn create(&self, ctx: SourceContext) -> Result<Box<dyn Source>> {
        Ok(KafkaSource::new(ctx)?)
    }
}

impl KafkaSource {
    /// A source for `ctx` (it connects on its first poll).
    pub(crate) fn new(ctx: SourceContext) -> Result<Box<KafkaSource>> {
        let err = |m: String| EngineError::connector(NAME, m);
        let options = KafkaOptions::parse(&ctx.table).map_err(err)?;
        let start = startup(&ctx.table).map_err(err)?;
        let reset = Reset::parse(ctx.table.option("properties.auto.offset.reset")).map_err(err)?;
        let end = bounded(&ctx.table).map_err(err)?;
        let rate = number_option::<f64>(&ctx.table, "scan.records-per-second").map_err(err)?;
        // The table's rate, shared by the subtasks reading it.
        let rate = rate
            .filter(|r| *r > 0.0)
            .map(|r| r / ctx.split.count.max(1) as f64);
        let time_policy = TimePolicy::parse(&ctx.table, &ctx.schema).map_err(err)?;
        let splice = KeyOptions::parse(&ctx.table).map_err(err)?.splice();
        let keep_headers = has_metadata(&ctx.table, "headers");
        let keep_keys =
            has_metadata(&ctx.table, "key") || ctx.table.option("dead-letter.topic").is_some();
        let dead_letter_topic = match ctx.table.option("dead-letter.topic") {
            Some(t) if options.on_error == OnError::DeadLetter => {
                Some(DeadLetterTopic::new(&options, t)?)
            }
            _ => None,
        };
        let restored = match &ctx.restore {
            Some(text) => parse_positions(text)?,
            None => BTreeMap::new(),
        };
        let decode_schema = time_policy
            .as_ref()
            .map_or(ctx.schema.clone(), |p| p.decode_schema(&ctx.schema));
        let decoder =
            SegmentDecoder::new(decode_schema, options.format, options.csv, ctx.batch_size)
                .map_err(|e| err(e.to_string()))?;
        let (options_for_lag, metrics_for_lag) = (options.clone(), ctx.metrics.clone());
        Ok(Box::new(KafkaSource {
            ctx,
            options,
            start,
            reset,
            end,
            rate,
            decoder,
            time_policy,
            keep_keys,
            restored,
            keep_headers,
            headers: HeaderStore::default(),
            splice,
            dead_letter_topic,
            keys: Vec::new(),
            consumer: None,
            parts: Vec::new(),
            index: HashMap::new(),
            pending: VecDeque::new(),
            started: Instant::now(),
            emitted: 0,
            last: LastPoll::default(),
            lag: super::lag::LagMonitor::start(&options_for_lag, metrics_for_lag),
        }))
    }
}

/// One assigned topic partition.
pub(super) struct Part {
    pub(super) topic: String,
    pub(super) partition: i32,
    /// Exclusive end offset of a bounded read.
    end: Option<i64>,
    done: bool,
    /// The offset after the last record read (the resume position).
    pub(super) next: Option<i64>,
}

pub(crate) struct KafkaSource {
    ctx: SourceContext,
    options: KafkaOptions,
    start: Startup,
    /// Where a group without committed offsets starts (`properties.auto.offset.reset`).
    reset: Reset,
    end: Bounded,
    rate: Option<f64>,
    decoder: SegmentDecoder,
    time_policy: Option<TimePolicy>,
    dead_letter_topic: Option<DeadLetterTopic>,
    keep_keys: bool,
    /// Positions from the checkpoint this run restores from (`topic/partition` -> offset).
    restored: BTreeMap<String, i64>,
    /// `value.fields-include = 'EXCEPT_KEY'`: how key fields join each value.
    splice: Option<KeySplice>,
    /// Whether a `headers` metadata column needs the message headers.
    keep_headers: bool,
    /// Message headers of the current poll (kept only for a `headers` column).
    pub(super) headers: HeaderStore,
    /// Message keys of the current poll (kept only with a dead-letter topic).
    pub(super) keys: Vec<u8>,
    consumer: Option<StreamConsumer>,
    pub(super) parts: Vec<Part>,
    /// Topic -> partition -> position in `parts`.
    index: HashMap<String, Vec<Option<u32>>>,
    pending: VecDeque<SourceEvent>,
    started: Instant,
    emitted: u64,
    /// The last poll's records (see [`LastPoll`]).
    last: LastPoll,
    /// Reports consumer lag per partition from a thread of its own.
    lag: Option<super::lag::LagMonitor>,
}

impl Source for KafkaSource {
    fn next(&mut self) -> BoxFuture<'_, Result<SourceEvent>> {
        Box::pin(self.next_event())
    }

    /// The next offset of every partition read so far, as `{"topic/partition": offset}`.
    /// Every assigned partition has a position from its assignment on, so a quiet one resumes
    /// where it was rather than at a re-resolved `latest-offset`. Before the first assignment
    /// a first start has no position (a restart resolves the startup mode again).
    fn snapshot(&mut self) -> Result<Option<String>> {
        if let Some(d) = self.dead_letter_topic.as_mut() {
            d.flush_now()?; // the position must not pass dead letters not yet written
        }
        if self.consumer.is_none() && self.parts.is_empty() && self.ctx.restore.is_none() {
            return Ok(None);
        }
        let mut positions = self.restored.clone();
        for p in &self.parts {
            if let Some(n) = p.next {
                positions.insert(format!("{}/{}", p.topic, p.partition), n);
            }
        }
        Ok(Some(serde_json::to_string(&positions).map_err(kafka_err)?))
    }

    /// Commit the checkpoint's offsets to the consumer group (`properties.group.id`, else
    /// `weir-<table>`), as Flink does, so `kafka-consumer-groups` and lag monitors see them and
    /// `scan.startup.mode = 'group-offsets'` resumes there. Asynchronous; a failed commit is
    /// only logged (the checkpoint, not the group, is what recovery reads).
    fn checkpoint_complete(&mut self, position: &str) -> Result<()> {
        let Some(consumer) = &self.consumer else {
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        for (tp, offset) in parse_positions(position)? {
            let Some((topic, partition)) = tp.rsplit_once('/') else {
                continue;
            };
            let Ok(partition) = partition.parse::<i32>() else {
                continue;
            };
            tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(kafka_err)?;
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(table = %self.ctx.table.name, "kafka: committing offsets to the group failed: {e}");
        }
        Ok(())
    }

    fn reject(&mut self, rows: &[usize], reason: &str) -> Result<bool> {
        self.reject_rows(rows, reason)
    }

    /// The Kafka partition number (`topic/partition` when the source reads several topics).
    fn partition_label(&self, id: u32) -> Option<String> {
        let p = self.parts.get(id as usize)?;
        let one_topic = self.parts.iter().all(|q| q.topic == p.topic);
        Some(if one_topic {
            p.partition.to_string()
        } else {
            format!("{}/{}", p.topic, p.partition)
        })
    }
}

/// Positions saved by [`KafkaSource::snapshot`].
pub(crate) fn parse_positions(text: &str) -> Result<BTreeMap<String, i64>> {
    serde_json::from_str(text)
        .map_err(|e| EngineError::State(format!("unreadable kafka position '{text}': {e}")))
}

fn kafka_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::connector(NAME, e.to_string())
}

impl KafkaSource {
    async fn next_event(&mut self) -> Result<SourceEvent> {
        // Bad records of the last poll, and rows the engine rejected since (`reject`), were
        // queued to the dead-letter topic: they are acknowledged before anything else, the end
        // included (a checkpoint's position waits for them too: `snapshot`).
        if let Some(d) = self.dead_letter_topic.as_mut() {
            d.flush().await?;
        }
        if self.consumer.is_none() {
            self.connect().await?;
        }
        if let Some(e) = self.pending.pop_front() {
            return Ok(e);
        }
        if self.parts.iter().all(|p| p.done) && !matches!(self.end, Bounded::Unbounded) {
            return Ok(SourceEvent::End);
        }
        if let Some(wait) = self.pace() {
            tokio::time::sleep(wait).await;
        }
        let event = self.poll_batch().await;
        if let Some(lag) = &self.lag {
            lag.update(&self.parts);
        }
        event
    }

    /// `scan.records-per-second`: how long to wait until the records emitted so far are due.
    fn pace(&self) -> Option<Duration> {
        let rate = self.rate?;
        let due = Duration::from_secs_f64(self.emitted as f64 / rate);
        due.checked_sub(self.started.elapsed())
            .filter(|d| !d.is_zero())
    }

    /// Create the consumer and assign every partition, retrying while the broker is away.
    async fn connect(&mut self) -> Result<()> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.try_connect().await {
                Ok(()) => return Ok(()),
                Err(Retry::Fatal(e)) => return Err(e),
                Err(Retry::Again(msg)) => {
                    tracing::warn!(table = %self.ctx.table.name, "kafka: {msg}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn try_connect(&mut self) -> Result<(), Retry> {
        let mut config = self.options.client_config();
        set_default(
            &mut config,
            "group.id",
            &format!("weir-{}", self.ctx.table.name),
        );
        config.set("enable.auto.commit", "false");
        config.set("enable.partition.eof", "false");
        set_default(&mut config, "auto.offset.reset", "earliest");
        // librdkafka prefetches up to 64 MB per partition by default; a smaller window keeps a
        // backpressured job's memory bounded and is still many batches ahead.
        set_default(&mut config, "queued.max.messages.kbytes", "16384");
        let consumer: StreamConsumer = config.create().map_err(|e| Retry::Fatal(kafka_err(e)))?;
        let topics = self.options.topics.clone();
        let (consumer, parts) = tokio::task::spawn_blocking(move || {
            let parts = discover(&consumer, &topics)?;
            Ok::<_, Retry>((consumer, parts))
        })
        .await
        .map_err(|e| Retry::Fatal(EngineError::Internal(e.to_string())))??;
        let parts = share(parts, self.ctx.split);
        let consumer = self.assign(consumer, parts).await?;
        self.consumer = Some(consumer);
        Ok(())
    }

    /// Resolve start and end offsets, assign, and queue the partition events (a subtask with
    /// no partition is idle, or ends at once when the read is bounded).
    async fn assign(
        &mut self,
        consumer: StreamConsumer,
        parts: Vec<(String, i32)>,
    ) -> Result<StreamConsumer, Retry> {
        let (startup, end, reset) = (self.start.clone(), self.end.clone(), self.reset);
        let restored = self.ctx.restore.is_some().then(|| self.restored.clone());
        let resolved = tokio::task::spawn_blocking(move || {
            let plan = StartPlan {
                startup: &startup,
                reset,
                restored: restored.as_ref(),
            };
            let r = resolve_offsets(&consumer, &parts, &plan, &end);
            r.map(|r| (consumer, r))
        })
        .await
        .map_err(|e| Retry::Fatal(EngineError::Internal(e.to_string())))?;
        let (consumer, resolved) = resolved.map_err(Retry::Again)?;
        let mut tpl = TopicPartitionList::new();
        let mut ids = Vec::new();
        for r in resolved {
            let id = self.parts.len() as u32;
            tpl.add_partition_offset(&r.topic, r.partition, Offset::Offset(r.from))
                .map_err(|e| Retry::Fatal(kafka_err(e)))?;
            let done = r.until.is_some_and(|u| u <= 0 || r.from >= u);
            let slots = self.index.entry(r.topic.clone()).or_default();
            if slots.len() <= r.partition as usize {
                slots.resize(r.partition as usize + 1, None);
            }
            slots[r.partition as usize] = Some(id);
            self.parts.push(Part {
                topic: r.topic,
                partition: r.partition,
                end: r.until,
                done,
                next: Some(r.from),
            });
            ids.push(id);
        }
        consumer
            .assign(&tpl)
            .map_err(|e| Retry::Fatal(kafka_err(e)))?;
        self.pending.push_back(SourceEvent::Partitions(ids));
        for (id, p) in self.parts.iter().enumerate() {
            if p.done {
                self.pending.push_back(SourceEvent::PartitionEnd(id as u32));
            }
        }
        Ok(consumer)
    }

    /// Gather messages for one batch and decode them.
    async fn poll_batch(&mut self) -> Result<SourceEvent> {
        // The last poll's buffers, reused (they stay until now for `reject`).
        let mut region = std::mem::take(&mut self.last.region);
        let mut meta = std::mem::take(&mut self.last.meta);
        region.clear();
        meta.clear();
        self.keys.clear();
        self.headers.clear();
        // Out of `self` while messages borrow it, so `take_message` can update the source.
        let consumer = self.consumer.take().expect("connected");
        let gathered = self.gather(&consumer, &mut region, &mut meta).await;
        self.consumer = Some(consumer);
        if !gathered? {
            return Ok(SourceEvent::Idle);
        }
        match self.options.raw {
            true => self.decode_raw(region, meta),
            false => self.decode(region, meta),
        }
    }

    /// Receive up to a batch of messages (waiting at most [`LINGER`] after the first); false
    /// when none arrived within 100 ms.
    async fn gather(
        &mut self,
        consumer: &StreamConsumer,
        region: &mut Vec<u8>,
        meta: &mut Vec<LineMeta>,
    ) -> Result<bool> {
        let Ok(first) = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await
        else {
            return Ok(false);
        };
        let mut next = Some(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while meta.len() < self.ctx.batch_size {
            // Take what librdkafka already holds without waiting; wait (briefly) only when empty.
            let m = match next.take().or_else(|| consumer.recv().now_or_never()) {
                Some(m) => m.map_err(kafka_err)?,
                None => match tokio::time::timeout_at(deadline, consumer.recv()).await {
                    Ok(m) => m.map_err(kafka_err)?,
                    Err(_) => break,
                },
            };
            if let Some(ended) = self.take_message(&m, region, meta) {
                self.pending.push_back(SourceEvent::PartitionEnd(ended));
                pause(consumer, &self.parts[ended as usize]);
            }
        }
        Ok(true)
    }
}

fn has_metadata(t: &TableDef, name: &str) -> bool {
    t.metadata_columns()
        .iter()
        .any(|c| matches!(&c.kind, weir_planner::ColumnKind::Metadata { key, .. } if key == name))
}

fn pause(consumer: &StreamConsumer, part: &Part) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&part.topic, part.partition);
    let _ = consumer.pause(&tpl);
}

/// The partitions subtask `split.index` of `split.count` reads: every `count`-th of the topics'
/// partitions in (topic, partition) order, so partitions spread evenly over the subtasks.
fn share(
    mut parts: Vec<(String, i32)>,
    split: weir_engine::connector::Split,
) -> Vec<(String, i32)> {
    parts.sort();
    parts
        .into_iter()
        .enumerate()
        .filter(|(k, _)| k % split.count.max(1) == split.index)
        .map(|(_, p)| p)
        .collect()
}
