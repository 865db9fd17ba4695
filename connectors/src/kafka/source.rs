//! The `kafka` source: assigns partitions itself (no consumer-group rebalancing, as in Flink and
//! Arroyo), reads them from the configured start to an optional end offset, and yields decoded
//! batches that name each row's partition so the engine keeps a watermark per partition.
//!
//! Message values are decoded straight into Arrow: the payloads of a poll are laid end to end
//! as lines and handed to the same segment decoder as the filesystem source, so a bad record is
//! isolated and reported as `topic/partition@offset` without slowing the good ones.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use datafusion::arrow::compute::concat_batches;
use futures::future::BoxFuture;
use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use weir_engine::connector::{Source, SourceContext, SourceEvent, SourceFactory};
use weir_engine::dead_letter::{BadRecord, OnError};
use weir_engine::metrics::JobMetrics;
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::dead_letter::{DeadLetterTopic, Origin as DlqOrigin};
use super::key::{splice_key, KeyOptions, KeySplice};
use super::metadata::HeaderStore;
use super::offsets::{check_topics_exist, discover, resolve_offsets, Retry};
use super::scan::{bounded, startup, Bounded, Startup};
use super::{set_default, KafkaOptions, NAME};
use crate::filesystem::decode::SegmentDecoder;
use crate::options::number_option;
use crate::timestamps::TimePolicy;
use datafusion::arrow::array::{ArrayRef, BinaryArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::record_batch::RecordBatch;
use std::sync::Arc;

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

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        let options = KafkaOptions::parse(table)?;
        startup(table)?;
        bounded(table)?;
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
        let err = |m: String| EngineError::connector(NAME, m);
        let options = KafkaOptions::parse(&ctx.table).map_err(err)?;
        let start = startup(&ctx.table).map_err(err)?;
        let end = bounded(&ctx.table).map_err(err)?;
        let rate = number_option::<f64>(&ctx.table, "scan.records-per-second").map_err(err)?;
        let time_policy = TimePolicy::parse(&ctx.table, &ctx.schema).map_err(err)?;
        let splice = KeyOptions::parse(&ctx.table).map_err(err)?.splice();
        let keep_headers = has_metadata(&ctx.table, "headers");
        let keep_keys =
            has_metadata(&ctx.table, "key") || ctx.table.option("dead-letter.topic").is_some();
        let dead_letter_topic = match ctx.table.option("dead-letter.topic") {
            Some(t) => Some(DeadLetterTopic::new(&options, t)?),
            None => None,
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
            end,
            rate: rate.filter(|r| *r > 0.0),
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

pub(super) struct KafkaSource {
    ctx: SourceContext,
    options: KafkaOptions,
    start: Startup,
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
    /// Reports consumer lag per partition from a thread of its own.
    lag: Option<super::lag::LagMonitor>,
}

impl Source for KafkaSource {
    fn next(&mut self) -> BoxFuture<'_, Result<SourceEvent>> {
        Box::pin(self.next_event())
    }

    /// The next offset of every partition read so far, as `{"topic/partition": offset}`.
    fn snapshot(&mut self) -> Result<Option<String>> {
        let mut positions = self.restored.clone();
        for p in &self.parts {
            if let Some(n) = p.next {
                positions.insert(format!("{}/{}", p.topic, p.partition), n);
            }
        }
        Ok(Some(serde_json::to_string(&positions).map_err(kafka_err)?))
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
fn parse_positions(text: &str) -> Result<BTreeMap<String, i64>> {
    serde_json::from_str(text)
        .map_err(|e| EngineError::State(format!("unreadable kafka position '{text}': {e}")))
}

fn kafka_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::connector(NAME, e.to_string())
}

impl KafkaSource {
    async fn next_event(&mut self) -> Result<SourceEvent> {
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
        let consumer = self.assign(consumer, parts).await?;
        self.consumer = Some(consumer);
        Ok(())
    }

    /// Resolve start and end offsets, assign, and queue the partition events.
    async fn assign(
        &mut self,
        consumer: StreamConsumer,
        parts: Vec<(String, i32)>,
    ) -> Result<StreamConsumer, Retry> {
        let (start, end) = (self.start.clone(), self.end.clone());
        let resolved = tokio::task::spawn_blocking(move || {
            let r = resolve_offsets(&consumer, &parts, &start, &end);
            r.map(|r| (consumer, r))
        })
        .await
        .map_err(|e| Retry::Fatal(EngineError::Internal(e.to_string())))?;
        let (consumer, mut resolved) = resolved.map_err(Retry::Again)?;
        for (topic, partition, from, _) in resolved.iter_mut() {
            if let Some(o) = self.restored.get(&format!("{topic}/{partition}")) {
                *from = Offset::Offset(*o);
            }
        }
        let mut tpl = TopicPartitionList::new();
        let mut ids = Vec::new();
        for (topic, partition, from, until) in resolved {
            let id = self.parts.len() as u32;
            tpl.add_partition_offset(&topic, partition, from)
                .map_err(|e| Retry::Fatal(kafka_err(e)))?;
            let done = until.is_some_and(|u| u <= 0)
                || matches!((from, until), (Offset::Offset(f), Some(u)) if f >= u);
            let slots = self.index.entry(topic.clone()).or_default();
            if slots.len() <= partition as usize {
                slots.resize(partition as usize + 1, None);
            }
            slots[partition as usize] = Some(id);
            let next = match from {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            self.parts.push(Part {
                topic,
                partition,
                end: until,
                done,
                next,
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
        let mut region: Vec<u8> = Vec::with_capacity(self.ctx.batch_size * 128);
        let mut meta: Vec<LineMeta> = Vec::with_capacity(self.ctx.batch_size);
        self.keys.clear();
        self.headers.clear();
        let consumer = self.consumer.as_ref().expect("connected");
        let Ok(first) = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await
        else {
            return Ok(SourceEvent::Idle);
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
            let Some(id) = self
                .index
                .get(m.topic())
                .and_then(|v| v.get(m.partition() as usize).copied().flatten())
            else {
                continue;
            };
            let part = &mut self.parts[id as usize];
            if part.done || part.end.is_some_and(|e| m.offset() >= e) {
                continue;
            }
            part.next = Some(m.offset() + 1);
            let key = match (self.keep_keys, m.key()) {
                (true, Some(k)) => {
                    self.keys.extend_from_slice(k);
                    Some((self.keys.len() - k.len(), k.len()))
                }
                _ => None,
            };
            let headers = if self.keep_headers {
                self.headers.push(m.headers())
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
            push_line(
                &mut region,
                payload,
                &mut meta,
                origin,
                self.options.raw,
                key,
            );
            if part.end.is_some_and(|e| m.offset() + 1 >= e) {
                part.done = true;
                self.pending.push_back(SourceEvent::PartitionEnd(id));
                pause(consumer, part);
            }
        }
        let event = if self.options.raw {
            self.decode_raw(&region, &meta)?
        } else {
            self.decode(region, meta)?
        };
        if let Some(d) = self.dead_letter_topic.as_mut() {
            d.flush().await?;
        }
        Ok(event)
    }

    /// `'format' = 'raw'`: each value, byte for byte, is the one column.
    fn decode_raw(&mut self, region: &[u8], meta: &[LineMeta]) -> Result<SourceEvent> {
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
        let lines: Vec<usize> = (0..meta.len()).collect();
        let batch = super::metadata::append(&self.ctx.table, batch, &lines, meta, self)?;
        JobMetrics::add(&self.ctx.metrics.rows_in, batch.num_rows());
        Ok(SourceEvent::PartitionedBatch(
            batch,
            meta.iter().map(|m| m.id).collect(),
        ))
    }

    /// Decode the gathered lines; bad ones go to the dead letters with their offsets.
    fn decode(&mut self, region: Vec<u8>, meta: Vec<LineMeta>) -> Result<SourceEvent> {
        JobMetrics::add(&self.ctx.metrics.bytes_in, region.len());
        let mut batches = Vec::new();
        let mut row_lines = Vec::with_capacity(meta.len());
        let (mut pos, mut line) = (0usize, 0usize);
        while pos < region.len() {
            let seg = self
                .decoder
                .next_segment(&region[pos..])
                .map_err(kafka_err)?;
            let bad: Vec<usize> = seg.decoded.bad.iter().map(|b| b.index).collect();
            for b in seg.decoded.bad {
                self.dead_letter(b.raw, b.reason, &meta[line + b.index])?;
            }
            row_lines.extend(
                (0..seg.lines as usize)
                    .filter(|i| !bad.contains(i))
                    .map(|i| line + i),
            );
            batches.extend(seg.decoded.batch);
            pos += seg.len;
            line += seg.lines as usize;
        }
        self.emitted += meta.len() as u64;
        if batches.is_empty() {
            return Ok(SourceEvent::Idle);
        }
        let batch = concat_batches(&batches[0].schema(), &batches).map_err(kafka_err)?;
        let batch = self.apply_time_policy(batch, &mut row_lines, &region, &meta)?;
        JobMetrics::add(&self.ctx.metrics.rows_in, batch.num_rows());
        let batch = super::metadata::append(&self.ctx.table, batch, &row_lines, &meta, self)?;
        let row_parts = row_lines.iter().map(|l| meta[*l].id).collect();
        Ok(SourceEvent::PartitionedBatch(batch, row_parts))
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
        let mut corrections = 0;
        let (batch, bad) = policy
            .apply(&batch, &self.ctx.schema, &mut corrections)
            .map_err(kafka_err)?;
        JobMetrics::add(
            &self.ctx.metrics.timestamp_corrections,
            corrections as usize,
        );
        for (row, reason) in &bad {
            let m = &meta[row_lines[*row]];
            let end = meta
                .get(row_lines[*row] + 1)
                .map_or(region.len(), |n| n.start)
                - 1;
            let raw = region[m.start..end].to_vec();
            self.dead_letter(raw, reason.clone(), m)?;
        }
        let mut k = 0;
        row_lines.retain(|_| {
            k += 1;
            bad.binary_search_by_key(&(k - 1), |b| b.0).is_err()
        });
        Ok(batch)
    }

    fn position(&self, m: &LineMeta) -> String {
        let p = &self.parts[m.id as usize];
        format!("{}/{}@{}", p.topic, p.partition, m.offset)
    }

    /// Stop (on-error = fail), or count and report the record and write it to the dead-letter
    /// topic when there is one.
    fn dead_letter(&mut self, raw: Vec<u8>, reason: String, m: &LineMeta) -> Result<()> {
        let position = self.position(m);
        if self.options.on_error == OnError::Fail {
            return Err(EngineError::Execution(format!(
                "bad record at {position}: {reason}"
            )));
        }
        if let Some(d) = self.dead_letter_topic.as_mut() {
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

/// Append one record as a line; a line end inside it would split it, so it becomes a space.
/// Where a line of the decode region came from.
pub(super) struct LineMeta {
    pub(super) id: u32,
    pub(super) offset: i64,
    /// The message key's range in `KafkaSource::keys` (kept when a dead-letter topic or a
    /// `key` metadata column needs it).
    pub(super) key: Option<(usize, usize)>,
    /// The message timestamp (ms).
    pub(super) timestamp: Option<i64>,
    /// The message's headers: (first, count) in `KafkaSource::headers`.
    pub(super) headers: (u32, u32),
    /// Byte offset of the line in the region.
    start: usize,
}

fn has_metadata(t: &TableDef, name: &str) -> bool {
    t.metadata_columns()
        .iter()
        .any(|c| matches!(&c.kind, weir_planner::ColumnKind::Metadata { key, .. } if key == name))
}

/// A polled message's origin, kept per line.
struct Origin {
    id: u32,
    offset: i64,
    key: Option<(usize, usize)>,
    timestamp: Option<i64>,
    headers: (u32, u32),
}

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

fn pause(consumer: &StreamConsumer, part: &Part) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&part.topic, part.partition);
    let _ = consumer.pause(&tpl);
}
