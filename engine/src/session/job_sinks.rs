//! The sinks of a job: each INSERT target and each late-data destination becomes a sink task,
//! registered with the job's checkpoints when it checkpoints.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::checkpoint::{Checkpointing, TaskSlot};
use crate::connector::{SinkContext, SinkFactory, SinkRestore};
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::runtime::job::{JobShared, CHANNEL_CAPACITY};
use crate::runtime::sink::{SinkCheckpoint, SinkInput};
use crate::session::engine::Inner;

/// What a sink task's state depends on: its table and what it writes to.
fn sink_layout(t: &weir_planner::TableDef) -> String {
    let target = ["topic", "path"]
        .iter()
        .filter_map(|k| Some(format!("{k}={}", t.option(k)?)))
        .collect::<Vec<_>>();
    format!(
        "sink {} (connector={}, {})",
        t.name,
        t.connector().unwrap_or("?"),
        target.join(", ")
    )
}

/// A table a job writes to and what it receives.
#[derive(Clone, Copy)]
pub(crate) struct SinkTarget<'a> {
    pub table: &'a Arc<weir_planner::TableDef>,
    /// The rows are a changelog (an `op` column first).
    pub updating: bool,
    /// The event-time column of the rows, for latency metrics.
    pub event_col: Option<(usize, i64)>,
    /// The columns that identify a row of the changelog ([`weir_planner::stream_plan::StreamNode::upsert_key`]).
    pub upsert_key: Option<&'a [usize]>,
}

fn factory_of(g: &Inner, table: &weir_planner::TableDef) -> Result<Arc<dyn SinkFactory>> {
    let connector = table.connector().unwrap_or("");
    g.registry.sink(connector).cloned().ok_or_else(|| {
        EngineError::Internal(format!(
            "no sink connector '{connector}' for table '{}'",
            table.name
        ))
    })
}

/// Whether the sink of `table` runs one subtask per subtask of its input: when the rows are
/// append-only, the connector can ([`SinkFactory::parallel`]) and no `sink.rows-per-second`
/// limit (the table's total rate) applies.
pub(crate) fn sink_splits(
    factory: &dyn SinkFactory,
    table: &weir_planner::TableDef,
    updating: bool,
    checkpointing: bool,
) -> bool {
    let throttled = !matches!(crate::runtime::throttle::rate(table), Ok(None));
    !updating && !throttled && factory.parallel(table, checkpointing)
}

/// How many subtasks write `target` when its input runs as `input` subtasks (see
/// [`sink_splits`]).
pub(crate) fn sink_parallelism(
    g: &Inner,
    target: SinkTarget,
    input: usize,
    checkpointing: bool,
) -> Result<usize> {
    let factory = factory_of(g, target.table)?;
    let splits = sink_splits(
        factory.as_ref(),
        target.table,
        target.updating,
        checkpointing,
    );
    Ok(if splits { input } else { 1 })
}

/// Create subtask `slot` of the sink of `target` (registered with the job's checkpoints when
/// it checkpoints).
pub(crate) fn open_sink(
    g: &Inner,
    job: &Arc<JobShared>,
    ck: Option<&Arc<Checkpointing>>,
    target: SinkTarget,
    slot: TaskSlot,
) -> Result<(SinkInput, Option<SinkCheckpoint>)> {
    let table = target.table;
    let factory = factory_of(g, table)?;
    let sink_ck = ck.map(|c| SinkCheckpoint {
        name: c.register("sink", sink_layout(table), slot),
        ck: c.clone(),
        cancel: job.cancel_receiver(),
    });
    let sctx = sink_context(g, job, &target, sink_ck.as_ref(), slot);
    let sink = crate::runtime::throttle::wrap(factory.create(sctx)?, table)?;
    let sink = crate::session::statements::CastingSink::wrap(sink, table.physical_schema());
    if !g.quiet && slot.index == 0 {
        tracing::info!(
            "sink '{}' ({}) delivers {}",
            table.name,
            factory.name(),
            factory.guarantee(table, ck.is_some())
        );
    }
    let sink = SinkInput {
        sink,
        updating: target.updating,
        name: table.name.clone(),
        event_col: target.event_col,
    };
    Ok((sink, sink_ck))
}

/// What the connector is told when it creates the sink of `target`: its schema (with the
/// change kind when the input updates), the job's settings and metrics, and, when the job
/// checkpoints, what a restored checkpoint left pending and where the sink keeps state.
fn sink_context(
    g: &Inner,
    job: &Arc<JobShared>,
    target: &SinkTarget,
    sink_ck: Option<&SinkCheckpoint>,
    slot: TaskSlot,
) -> SinkContext {
    let table = target.table;
    let restore = sink_ck.and_then(|s| sink_restore(s, slot));
    let fields = table.physical_schema();
    let upsert_key = target.upsert_key.map(|key| {
        key.iter()
            .filter_map(|i| fields.fields().get(*i).map(|f| f.name().clone()))
            .collect()
    });
    SinkContext {
        table: table.clone(),
        schema: match target.updating {
            true => crate::changelog::with_op_schema(&fields),
            false => fields.clone(),
        },
        settings: g.settings.clone(),
        metrics: job.metrics.clone(),
        checkpointing: sink_ck.is_some(),
        restore,
        upsert_key,
        state_dir: sink_ck.map(|s| s.ck.store.root().join("sinks").join(&s.name)),
        subtask: slot,
    }
}

/// What the restored checkpoint left for sink subtask `slot`: a sink of one subtask restored
/// as one gets its own snapshot; otherwise every subtask gets all of the checkpoint's
/// subtasks' snapshots and publishes its share.
fn sink_restore(s: &SinkCheckpoint, slot: TaskSlot) -> Option<SinkRestore> {
    let checkpoint = s.ck.restored.as_ref()?.id;
    let mut subtasks = s.ck.restored_node_snapshots(&s.name);
    let pending = match (slot.count, subtasks.len()) {
        (_, 0) => return None,
        (1, 1) => subtasks.pop().unwrap_or_default(),
        _ => String::new(),
    };
    Some(SinkRestore {
        checkpoint,
        pending,
        subtasks,
    })
}

/// A sink task ready to start: an INSERT's target or a late-data destination, and its input.
pub(crate) struct SinkTask {
    /// The sink.
    pub input: SinkInput,
    /// What it writes: a plan's output, or late rows aligned over the operators; with the
    /// barriers and the end of stream.
    pub rx: mpsc::Receiver<Message>,
    /// Its part in checkpoints.
    pub ck: Option<SinkCheckpoint>,
}

/// Open the sink of each late-data destination operators were given, with a union task that
/// aligns their channels.
pub(crate) fn late_sinks(
    g: &Inner,
    job: &Arc<JobShared>,
    ck: Option<&Arc<Checkpointing>>,
    late: crate::late::LateRouting,
) -> Result<Vec<SinkTask>> {
    let mut out = Vec::new();
    for dest in late.into_destinations() {
        let target = SinkTarget {
            table: &dest.table,
            updating: false,
            event_col: None,
            upsert_key: None,
        };
        let (input, ck) = open_sink(g, job, ck, target, TaskSlot::SINGLE)?;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        job.spawn(crate::runtime::union::run_union(dest.inputs, tx));
        out.push(SinkTask { input, rx, ck });
    }
    Ok(out)
}
