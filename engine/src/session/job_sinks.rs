//! The sinks of a job: each INSERT target and each late-data destination becomes a sink task,
//! registered with the job's checkpoints when it checkpoints.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::checkpoint::Checkpointing;
use crate::connector::{SinkContext, SinkRestore};
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
pub(crate) struct SinkTarget<'a> {
    pub table: &'a Arc<weir_planner::TableDef>,
    /// The rows are a changelog (an `op` column first).
    pub updating: bool,
    /// The event-time column of the rows, for latency metrics.
    pub event_col: Option<(usize, i64)>,
    /// The columns that identify a row of the changelog ([`weir_planner::stream_plan::StreamNode::upsert_key`]).
    pub upsert_key: Option<Vec<usize>>,
}

/// Create the sink of `target` (registered with the job's checkpoints when it checkpoints).
pub(crate) fn open_sink(
    g: &Inner,
    job: &Arc<JobShared>,
    ck: Option<&Arc<Checkpointing>>,
    target: SinkTarget,
) -> Result<(SinkInput, Option<SinkCheckpoint>)> {
    let table = target.table;
    let connector = table.connector().unwrap_or("");
    let factory = g.registry.sink(connector).cloned().ok_or_else(|| {
        EngineError::Internal(format!(
            "no sink connector '{connector}' for table '{}'",
            table.name
        ))
    })?;
    let sink_ck = ck.map(|c| SinkCheckpoint {
        name: c.register(
            "sink",
            sink_layout(table),
            crate::checkpoint::TaskSlot::SINGLE,
        ),
        ck: c.clone(),
        cancel: job.cancel_receiver(),
    });
    let sctx = sink_context(g, job, &target, sink_ck.as_ref());
    let sink = crate::runtime::throttle::wrap(factory.create(sctx)?, table)?;
    let sink = crate::session::statements::CastingSink::wrap(sink, table.physical_schema());
    if !g.quiet {
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
) -> SinkContext {
    let table = target.table;
    let restore = sink_ck.and_then(|s| {
        let pending = s.ck.restored_snapshot(&s.name)?.to_string();
        let checkpoint = s.ck.restored.as_ref()?.id;
        Some(SinkRestore {
            checkpoint,
            pending,
        })
    });
    let fields = table.physical_schema();
    let upsert_key = target.upsert_key.as_ref().map(|key| {
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
    }
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
        let (input, ck) = open_sink(g, job, ck, target)?;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        job.spawn(crate::runtime::union::run_union(dest.inputs, tx));
        out.push(SinkTask { input, rx, ck });
    }
    Ok(out)
}
