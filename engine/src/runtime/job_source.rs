//! Starting a plan's source subtasks: each its connector (with its share of the table), its
//! dead-letter handling, metrics and part in checkpoints (its position restored, or merged from
//! every old subtask when the job restores at another parallelism).

use std::sync::Arc;

use weir_planner::stream_plan::{SourceNode, StreamNode};

use crate::connector::SourceContext;
use crate::error::{EngineError, Result};
use crate::observe::dead_letter::{DeadLetters, OnError};
use crate::runtime::chain::Output;
use crate::runtime::checkpointed::SourceCheckpoint;
use crate::runtime::job::{BuildContext, Subtask};
use crate::runtime::segments::SegmentBoard;
use crate::runtime::source::SourceDriver;

/// The dead-letter handling of a source table (`format.on-error`, `dead-letter.topic`),
/// registered with the job.
fn source_dead_letters(s: &SourceNode, connector: &str, ctx: &BuildContext) -> Result<DeadLetters> {
    let has_destination = s.table.option("dead-letter.topic").is_some();
    let on_error = OnError::parse_with_default(s.table.option("format.on-error"), has_destination)
        .map_err(|m| EngineError::connector(connector, m))?;
    let dead_letters = DeadLetters::new(on_error);
    dead_letters.set_quiet(ctx.quiet);
    ctx.job
        .dead_letters
        .lock()
        .expect("lock")
        .push(dead_letters.clone());
    Ok(dead_letters)
}

/// Start a source task: its connector, dead letters, metrics and checkpoint part; `board` is
/// shared by the node's subtasks (segments of one ordered stream, `runtime/segments.rs`).
pub(crate) fn spawn_source(
    node: &StreamNode,
    s: &SourceNode,
    subtask: Subtask,
    tx: Output,
    board: Arc<SegmentBoard>,
    ctx: &BuildContext,
) -> Result<()> {
    let connector = s.table.connector().unwrap_or("");
    let factory = ctx.registry.source(connector).ok_or_else(|| {
        EngineError::connector(s.table.connector().unwrap_or("?"), "unknown connector")
    })?;
    let dead_letters = source_dead_letters(s, factory.name(), ctx)?;
    ctx.job
        .source_names
        .lock()
        .expect("lock")
        .push(s.table.name.clone());
    let slot = subtask.slot();
    let ck = ctx
        .checkpointing
        .as_ref()
        .map(|c| SourceCheckpoint::new(c, node.state_layout(), slot));
    let merge = |positions: &[Option<String>]| factory.merge_positions(&s.table, positions);
    let restored = ck.as_ref().and_then(|c| c.restored(&merge)).transpose()?;
    let metrics = ctx.job.metrics.clone();
    let sctx = SourceContext {
        table: s.table.clone(),
        schema: s.table.physical_schema(),
        used_columns: Some(used_physical_columns(s)),
        batch_size: ctx.batch_size,
        dead_letters: dead_letters.clone(),
        metrics: metrics.clone(),
        restore: restored.as_ref().and_then(|r| r.position.clone()),
        checkpointing: ck.is_some(),
        split: crate::connector::Split {
            index: subtask.index,
            count: subtask.count,
        },
    };
    let source = factory.create(sctx)?;
    let mut driver = SourceDriver::new(s.clone(), source, dead_letters, metrics);
    driver.set_segment_board(board);
    let label = format!("source {}", s.table.name);
    driver.set_op_metrics(ctx.job.register_operator(subtask.node, &label));
    if let Some(ck) = ck {
        driver.set_checkpointing(ck, restored.as_ref());
    }
    ctx.job.spawn(driver.run(tx, ctx.job.cancel_receiver()));
    Ok(())
}

/// The physical columns a source's output and watermark are computed from.
fn used_physical_columns(s: &weir_planner::stream_plan::SourceNode) -> Vec<usize> {
    use datafusion::physical_expr::utils::collect_columns;
    let mut exprs: Vec<usize> = s.projection.clone();
    exprs.extend(s.watermark.as_ref().map(|w| w.1));
    let mut used: Vec<usize> = exprs
        .into_iter()
        .filter_map(|j| s.columns.get(j))
        .flat_map(|e| collect_columns(e).into_iter().map(|c| c.index()))
        .collect();
    used.sort_unstable();
    used.dedup();
    used
}
