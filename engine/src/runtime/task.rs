//! An operator's task: it reads the operator's inputs in order, feeds it each message, takes
//! part in checkpoints, sends the late rows it dropped to the late-data destination, and passes
//! what it produces to its [`Output`] (the operators chained after it, then a channel or an
//! exchange).

use std::sync::Arc;
use std::time::Instant;

use crate::error::Result;
use crate::message::Message;
use crate::observe::metrics::JobMetrics;
use crate::observe::op_metrics::OperatorMetrics;
use crate::operator::Operator;
use crate::runtime::chain::Output;
use crate::runtime::checkpointed::OperatorCheckpoint;
use crate::runtime::inputs::Inputs;

/// How often an operator's state size is measured (it may walk the whole state).
const STATE_SIZE_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The counters an operator's task updates: its own and its job's.
pub struct OperatorTask {
    /// The task's counters.
    pub metrics: Arc<OperatorMetrics>,
    /// The job's counters (late rows, late updates and expired keys add up there).
    pub job: Arc<JobMetrics>,
    /// Where the operator's late rows go, when the job has a late-data destination.
    pub late: Option<crate::late::LateOutput>,
}

/// Feed an operator its inputs, in order, and pass on what it produces.
pub async fn run_operator(
    mut op: Box<dyn Operator>,
    mut inputs: Inputs,
    mut output: Output,
    mut ck: Option<OperatorCheckpoint>,
    task: OperatorTask,
) -> Result<()> {
    let metrics = task.metrics.clone();
    output.sent_by(metrics.clone());
    let mut out = Vec::new();
    // The latest ingestion time among the input batches, stamped on the outputs.
    let mut ingest_ns = 0;
    let mut sized: Option<Instant> = None;
    while let Some((i, m)) = inputs.next().await {
        let end = matches!(m, Message::EndOfStream);
        let marker = matches!(m, Message::Barrier(_) | Message::EndOfStream).then(|| m.clone());
        let started = std::time::Instant::now();
        match &m {
            Message::Batch(b) => ingest_ns = ingest_ns.max(b.ingest_ns),
            Message::Barrier(b) => {
                if let Some(ck) = ck.as_mut() {
                    ck.snapshot(op.as_mut(), b.checkpoint_id).await?;
                }
            }
            _ => {}
        }
        feed(op.as_mut(), &metrics, inputs.len(), i, m, &mut out)?;
        report(op.as_ref(), &task, &mut sized, end);
        OperatorMetrics::add_time(&metrics.busy_ns, started);
        if let Some(late) = &task.late {
            if !send_late(op.as_mut(), late, marker).await? {
                return Ok(());
            }
        }
        for mut m in out.drain(..) {
            if let Message::Batch(b) = &mut m {
                OperatorMetrics::add(&metrics.rows_out, b.num_rows());
                if b.ingest_ns == 0 {
                    b.ingest_ns = ingest_ns;
                }
            }
            if !output.send(m).await? {
                return Ok(());
            }
        }
        if end {
            break;
        }
    }
    Ok(())
}

/// Give `op` message `m` of its input `i` (of `inputs`) and push what it produces into `out`,
/// counting rows in and the watermark. A barrier passes on (the task snapshots first).
pub(crate) fn feed(
    op: &mut dyn Operator,
    metrics: &OperatorMetrics,
    inputs: usize,
    i: usize,
    m: Message,
    out: &mut Vec<Message>,
) -> Result<()> {
    match m {
        Message::Batch(b) => {
            OperatorMetrics::add(&metrics.rows_in, b.num_rows());
            if inputs == 2 {
                metrics.add_input_rows(i, b.num_rows());
            }
            op.process_input(i, b, out)?
        }
        Message::Watermark(w) => {
            op.on_input_watermark(i, w, out)?;
            metrics
                .watermark
                .store(w, std::sync::atomic::Ordering::Relaxed);
        }
        Message::Barrier(b) => out.push(Message::Barrier(b)),
        Message::EndOfStream => {
            op.on_end(out)?;
            out.push(Message::EndOfStream);
        }
        // Every input is idle: so is the operator's output.
        Message::Idle => out.push(Message::Idle),
    }
    Ok(())
}

/// Send the late rows the operator dropped, then the barrier or end of stream it passed (so the
/// late-data sink aligns checkpoints with the rest of the job). `false` once the sink is gone.
pub(crate) async fn send_late(
    op: &mut dyn Operator,
    late: &crate::late::LateOutput,
    marker: Option<Message>,
) -> Result<bool> {
    let batches = op.late_rows().map(|l| l.take()).unwrap_or_default();
    let mut messages = Vec::with_capacity(batches.len() + 1);
    for b in batches {
        let b = crate::late::conform(&b, &late.schema)?;
        messages.push(Message::Batch(crate::message::StreamBatch::new(b)));
    }
    messages.extend(marker);
    for m in messages {
        if late.tx.send(m).await.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// After a message: the operator's counts, and its state size when due (or at the end).
fn report(op: &dyn Operator, task: &OperatorTask, sized: &mut Option<Instant>, end: bool) {
    if op.is_stateful() && (end || sized.is_none_or(|t| t.elapsed() >= STATE_SIZE_EVERY)) {
        task.metrics.set_state(op.state_size());
        *sized = Some(Instant::now());
    }
    task.metrics.set_counts(op.counts(), &task.job);
}
