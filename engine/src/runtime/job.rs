//! A running job: the task graph built from a stream plan, its metrics, its error and its
//! cancellation.
//!
//! Every plan node becomes one task that owns an operator (or a connector) and talks to its
//! neighbours only through bounded channels of [`Message`]s, so a slow sink slows the sources
//! down instead of filling memory. The first task to fail records the error and cancels the job.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use crate::checkpoint::Checkpointing;
use crate::connector::ConnectorRegistry;
use crate::error::{EngineError, Result};
use crate::message::Message;
use crate::observe::dead_letter::DeadLetters;
use crate::observe::metrics::JobMetrics;
use crate::observe::op_metrics::OperatorMetrics;
use crate::operator::Operator;
use crate::operators;
use crate::runtime::checkpointed::OperatorCheckpoint;
use crate::runtime::inputs::Inputs;
use crate::runtime::union::Merge;
use crate::window::kernels::TimeContext;
use weir_planner::stream_plan::{StreamNode, TimeInfo};

/// Messages in flight between two operators.
pub const CHANNEL_CAPACITY: usize = 16;

static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

/// Job status as shown by SHOW JOBS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    /// Still running.
    Running,
    /// Every task ended without error.
    Finished,
    /// Cancelled before it finished.
    Cancelled,
    /// A task failed; the error message.
    Failed(String),
}

/// Shared state of a running job.
pub struct JobShared {
    /// Job id, unique within the process.
    pub id: u64,
    /// The job's name.
    pub name: String,
    /// When the job was created.
    pub started: Instant,
    /// The job's counters.
    pub metrics: Arc<JobMetrics>,
    /// The dead-letter handle of each source.
    pub dead_letters: Mutex<Vec<DeadLetters>>,
    /// The source table of each entry of `dead_letters`, in the same order.
    pub source_names: Mutex<Vec<String>>,
    status: Mutex<JobStatus>,
    cancel: watch::Sender<bool>,
    done: watch::Sender<bool>,
    tasks: AtomicU64,
    checkpointing: Mutex<Option<Arc<Checkpointing>>>,
    /// What each task did, for EXPLAIN ANALYZE.
    operators: Mutex<Vec<Arc<OperatorMetrics>>>,
    /// Threshold warnings raised while running (`monitoring.*-warn`).
    pub warnings: Mutex<Vec<String>>,
}

impl JobShared {
    /// A running job named `name`, with the next job id and no tasks yet.
    pub fn new(name: String) -> Arc<Self> {
        Arc::new(Self {
            id: NEXT_JOB.fetch_add(1, Ordering::Relaxed),
            name,
            started: Instant::now(),
            metrics: Arc::new(JobMetrics::default()),
            dead_letters: Mutex::new(Vec::new()),
            source_names: Mutex::new(Vec::new()),
            status: Mutex::new(JobStatus::Running),
            cancel: watch::channel(false).0,
            done: watch::channel(false).0,
            tasks: AtomicU64::new(0),
            checkpointing: Mutex::new(None),
            operators: Mutex::new(Vec::new()),
            warnings: Mutex::new(Vec::new()),
        })
    }

    /// Attach the job's checkpoint handles.
    pub fn set_checkpointing(&self, ck: Arc<Checkpointing>) {
        *self.checkpointing.lock().expect("lock") = Some(ck);
    }

    /// Counters for the task of plan node `node`.
    pub fn register_operator(&self, node: usize, name: &str) -> Arc<OperatorMetrics> {
        let mut ops = self.operators.lock().expect("lock");
        let subtask = ops.iter().filter(|m| m.node == node).count();
        let m = OperatorMetrics::of_subtask(node, subtask, name);
        ops.push(m.clone());
        m
    }

    /// The counters of every task, in registration order.
    pub fn operators(&self) -> Vec<Arc<OperatorMetrics>> {
        self.operators.lock().expect("lock").clone()
    }

    /// The job's checkpoint handles, if it checkpoints.
    pub fn checkpointing(&self) -> Option<Arc<Checkpointing>> {
        self.checkpointing.lock().expect("lock").clone()
    }

    /// The current status.
    pub fn status(&self) -> JobStatus {
        self.status.lock().expect("lock").clone()
    }

    /// Ask every source to stop.
    pub fn cancel(&self) {
        let mut s = self.status.lock().expect("lock");
        if *s == JobStatus::Running {
            *s = JobStatus::Cancelled;
        }
        self.cancel.send_replace(true);
    }

    fn fail(&self, e: &EngineError) {
        if matches!(e, EngineError::Cancelled) {
            return;
        }
        let mut s = self.status.lock().expect("lock");
        if matches!(*s, JobStatus::Running | JobStatus::Cancelled) {
            *s = JobStatus::Failed(e.to_string());
        }
        drop(s);
        self.cancel.send_replace(true);
    }

    /// The failure, if the job failed.
    pub fn error(&self) -> Option<String> {
        match self.status() {
            JobStatus::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Bad records over all sources.
    pub fn bad_records(&self) -> u64 {
        self.dead_letters
            .lock()
            .expect("lock")
            .iter()
            .map(|d| d.count())
            .sum::<u64>()
    }

    /// Wait until every task has finished.
    pub async fn wait(&self) {
        let mut rx = self.done.subscribe();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Whether every task has finished.
    pub fn is_done(&self) -> bool {
        *self.done.borrow()
    }

    /// Spawn a task of this job; its error fails the job.
    pub fn spawn<F>(self: &Arc<Self>, fut: F)
    where
        F: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let hold = self.hold();
        tokio::spawn(async move {
            if let Err(e) = fut.await {
                hold.0.fail(&e);
            }
            drop(hold);
        });
    }

    /// Keep the job from counting as finished until the hold is dropped: taken while its tasks
    /// are being spawned, so a source that ends before the sinks exist does not end the job.
    pub fn hold(self: &Arc<Self>) -> TaskHold {
        self.tasks.fetch_add(1, Ordering::SeqCst);
        TaskHold(self.clone())
    }

    fn task_ended(&self) {
        if self.tasks.fetch_sub(1, Ordering::SeqCst) == 1 {
            let mut s = self.status.lock().expect("lock");
            if *s == JobStatus::Running {
                *s = JobStatus::Finished;
            }
            drop(s);
            self.done.send_replace(true);
        }
    }

    /// A receiver that turns `true` when the job is cancelled or fails.
    pub fn cancel_receiver(&self) -> watch::Receiver<bool> {
        self.cancel.subscribe()
    }
}

/// One running task of a job (or the job's builder); the job is finished once every hold is
/// dropped.
pub struct TaskHold(Arc<JobShared>);

impl Drop for TaskHold {
    fn drop(&mut self) {
        self.0.task_ended();
    }
}

/// What a job needs to build its tasks.
pub struct BuildContext<'a> {
    /// The job the tasks belong to.
    pub job: &'a Arc<JobShared>,
    /// The connectors to create sources and sinks with.
    pub registry: &'a ConnectorRegistry,
    /// The session's `SET` options.
    pub settings: &'a BTreeMap<String, String>,
    /// Preferred rows per source batch.
    pub batch_size: usize,
    /// Do not print skipped bad records to stderr.
    pub quiet: bool,
    /// Set when the job checkpoints.
    pub checkpointing: Option<Arc<Checkpointing>>,
    /// The pre-order number of the next plan node to spawn (EXPLAIN ANALYZE).
    pub next_node: std::cell::Cell<usize>,
    /// Where the operators' late rows go.
    pub late: crate::late::LateRouting,
    /// How parallel the job runs (`parallelism.default`, `pipeline.max-parallelism`).
    pub parallel: weir_planner::parallel::ParallelConfig,
}

impl BuildContext<'_> {
    /// How many subtasks run each node and how they are connected.
    pub fn shape(&self) -> weir_planner::parallel::Shape<'_> {
        weir_planner::parallel::Shape {
            config: self.parallel,
            sources: self.registry,
        }
    }
}

/// Spawn the tasks of `node` and return the channel of its output: its subtasks' outputs
/// merged into one (a sink's or a query's input).
pub fn spawn_node(node: &StreamNode, ctx: &BuildContext) -> Result<mpsc::Receiver<Message>> {
    let outputs = spawn_subtasks(node, ctx)?;
    // A bounded job with watermarks gives its output in watermark-epoch order, so it does not
    // depend on scheduling; others as it comes (holding rows for a watermark would delay them
    // for as long as an input is quiet, or to the end when there is none).
    let timed = node.sources().iter().all(|s| s.watermark.is_some());
    let how = match node.is_bounded() && timed {
        true => Merge::Ordered,
        false => Merge::Subtasks,
    };
    Ok(merge(outputs, how, ctx))
}

/// Spawn the subtasks of `node` (and, first, of its inputs); one output channel per subtask.
pub fn spawn_subtasks(
    node: &StreamNode,
    ctx: &BuildContext,
) -> Result<Vec<mpsc::Receiver<Message>>> {
    let node_no = ctx.next_node.get();
    ctx.next_node.set(node_no + 1);
    let p = ctx.shape().parallelism(node);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..p).map(|_| mpsc::channel(CHANNEL_CAPACITY)).unzip();
    match node {
        StreamNode::Source(s) => {
            let board = Arc::new(crate::runtime::segments::SegmentBoard::default());
            for (i, tx) in txs.into_iter().enumerate() {
                let subtask = Subtask::new(node_no, i, p);
                super::job_source::spawn_source(node, s, subtask, tx, board.clone(), ctx)?;
            }
        }
        StreamNode::Union { .. } => {
            for (rxs, tx) in subtask_inputs(node, p, ctx)?.into_iter().zip(txs) {
                ctx.job.spawn(crate::runtime::union::run_union(rxs, tx));
            }
        }
        StreamNode::LookupJoin(j) => spawn_lookup_join(j, node_no, txs, ctx)?,
        _ => spawn_operators(node, node_no, txs, ctx)?,
    }
    Ok(rxs)
}

/// One subtask of a plan node.
#[derive(Debug, Clone, Copy)]
pub struct Subtask {
    /// The node's pre-order number (EXPLAIN ANALYZE).
    pub node: usize,
    /// Which subtask, from 0.
    pub index: usize,
    /// How many subtasks run the node.
    pub count: usize,
}

impl Subtask {
    fn new(node: usize, index: usize, count: usize) -> Self {
        Self { node, index, count }
    }

    /// Which of its node's subtasks it is, for checkpoints.
    pub(crate) fn slot(&self) -> crate::checkpoint::TaskSlot {
        crate::checkpoint::TaskSlot {
            index: self.index,
            count: self.count,
        }
    }
}

/// Each of `p` subtasks' input channels: one per input of `node`, in input order.
fn subtask_inputs(
    node: &StreamNode,
    p: usize,
    ctx: &BuildContext,
) -> Result<Vec<Vec<mpsc::Receiver<Message>>>> {
    let mut inputs: Vec<Vec<_>> = (0..p).map(|_| Vec::new()).collect();
    for i in 0..node.children().len() {
        for (k, rx) in connect_input(node, i, p, ctx)?.into_iter().enumerate() {
            inputs[k].push(rx);
        }
    }
    Ok(inputs)
}

/// The channels subtask `k` (of `p`) of `node` reads input `i` from, one list entry per
/// subtask: the input's subtasks connected by the exchange the plan chose.
fn connect_input(
    node: &StreamNode,
    i: usize,
    p: usize,
    ctx: &BuildContext,
) -> Result<Vec<mpsc::Receiver<Message>>> {
    use crate::runtime::exchange::{run_router, KeyRouting, Route, Router};
    use weir_planner::parallel::Exchange;
    let outputs = spawn_subtasks(node.children()[i], ctx)?;
    let route = match ctx.shape().exchange(node, i) {
        Exchange::Forward => return Ok(outputs),
        Exchange::Single => return Ok(vec![merge(outputs, Merge::Subtasks, ctx)]),
        Exchange::Hash(keys) => Some(keys),
        Exchange::Rebalance => None,
    };
    let mut inputs: Vec<Vec<_>> = (0..p).map(|_| Vec::new()).collect();
    for (j, rx) in outputs.into_iter().enumerate() {
        let mut txs = Vec::with_capacity(p);
        for input in inputs.iter_mut() {
            let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
            txs.push(tx);
            input.push(rx);
        }
        let route = match (&route, node) {
            (Some(keys), StreamNode::WindowAggregate(a)) if ctx.shape().pre_aggregates(node) => {
                let local = crate::operators::window_local::LocalWindowAggregate::new(a);
                Route::PreAggregated(Box::new(local), KeyRouting::new(keys.clone(), ctx.parallel))
            }
            (Some(keys), _) => Route::Hash(KeyRouting::new(keys.clone(), ctx.parallel)),
            (None, _) => Route::Rebalance { next: j % p },
        };
        ctx.job.spawn(run_router(rx, txs, Router::new(route, p)));
    }
    let merged = inputs
        .into_iter()
        .map(|rxs| merge(rxs, Merge::Subtasks, ctx));
    Ok(merged.collect())
}

/// One channel carrying `rxs` merged (the minimum watermark, aligned barriers, one end).
fn merge(
    mut rxs: Vec<mpsc::Receiver<Message>>,
    how: Merge,
    ctx: &BuildContext,
) -> mpsc::Receiver<Message> {
    if rxs.len() == 1 {
        return rxs.pop().expect("one");
    }
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    ctx.job
        .spawn(crate::runtime::union::run_merge(rxs, tx, how));
    rx
}

/// Start a lookup join's subtasks: each its lookup source from the table's connector, beside
/// its input's subtask.
fn spawn_lookup_join(
    j: &weir_planner::stream_plan::LookupJoinNode,
    node_no: usize,
    txs: Vec<mpsc::Sender<Message>>,
    ctx: &BuildContext,
) -> Result<()> {
    let connector = j.table.connector().unwrap_or_default();
    let factory = ctx.registry.lookup(connector).ok_or_else(|| {
        EngineError::connector(
            connector,
            format!("table '{}' cannot be looked up by key", j.table.name),
        )
    })?;
    factory
        .validate(&j.table)
        .map_err(|e| EngineError::connector(connector, e))?;
    let physical = j.table.physical_schema();
    let mut joins = Vec::with_capacity(txs.len());
    for _ in &txs {
        let source = factory.create(crate::connector::LookupContext {
            table: j.table.clone(),
            schema: physical.clone(),
            key_columns: j.right_keys.clone(),
        })?;
        let metrics = ctx.job.register_operator(node_no, "LookupJoin");
        let join = crate::operators::lookup_join::LookupJoin::new(
            j.clone(),
            source,
            &physical,
            metrics.clone(),
        )?;
        joins.push((join, metrics));
    }
    let inputs = spawn_subtasks(&j.left, ctx)?;
    for (((join, metrics), input), tx) in joins.into_iter().zip(inputs).zip(txs) {
        ctx.job.spawn(crate::runtime::lookup::run_lookup_join(
            join, input, tx, metrics,
        ));
    }
    Ok(())
}

/// The operator that runs `node` (any node but a source or a union).
fn build_operator(node: &StreamNode, ctx: &BuildContext) -> Result<Box<dyn Operator>> {
    let metrics = ctx.job.metrics.clone();
    let clock = operators::key_index::process_clock;
    Ok(match node {
        StreamNode::Filter { predicate, .. } => {
            Box::new(operators::filter::FilterOperator::new(predicate.clone()))
        }
        StreamNode::Project { exprs, schema, .. } => Box::new(
            operators::project::ProjectOperator::new(exprs.clone(), schema.clone()),
        ),
        StreamNode::WindowAssign(w) => Box::new(
            operators::window_assign::WindowAssignOperator::new(w, time_context(&w.time)?)?,
        ),
        StreamNode::WindowAggregate(a) if a.spec.is_session() => {
            Box::new(operators::session_aggregate::SessionAggregateOperator::new(
                a,
                time_context(&a.time)?,
                metrics,
            )?)
        }
        StreamNode::WindowAggregate(a) => {
            let op = operators::window_aggregate::WindowAggregateOperator::new(
                a,
                time_context(&a.time)?,
                metrics,
            )?;
            match ctx.shape().pre_aggregates(node) {
                true => Box::new(op.with_partial_input()?),
                false => Box::new(op),
            }
        }
        StreamNode::GroupAggregate(a) => {
            Box::new(operators::group_aggregate::GroupAggregateOperator::new(
                a,
                ttl_ms(ctx.settings)?,
                clock,
            )?)
        }
        StreamNode::Rank(r) => Box::new(operators::rank::RankOperator::new(
            r,
            ttl_ms(ctx.settings)?,
            clock,
        )?),
        StreamNode::Join(j) => {
            let ttl = join_ttl_ms(j, ctx.settings)?;
            match j.changelog {
                true => Box::new(operators::changelog_join::ChangelogJoinOperator::new(
                    j, ttl, clock,
                )?),
                false => Box::new(operators::join::JoinOperator::new(j, metrics, ttl, clock)?),
            }
        }
        StreamNode::TemporalJoin(j) => Box::new(
            operators::temporal_join::TemporalJoinOperator::new(j, metrics)?,
        ),
        StreamNode::Over(o) => Box::new(operators::over_aggregate::OverAggregateOperator::new(o)?),
        StreamNode::Source(_) | StreamNode::Union { .. } | StreamNode::LookupJoin(_) => {
            return Err(EngineError::Internal("not an operator node".into()))
        }
    })
}

/// Start the subtasks that run `node`'s operator: each its operator, checkpoint part,
/// late-data output and metrics; then its inputs (spawned first, recursively) through their
/// exchanges.
fn spawn_operators(
    node: &StreamNode,
    node_no: usize,
    txs: Vec<mpsc::Sender<Message>>,
    ctx: &BuildContext,
) -> Result<()> {
    let mut parts = Vec::with_capacity(txs.len());
    for i in 0..txs.len() {
        let mut op = build_operator(node, ctx)?;
        let slot = Subtask::new(node_no, i, txs.len()).slot();
        let ck = match &ctx.checkpointing {
            Some(c) if op.is_stateful() => Some(OperatorCheckpoint::open(
                c,
                op.as_mut(),
                node.state_layout(),
                slot,
                ctx.parallel,
            )?),
            _ => None,
        };
        let late = match op.late_rows() {
            Some(rows) => ctx.late.output_for(node)?.inspect(|_| rows.keep()),
            None => None,
        };
        let task = OperatorTask {
            metrics: ctx.job.register_operator(node_no, op.name()),
            job: ctx.job.metrics.clone(),
            late,
        };
        parts.push((op, ck, task));
    }
    let inputs = subtask_inputs(node, txs.len(), ctx)?;
    for (((op, ck, task), rxs), tx) in parts.into_iter().zip(inputs).zip(txs) {
        ctx.job
            .spawn(run_operator(op, Inputs::new(rxs), tx, ck, task));
    }
    Ok(())
}

/// `table.exec.state.ttl` in milliseconds.
fn ttl_ms(settings: &BTreeMap<String, String>) -> Result<Option<u64>> {
    weir_planner::query::state_ttl(settings)
        .map(|t| t.map(|ns| (ns / 1_000_000).max(1) as u64))
        .map_err(EngineError::Execution)
}

/// Each input's state TTL of a regular join in milliseconds: its `STATE_TTL` hint, else
/// `table.exec.state.ttl`.
fn join_ttl_ms(
    j: &weir_planner::stream_plan::JoinNode,
    settings: &BTreeMap<String, String>,
) -> Result<[Option<u64>; 2]> {
    let session = ttl_ms(settings)?;
    let hint = |ns: Option<i64>| ns.map(|ns| (ns / 1_000_000).max(1) as u64);
    Ok([0, 1].map(|side| hint(j.state_ttl[side]).or(session)))
}

/// The window time context of a plan's time info.
pub fn time_context(t: &TimeInfo) -> Result<TimeContext> {
    let tz = match &t.tz {
        Some(name) => Some(name.parse::<chrono_tz::Tz>().map_err(|_| {
            EngineError::Execution(format!(
                "unknown time zone '{name}' in 'table.local-time-zone'"
            ))
        })?),
        None => None,
    };
    Ok(TimeContext { unit: t.unit, tz })
}

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

/// Feed an operator its inputs, in order, and forward what it produces.
pub async fn run_operator(
    mut op: Box<dyn Operator>,
    mut inputs: Inputs,
    tx: mpsc::Sender<Message>,
    mut ck: Option<OperatorCheckpoint>,
    task: OperatorTask,
) -> Result<()> {
    let metrics = task.metrics.clone();
    let mut out = Vec::new();
    // The latest ingestion time among the input batches, stamped on the outputs.
    let mut ingest_ns = 0;
    let mut sized: Option<Instant> = None;
    while let Some((i, m)) = inputs.next().await {
        let end = matches!(m, Message::EndOfStream);
        let marker = matches!(m, Message::Barrier(_) | Message::EndOfStream).then(|| m.clone());
        let started = std::time::Instant::now();
        match m {
            Message::Batch(b) => {
                ingest_ns = ingest_ns.max(b.ingest_ns);
                OperatorMetrics::add(&metrics.rows_in, b.num_rows());
                if inputs.len() == 2 {
                    metrics.add_input_rows(i, b.num_rows());
                }
                op.process_input(i, b, &mut out)?
            }
            Message::Watermark(w) => {
                op.on_input_watermark(i, w, &mut out)?;
                metrics
                    .watermark
                    .store(w, std::sync::atomic::Ordering::Relaxed);
            }
            Message::Barrier(b) => {
                if let Some(ck) = ck.as_mut() {
                    ck.snapshot(op.as_mut(), b.checkpoint_id).await?;
                }
                out.push(Message::Barrier(b))
            }
            Message::EndOfStream => {
                op.on_end(&mut out)?;
                out.push(Message::EndOfStream);
            }
            // Every input is idle: so is the operator's output.
            Message::Idle => out.push(Message::Idle),
        }
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
            if metrics.send(&tx, m).await.is_err() {
                return Ok(());
            }
        }
        if end {
            break;
        }
    }
    Ok(())
}

/// Send the late rows the operator dropped, then the barrier or end of stream it passed (so the
/// late-data sink aligns checkpoints with the rest of the job). `false` once the sink is gone.
async fn send_late(
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
