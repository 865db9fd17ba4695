//! Late rows: rows a window operator drops because every window they belong to has fired.
//!
//! They are never silently lost (`docs/semantics.md`): each operator counts them
//! (`weir_late_rows{operator=...}`), and when the job has a late-data destination they are
//! written there with their columns, the reason and the window they missed. The destination is
//! the sink table named by `SET 'table.exec.late-data.sink'` (any connector), or else the
//! `'late-data.topic'` of the Kafka table the rows came from (JSON records on that table's
//! brokers). The destination is a sink of the job like any other: it takes part in checkpoints,
//! so with a transactional sink a late row is written exactly once across crashes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ArrayRef, Int64Array, StringArray, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use weir_planner::catalog::{Catalog, ColumnDef, ColumnKind, TableDef};
use weir_planner::stream_plan::StreamNode;

use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::window::kernels::MissedWindow;

/// The session option naming a sink table for every late row of a job.
pub const LATE_SINK_KEY: &str = "table.exec.late-data.sink";
/// The Kafka source option naming a topic for the late rows read from that table.
pub const LATE_TOPIC_OPTION: &str = "late-data.topic";
/// Why the row was dropped.
pub const REASON_COLUMN: &str = "late_reason";
/// Start of the (last) window the row belonged to, NULL for a row in no window.
pub const WINDOW_START_COLUMN: &str = "missed_window_start";
/// End of that window.
pub const WINDOW_END_COLUMN: &str = "missed_window_end";
/// The operator that dropped the row.
pub const OPERATOR_COLUMN: &str = "late_operator";

/// The late rows an operator dropped: how many so far (the operator's `late_rows` count), and
/// those since its task last took them. Collecting is off until the job has a destination.
#[derive(Debug, Default)]
pub struct LateRows {
    keep: bool,
    count: u64,
    batches: Vec<RecordBatch>,
}

/// What an operator says about a batch of late rows.
pub struct LateContext<'a> {
    /// The operator (for `late_operator`).
    pub operator: &'static str,
    /// Why the rows are late.
    pub reason: &'a str,
    /// The unit of the window bounds.
    pub unit: TimeUnit,
}

impl LateRows {
    /// Start keeping late rows (the job has a destination for them).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Whether late rows are kept.
    pub fn is_kept(&self) -> bool {
        self.keep
    }

    /// Late rows dropped so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Count `n` more late rows that cannot be kept (they were folded into partial rows).
    pub fn add_count(&mut self, n: u64) {
        self.count += n;
    }

    /// Count the rows `missed[i].row` of `input` as late and keep them (when collecting): the
    /// input's columns, then the reason, the window each missed and the operator.
    pub fn push(
        &mut self,
        input: &RecordBatch,
        missed: &[MissedWindow],
        cx: &LateContext,
    ) -> Result<()> {
        self.count += missed.len() as u64;
        if !self.keep || missed.is_empty() {
            return Ok(());
        }
        let idx = UInt32Array::from_iter_values(missed.iter().map(|m| m.row));
        let mut fields: Vec<Field> = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        for (f, c) in input.schema().fields().iter().zip(input.columns()) {
            fields.push(Field::new(user_name(f.name()), f.data_type().clone(), true));
            cols.push(take(c, &idx, None)?);
        }
        let n = missed.len();
        let ts = DataType::Timestamp(cx.unit, None);
        let bound = |f: fn(&MissedWindow) -> Option<i64>| -> Result<ArrayRef> {
            let a: ArrayRef = Arc::new(missed.iter().map(f).collect::<Int64Array>());
            Ok(cast(&a, &ts)?)
        };
        let extra: [(&str, DataType, ArrayRef); 4] = [
            (REASON_COLUMN, DataType::Utf8, text(cx.reason, n)),
            (WINDOW_START_COLUMN, ts.clone(), bound(|m| m.start)?),
            (WINDOW_END_COLUMN, ts.clone(), bound(|m| m.end)?),
            (OPERATOR_COLUMN, DataType::Utf8, text(cx.operator, n)),
        ];
        for (name, t, c) in extra {
            fields.push(Field::new(name, t, true));
            cols.push(c);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
        self.batches.push(batch);
        Ok(())
    }

    /// Count the rows `rows` of `input` as late and keep them (when collecting), for an
    /// operator without windows: the missed window columns are NULL.
    pub fn push_rows(&mut self, input: &RecordBatch, rows: &[u32], cx: &LateContext) -> Result<()> {
        let missed: Vec<MissedWindow> = rows
            .iter()
            .map(|&row| MissedWindow {
                row,
                start: None,
                end: None,
            })
            .collect();
        self.push(input, &missed, cx)
    }

    /// The rows kept since the last call.
    pub fn take(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.batches)
    }
}

fn text(value: &str, n: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(value, n)))
}

/// A column name as the user wrote it: the planner qualifies columns inside window TVFs.
fn user_name(name: &str) -> &str {
    match name.strip_prefix("__weir") {
        Some(_) => name.rsplit('.').next().unwrap_or(name),
        None => name,
    }
}

/// `batch` in the destination's columns: each column of `target` from the batch's column of
/// the same name (case-insensitive), cast to its type; NULL where the batch has none.
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let schema = batch.schema();
    let n = batch.num_rows();
    let mut cols = Vec::with_capacity(target.fields().len());
    for f in target.fields() {
        let found = schema
            .fields()
            .iter()
            .position(|g| g.name().eq_ignore_ascii_case(f.name()));
        cols.push(match found {
            Some(i) => cast(batch.column(i), f.data_type())?,
            None => new_null_array(f.data_type(), n),
        });
    }
    let fields: Vec<Field> = target
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// Where an operator's late rows go: its channel to the destination's sink and the columns the
/// destination takes.
pub struct LateOutput {
    /// Late rows, then each barrier and the end of the stream, as the operator passes them.
    pub tx: mpsc::Sender<Message>,
    /// The destination table's physical columns.
    pub schema: SchemaRef,
}

/// One late-data destination of a job: its table and the channel of each operator writing to it.
pub struct LateDestination {
    /// The sink table.
    pub table: Arc<TableDef>,
    /// One channel per operator.
    pub inputs: Vec<mpsc::Receiver<Message>>,
}

/// The late-data destinations of a job being built.
#[derive(Default)]
pub struct LateRouting {
    /// `SET 'table.exec.late-data.sink'`: every late row of the job goes there.
    job_sink: Option<Arc<TableDef>>,
    /// The job checkpoints: a `'late-data.topic'` is written exactly once (see [`topic_table`]).
    exactly_once: bool,
    destinations: RefCell<BTreeMap<String, LateDestination>>,
}

impl LateRouting {
    /// The routing for a job under `settings`; the named sink table must exist.
    pub fn new(catalog: &Catalog, settings: &BTreeMap<String, String>) -> Result<LateRouting> {
        Ok(LateRouting {
            job_sink: job_sink_table(catalog, settings)?,
            exactly_once: false,
            destinations: RefCell::default(),
        })
    }

    /// The job checkpoints, so its `'late-data.topic'`s are written exactly once.
    pub fn set_checkpointing(&mut self, checkpointing: bool) {
        self.exactly_once = checkpointing;
    }

    /// The destination of `node`'s late rows, with a new channel to it; `None` when the job
    /// has none for them.
    pub fn output_for(&self, node: &StreamNode) -> Result<Option<LateOutput>> {
        let Some(table) = self.table_for(node)? else {
            return Ok(None);
        };
        let (tx, rx) = mpsc::channel(crate::runtime::job::CHANNEL_CAPACITY);
        let schema = table.physical_schema();
        let mut d = self.destinations.borrow_mut();
        let dest = d
            .entry(table.name.clone())
            .or_insert_with(|| LateDestination {
                table,
                inputs: Vec::new(),
            });
        dest.inputs.push(rx);
        Ok(Some(LateOutput { tx, schema }))
    }

    /// The destination table of `node`'s late rows, if any.
    pub fn table_for(&self, node: &StreamNode) -> Result<Option<Arc<TableDef>>> {
        if let Some(t) = &self.job_sink {
            return Ok(Some(t.clone()));
        }
        let mut found: Option<(&TableDef, &str)> = None;
        for s in node.sources() {
            let Some(topic) = s.table.option(LATE_TOPIC_OPTION) else {
                continue;
            };
            match found {
                Some((_, t)) if t != topic => {
                    return Err(EngineError::Execution(format!(
                        "late rows of one window come from tables with different \
                         '{LATE_TOPIC_OPTION}' ('{t}' and '{topic}'): set '{LATE_SINK_KEY}' \
                         to one sink table for them"
                    )))
                }
                _ => found = Some((s.table.as_ref(), topic)),
            }
        }
        let exactly_once = self.exactly_once;
        Ok(found.map(|(source, topic)| Arc::new(topic_table(source, topic, exactly_once))))
    }

    /// The destinations that operators write to.
    pub fn into_destinations(self) -> Vec<LateDestination> {
        self.destinations.into_inner().into_values().collect()
    }
}

/// The sink table `SET 'table.exec.late-data.sink'` names, checked to exist.
pub fn job_sink_table(
    catalog: &Catalog,
    settings: &BTreeMap<String, String>,
) -> Result<Option<Arc<TableDef>>> {
    let Some(name) = settings.get(LATE_SINK_KEY) else {
        return Ok(None);
    };
    match catalog.table(name) {
        Some(t) => Ok(Some(t.clone())),
        None => Err(EngineError::Execution(format!(
            "'{LATE_SINK_KEY}' names table '{name}', which does not exist: CREATE TABLE {name} \
             (...) WITH ('connector' = ...) first"
        ))),
    }
}

/// The Kafka sink table behind a source's `'late-data.topic'`: the source's physical columns
/// and the late-row columns, as JSON records on the source's brokers. With `exactly_once` (a
/// checkpointing job) they are written in Kafka transactions committed with the checkpoints,
/// so each late row is in the topic once for `read_committed` readers; otherwise at least once.
pub fn topic_table(source: &TableDef, topic: &str, exactly_once: bool) -> TableDef {
    let mut columns: Vec<ColumnDef> = source
        .columns
        .iter()
        .filter(|c| c.kind == ColumnKind::Physical)
        .cloned()
        .map(|c| ColumnDef {
            nullable: true,
            ..c
        })
        .collect();
    let ts = |name: &str| {
        column(
            name,
            DataType::Timestamp(TimeUnit::Millisecond, None),
            "TIMESTAMP(3)",
        )
    };
    columns.push(column(REASON_COLUMN, DataType::Utf8, "STRING"));
    columns.push(ts(WINDOW_START_COLUMN));
    columns.push(ts(WINDOW_END_COLUMN));
    columns.push(column(OPERATOR_COLUMN, DataType::Utf8, "STRING"));
    let mut options: BTreeMap<String, String> = source
        .options
        .iter()
        .filter(|(k, _)| k.starts_with("properties.") && k.as_str() != "properties.group.id")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    options.insert("connector".into(), "kafka".into());
    options.insert("topic".into(), topic.into());
    options.insert("format".into(), "json".into());
    if exactly_once {
        options.insert("sink.delivery-guarantee".into(), "exactly-once".into());
        let prefix = format!("weir-late-{topic}");
        options.insert("sink.transactional-id-prefix".into(), prefix);
    }
    TableDef {
        name: format!("{} {LATE_TOPIC_OPTION} {topic}", source.name),
        columns,
        watermark: None,
        primary_key: Vec::new(),
        partition_by: Vec::new(),
        options,
        option_locations: Default::default(),
        location: source.option_location(LATE_TOPIC_OPTION),
    }
}

fn column(name: &str, data_type: DataType, sql_type: &str) -> ColumnDef {
    ColumnDef {
        name: name.into(),
        data_type,
        nullable: true,
        sql_type: sql_type.into(),
        kind: ColumnKind::Physical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Array;

    fn input() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("__weir_tvf_0.sensor", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            Arc::new(Int64Array::from(vec![1, 2, 3])),
        ];
        RecordBatch::try_new(Arc::new(schema), cols).unwrap()
    }

    #[test]
    fn late_rows_keep_their_columns_the_reason_and_the_window_missed() {
        let mut late = LateRows::default();
        let missed = [MissedWindow {
            row: 2,
            start: Some(0),
            end: Some(10_000),
        }];
        let cx = LateContext {
            operator: "WindowAssign",
            reason: "window closed",
            unit: TimeUnit::Millisecond,
        };
        late.push(&input(), &missed, &cx).unwrap();
        assert!(
            late.take().is_empty(),
            "nothing is kept without a destination"
        );
        late.keep();
        late.push(&input(), &missed, &cx).unwrap();
        let b = late.take().pop().unwrap();
        let schema = b.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "sensor",
                "v",
                REASON_COLUMN,
                WINDOW_START_COLUMN,
                WINDOW_END_COLUMN,
                OPERATOR_COLUMN
            ]
        );
        let target = Arc::new(Schema::new(vec![
            Field::new("V", DataType::Utf8, false),
            Field::new("missed_window_end", DataType::Int64, false),
            Field::new("other", DataType::Float64, false),
        ]));
        let c = conform(&b, &target).unwrap();
        let v = c.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(v.value(0), "3");
        let end = c.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(end.value(0), 10_000);
        assert_eq!(c.column(2).null_count(), 1);
    }
}
