//! The contract between the engine and its connectors (sources and sinks).
//!
//! A connector is registered by name (`'connector' = 'filesystem'`) through a factory. Factories
//! validate a table's options at planning time, so a typo in `WITH (...)` stops the job before it
//! starts; at run time they create a [`Source`] that yields decoded Arrow batches or a [`Sink`] that
//! writes them. Sources only decode: computed columns, watermarks and lateness are the engine's.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use weir_planner::TableDef;

use crate::error::Result;
use crate::observe::dead_letter::DeadLetters;
use crate::observe::metrics::JobMetrics;

/// What a source produced on one call to [`Source::next`].
#[derive(Debug)]
pub enum SourceEvent {
    /// Decoded rows in the table's physical schema.
    Batch(RecordBatch),
    /// Decoded rows with the source partition of each row: the watermark is tracked per
    /// partition and the source's watermark is the minimum over the partitions that are active.
    PartitionedBatch(RecordBatch, Vec<u32>),
    /// The partitions the source reads; each holds the watermark back until it produces data,
    /// ends, or goes idle.
    Partitions(Vec<u32>),
    /// A partition has no more data (a bounded read reached its end offset).
    PartitionEnd(u32),
    /// The batches that follow are segment `n` of one ordered stream that the source's
    /// subtasks read every `count`-th segment of (a file cut into byte ranges, a directory's
    /// files): rows get the watermarks of a single reader (`runtime/segments.rs`). The engine
    /// answers checkpoints but reads nothing more until every earlier segment is read, so the
    /// position [`Source::snapshot`] gives here must be the segment's start.
    SegmentStart(u64),
    /// Segment `n` has no more rows (also said, without a start, of a segment a restored
    /// position shows was already read).
    SegmentEnd(u64),
    /// Nothing is available right now (an unbounded source waiting for data).
    Idle,
    /// A bounded source is finished.
    End,
}

/// A running source: yields batches of decoded records. It counts the rows it yields in
/// `SourceContext::metrics.rows_in` (once per batch).
pub trait Source: Send {
    /// The next batch; `End` once a bounded input is exhausted.
    fn next(&mut self) -> BoxFuture<'_, Result<SourceEvent>>;

    /// The position after everything returned so far, for a checkpoint; a restarted source
    /// gets it back in [`SourceContext::restore`] and resumes there. `None` means the source
    /// cannot resume (a restart reads it again from its configured start).
    fn snapshot(&mut self) -> Result<Option<String>> {
        Ok(None)
    }

    /// Rows of the batch [`Source::next`] returned last that the engine drops because their
    /// event time is NULL (missing or unreadable), as indexes into that batch. A source that
    /// knows where they came from handles them as its other bad records (fail, skip, or its
    /// dead-letter destination with their origin, reported to [`SourceContext::dead_letters`])
    /// and returns true; the default returns false and the engine reports them itself.
    fn reject(&mut self, _rows: &[usize], _reason: &str) -> Result<bool> {
        Ok(false)
    }

    /// The checkpoint that holds `position` (what [`Source::snapshot`] returned for it) is
    /// complete. Kafka commits the offsets to its consumer group, so the tools people already
    /// use see the job's progress; an error here fails the job, so report and carry on unless
    /// it matters.
    fn checkpoint_complete(&mut self, _position: &str) -> Result<()> {
        Ok(())
    }

    /// The label of partition `id` (of [`SourceEvent::PartitionedBatch`]) in the metrics, e.g.
    /// the Kafka partition number; `None` shows the id itself.
    fn partition_label(&self, _id: u32) -> Option<String> {
        None
    }
}

/// A running sink: receives the result rows of a job.
///
/// Sinks that take part in checkpoints implement two-phase commit: [`Sink::pre_commit`] when a
/// barrier arrives makes the rows written so far durable but not visible, and
/// [`Sink::commit`] publishes them once the checkpoint is complete. The defaults suit
/// at-least-once sinks (nothing is held back).
pub trait Sink: Send {
    /// Write one batch of result rows (in [`SinkContext::schema`]).
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>>;
    /// The input is finished: flush and close.
    fn finish(&mut self) -> BoxFuture<'_, Result<()>>;

    /// Checkpoint `checkpoint`'s barrier arrived: make what was written durable, ready to be
    /// published. Returns what [`Sink::commit`] or a restarted sink needs to publish it.
    fn pre_commit(&mut self, _checkpoint: u64) -> BoxFuture<'_, Result<String>> {
        Box::pin(async { Ok(String::new()) })
    }

    /// Every checkpoint up to `checkpoint` is complete: publish what they pre-committed.
    fn commit(&mut self, _checkpoint: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// What a restarted sink finds in the checkpoint it restarts from.
#[derive(Debug, Clone)]
pub struct SinkRestore {
    /// The id of the checkpoint the job restarts from.
    pub checkpoint: u64,
    /// What [`Sink::pre_commit`] returned for that checkpoint: publish it (if not yet done) and
    /// discard anything written after it. Empty when [`SinkRestore::subtasks`] holds the
    /// snapshots instead.
    pub pending: String,
    /// When the sink runs as several subtasks, or the checkpoint's sink ran at another
    /// parallelism: what every subtask of the checkpoint returned, by its subtask index. Each
    /// subtask of the restarted sink publishes its share of them (which share is the
    /// connector's choice: the subtasks of one sink must together take each exactly once).
    pub subtasks: Vec<String>,
}

/// What a source needs to start.
#[derive(Clone)]
pub struct SourceContext {
    /// The source table's definition (columns and `WITH` options).
    pub table: Arc<TableDef>,
    /// The physical columns to decode, in this order.
    pub schema: SchemaRef,
    /// The columns of `schema` the query reads (by index), when known: a columnar source
    /// (Parquet) may read only those and leave the others NULL.
    pub used_columns: Option<Vec<usize>>,
    /// Preferred rows per batch.
    pub batch_size: usize,
    /// Where records that cannot be decoded go.
    pub dead_letters: DeadLetters,
    /// The job's counters (the source adds to `rows_in`).
    pub metrics: Arc<JobMetrics>,
    /// The position [`Source::snapshot`] returned in the checkpoint this run restores from.
    pub restore: Option<String>,
    /// The job checkpoints: [`Source::checkpoint_complete`] will be called, so a source that
    /// acknowledges its input upstream (MQTT) may wait for it; without checkpoints it
    /// acknowledges what it handed to the engine.
    pub checkpointing: bool,
    /// The share of the table this source reads (the whole table unless its factory's
    /// [`SourceFactory::max_splits`] allowed more than one subtask).
    pub split: Split,
}

/// What a sink needs to start.
#[derive(Clone)]
pub struct SinkContext {
    /// The sink table's definition (columns and `WITH` options).
    pub table: Arc<TableDef>,
    /// The schema of the rows the sink receives (with an `op` column first when the query's
    /// result is updating).
    pub schema: SchemaRef,
    /// `SET` options of the job (e.g. `table.local-time-zone`).
    pub settings: BTreeMap<String, String>,
    /// The job's counters (the sink adds to `rows_out`).
    pub metrics: Arc<JobMetrics>,
    /// The job checkpoints: hold rows back until [`Sink::commit`] where the sink can.
    pub checkpointing: bool,
    /// Set when the job restarts from a checkpoint.
    pub restore: Option<SinkRestore>,
    /// The sink columns that identify a row of an updating result, when the planner derived
    /// them (Flink's upsert key): every row then leaves through a `-D` and every `-U` has its
    /// `+U`. `None` for append-only results and when rows can leave otherwise.
    pub upsert_key: Option<Vec<String>>,
    /// A directory of the checkpoint store for this sink's own files (checkpointing jobs).
    pub state_dir: Option<std::path::PathBuf>,
    /// Which of the sink's subtasks this is (see [`SinkFactory::parallel`]).
    pub subtask: crate::checkpoint::TaskSlot,
}

/// Creates sources of one connector kind.
pub trait SourceFactory: Send + Sync {
    /// The `'connector'` value this factory serves.
    fn name(&self) -> &'static str;
    /// Check the table's options at planning time; the error names the offending option.
    fn validate(&self, table: &TableDef) -> Result<(), String>;
    /// Check what must exist outside Weir before a job reads the table (a Kafka topic, say).
    /// Called when a job that reads the table is planned, never at CREATE TABLE; the error
    /// names the option and what is missing.
    fn check_external(&self, _table: &TableDef) -> Result<(), String> {
        Ok(())
    }
    /// True when the source ends by itself (then it emits a final +infinity watermark).
    fn is_bounded(&self, table: &TableDef) -> bool;
    /// Start a source for the table in `ctx`.
    fn create(&self, ctx: SourceContext) -> Result<Box<dyn Source>>;
    /// Keys a `METADATA FROM 'key'` column may name (none by default).
    fn metadata_keys(&self) -> &'static [&'static str] {
        &[]
    }
    /// The most subtasks that can share the reading of `table`, each creating its own source
    /// with its [`SourceContext::split`] (Kafka partitions, a generated sequence). The default,
    /// 1, reads the table in one task.
    fn max_splits(&self, _table: &TableDef) -> usize {
        1
    }
    /// One position for a subtask of a job restored at another parallelism, from the
    /// positions every subtask of the checkpoint saved ([`Source::snapshot`]; `None`: a
    /// subtask saved none): each new subtask starts from it and reads only its own share. The
    /// default refuses: a source whose shares cannot be redrawn restores only at its
    /// checkpoint's parallelism.
    fn merge_positions(
        &self,
        table: &TableDef,
        _positions: &[Option<String>],
    ) -> Result<Option<String>, String> {
        Err(format!(
            "table '{}' ({}) restores only at the parallelism its checkpoint was taken at",
            table.name,
            self.name()
        ))
    }
}

/// Which share of a table a source reads: subtask `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// This subtask, from 0.
    pub index: usize,
    /// How many subtasks share the table.
    pub count: usize,
}

impl Default for Split {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

/// Creates sinks of one connector kind.
pub trait SinkFactory: Send + Sync {
    /// The `'connector'` value this factory serves.
    fn name(&self) -> &'static str;
    /// Check the table's options at planning time; the error names the offending option.
    fn validate(&self, table: &TableDef) -> Result<(), String>;
    /// The delivery guarantee printed when a job starts (e.g. "at-least-once"), which may
    /// depend on whether the job checkpoints.
    fn guarantee(&self, table: &TableDef, checkpointing: bool) -> &'static str;
    /// Start a sink for the table in `ctx`.
    fn create(&self, ctx: SinkContext) -> Result<Box<dyn Sink>>;
    /// Whether the sink takes a changelog (`+I`/`-U`/`+U`/`-D`). Then its batches start with
    /// the `op` column of [`crate::changelog`]. Append-only sinks keep the default, and an
    /// updating query into them is refused at planning time.
    fn accepts_updates(&self, _table: &TableDef) -> bool {
        false
    }
    /// Whether the sink of an append-only result may run as one subtask per subtask of the
    /// operator before it, each writing its own files or transactions ([`SinkContext::subtask`]),
    /// instead of one task taking the merged stream. A checkpoint covers all of them: each
    /// pre-commits at the barrier and commits when the checkpoint completes.
    fn parallel(&self, _table: &TableDef, _checkpointing: bool) -> bool {
        false
    }
}

/// A table read by key at processing time: the lookup side of a lookup join (`JOIN d FOR
/// SYSTEM_TIME AS OF a.proc_time ON a.k = d.k`). The engine batches the keys and caches the
/// answers (`lookup.cache`); a lookup source only fetches.
pub trait LookupSource: Send {
    /// The table's rows (in [`LookupContext::schema`]) whose key columns equal one of the rows
    /// of `keys` (the [`LookupContext::key_columns`], in that order; distinct, none NULL), in
    /// any order. A key without rows is simply absent.
    fn lookup(&mut self, keys: RecordBatch) -> BoxFuture<'_, Result<RecordBatch>>;
}

/// What a lookup source needs to start.
#[derive(Clone)]
pub struct LookupContext {
    /// The looked-up table's definition.
    pub table: Arc<TableDef>,
    /// The table's physical columns, the rows a lookup returns.
    pub schema: SchemaRef,
    /// The columns looked up by, in the order of the key batches' columns.
    pub key_columns: Vec<String>,
}

/// Creates lookup sources of one connector kind.
pub trait LookupFactory: Send + Sync {
    /// The `'connector'` value this factory serves.
    fn name(&self) -> &'static str;
    /// Check the table's options; the error names the offending option.
    fn validate(&self, table: &TableDef) -> Result<(), String>;
    /// Start a lookup source.
    fn create(&self, ctx: LookupContext) -> Result<Box<dyn LookupSource>>;
}

/// The connectors an engine knows, by name.
#[derive(Clone, Default)]
pub struct ConnectorRegistry {
    sources: BTreeMap<String, Arc<dyn SourceFactory>>,
    sinks: BTreeMap<String, Arc<dyn SinkFactory>>,
    lookups: BTreeMap<String, Arc<dyn LookupFactory>>,
}

impl ConnectorRegistry {
    /// A registry without connectors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a source connector under its [`SourceFactory::name`], replacing one of that name.
    pub fn register_source(&mut self, f: Arc<dyn SourceFactory>) {
        self.sources.insert(f.name().to_string(), f);
    }

    /// Add a sink connector under its [`SinkFactory::name`], replacing one of that name.
    pub fn register_sink(&mut self, f: Arc<dyn SinkFactory>) {
        self.sinks.insert(f.name().to_string(), f);
    }

    /// Add a lookup connector under its [`LookupFactory::name`], replacing one of that name.
    pub fn register_lookup(&mut self, f: Arc<dyn LookupFactory>) {
        self.lookups.insert(f.name().to_string(), f);
    }

    /// The lookup connector named `name`.
    pub fn lookup(&self, name: &str) -> Option<&Arc<dyn LookupFactory>> {
        self.lookups.get(name)
    }

    /// The source connector named `name`.
    pub fn source(&self, name: &str) -> Option<&Arc<dyn SourceFactory>> {
        self.sources.get(name)
    }

    /// The sink connector named `name`.
    pub fn sink(&self, name: &str) -> Option<&Arc<dyn SinkFactory>> {
        self.sinks.get(name)
    }

    /// Every connector name known as a source or a sink.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .sources
            .keys()
            .chain(self.sinks.keys())
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

impl weir_planner::parallel::SourceSplits for ConnectorRegistry {
    fn splits(&self, source: &weir_planner::stream_plan::SourceNode) -> usize {
        let connector = source.table.connector().unwrap_or_default();
        self.source(connector)
            .map_or(1, |f| f.max_splits(&source.table))
    }
}

/// Reject options the connector does not know. `prefixes` admit families like `fields.`.
/// `sink.rows-per-second` is accepted for every connector (the engine applies it).
pub fn check_known_options(
    table: &TableDef,
    known: &[&str],
    prefixes: &[&str],
) -> Result<(), String> {
    crate::runtime::throttle::rate(table)?;
    for key in table.options.keys() {
        let ok = known.contains(&key.as_str())
            || prefixes.iter().any(|p| key.starts_with(p))
            || key == crate::runtime::throttle::OPTION;
        if !ok {
            let mut all: Vec<String> = known.iter().map(|s| format!("'{s}'")).collect();
            all.extend(prefixes.iter().map(|p| format!("'{p}*'")));
            return Err(format!(
                "unknown option '{key}' for connector '{}'; supported options: {}",
                table.connector().unwrap_or("?"),
                all.join(", ")
            ));
        }
    }
    Ok(())
}

/// A required option, or an error naming it.
pub fn required_option<'a>(table: &'a TableDef, key: &str) -> Result<&'a str, String> {
    table.option(key).ok_or_else(|| {
        format!(
            "connector '{}' needs the option '{key}'",
            table.connector().unwrap_or("?")
        )
    })
}
