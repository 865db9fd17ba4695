//! A running job: the task graph built from a stream plan, its metrics, its error and its
//! cancellation.
//!
//! Every subtask of a plan node becomes one task that owns an operator (or a connector) and
//! talks to its neighbours only through bounded channels of [`Message`]s, so a slow sink slows
//! the sources down instead of filling memory. Stateless operators whose input comes forward
//! are chained into their input's task instead ([`crate::runtime::chain`]), and an exchange's
//! router runs at the end of each input subtask's task. The first task to fail records the
//! error and cancels the job.

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
use crate::runtime::chain::{Link, Output};
use crate::runtime::checkpointed::OperatorCheckpoint;
use crate::runtime::inputs::Inputs;
pub use crate::runtime::task::{run_operator, OperatorTask};
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
    let p = ctx.shape().parallelism(node);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..p).map(|_| mpsc::channel(CHANNEL_CAPACITY)).unzip();
    spawn_into(node, txs.into_iter().map(Output::channel).collect(), ctx)?;
    Ok(rxs)
}

/// Spawn the subtasks of `node` (and, first, of its inputs), subtask `i` writing into
/// `outputs[i]`. A node that chains ([`Shape::chains`]) gets no task: its operator joins the
/// outputs of its input's subtasks.
///
/// [`Shape::chains`]: weir_planner::parallel::Shape::chains
fn spawn_into(node: &StreamNode, outputs: Vec<Output>, ctx: &BuildContext) -> Result<()> {
    let node_no = ctx.next_node.get();
    ctx.next_node.set(node_no + 1);
    let p = outputs.len();
    match node {
        StreamNode::Source(s) => {
            let board = Arc::new(crate::runtime::segments::SegmentBoard::default());
            for (i, out) in outputs.into_iter().enumerate() {
                let subtask = Subtask::new(node_no, i, p);
                super::job_source::spawn_source(node, s, subtask, out, board.clone(), ctx)?;
            }
        }
        StreamNode::Union { .. } => {
            for (inputs, out) in subtask_inputs(node, p, ctx)?.into_iter().zip(outputs) {
                let rxs = inputs
                    .into_iter()
                    .map(|channels| merge(channels, Merge::Subtasks, ctx));
                ctx.job.spawn(crate::runtime::union::run_merge(
                    rxs.collect(),
                    out,
                    Merge::Union,
                ));
            }
        }
        StreamNode::LookupJoin(j) => spawn_lookup_join(j, node_no, outputs, ctx)?,
        _ if ctx.shape().chains(node) => chain_into(node, node_no, outputs, ctx)?,
        _ => spawn_operators(node, node_no, outputs, ctx)?,
    }
    Ok(())
}

/// Chain `node`'s operator (stateless, its input forward) into its input's subtasks: each
/// of `outputs` runs it first.
fn chain_into(
    node: &StreamNode,
    node_no: usize,
    mut outputs: Vec<Output>,
    ctx: &BuildContext,
) -> Result<()> {
    for out in outputs.iter_mut() {
        let mut op = build_operator(node, ctx)?;
        let task = operator_task(node, node_no, op.as_mut(), ctx)?;
        out.chain_before(Link::new(op, task));
    }
    spawn_into(node.children()[0], outputs, ctx)
}

/// The counters and late-data output of one subtask of `node`, which runs `op`.
fn operator_task(
    node: &StreamNode,
    node_no: usize,
    op: &mut dyn Operator,
    ctx: &BuildContext,
) -> Result<OperatorTask> {
    // An operator keeps the late rows it drops only when they have somewhere to go.
    let late = match op.late_rows() {
        Some(rows) => ctx.late.output_for(node)?.inspect(|_| rows.keep()),
        None => None,
    };
    Ok(OperatorTask {
        metrics: ctx.job.register_operator(node_no, op.name()),
        job: ctx.job.metrics.clone(),
        late,
    })
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

/// Each of `p` subtasks' inputs, in input order: for each, the channels it arrives on (one
/// per subtask of the input before an exchange, merged by the reading task).
fn subtask_inputs(
    node: &StreamNode,
    p: usize,
    ctx: &BuildContext,
) -> Result<Vec<Vec<Vec<mpsc::Receiver<Message>>>>> {
    let mut inputs: Vec<Vec<_>> = (0..p).map(|_| Vec::new()).collect();
    for i in 0..node.children().len() {
        for (k, channels) in connect_input(node, i, p, ctx)?.into_iter().enumerate() {
            inputs[k].push(channels);
        }
    }
    Ok(inputs)
}

/// The channels each subtask (of `p`) of `node` reads input `i` from: the input's subtasks
/// connected by the exchange the plan chose. A hash or rebalance exchange's router runs in
/// each input subtask's task, at the end of its output.
fn connect_input(
    node: &StreamNode,
    i: usize,
    p: usize,
    ctx: &BuildContext,
) -> Result<Vec<Vec<mpsc::Receiver<Message>>>> {
    use crate::runtime::exchange::{KeyRouting, Route, Router};
    use weir_planner::parallel::Exchange;
    let input = node.children()[i];
    let route = match ctx.shape().exchange(node, i) {
        Exchange::Forward => {
            let outputs = spawn_subtasks(input, ctx)?;
            return Ok(outputs.into_iter().map(|rx| vec![rx]).collect());
        }
        Exchange::Single => return Ok(vec![spawn_subtasks(input, ctx)?]),
        Exchange::Hash(keys) => Some(keys),
        Exchange::Rebalance => None,
    };
    let mut inputs: Vec<Vec<_>> = (0..p).map(|_| Vec::new()).collect();
    let mut outputs = Vec::new();
    for j in 0..ctx.shape().parallelism(input) {
        let mut txs = Vec::with_capacity(p);
        for input in inputs.iter_mut() {
            let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
            txs.push(tx);
            input.push(rx);
        }
        let route = match (&route, node) {
            (Some(keys), StreamNode::WindowAggregate(a)) if ctx.shape().pre_aggregates(node) => {
                let time = time_context(&a.time)?;
                let local = crate::operators::window_local::LocalWindowAggregate::new(a, time);
                Route::PreAggregated(Box::new(local), KeyRouting::new(keys.clone(), ctx.parallel))
            }
            (Some(keys), _) => Route::Hash(KeyRouting::new(keys.clone(), ctx.parallel)),
            (None, _) => Route::Rebalance { next: j % p },
        };
        outputs.push(Output::routed(Router::new(route, p), txs));
    }
    spawn_into(input, outputs, ctx)?;
    Ok(inputs)
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
    ctx.job.spawn(crate::runtime::union::run_merge(
        rxs,
        Output::channel(tx),
        how,
    ));
    rx
}

/// Start a lookup join's subtasks: each its lookup source from the table's connector, beside
/// its input's subtask.
fn spawn_lookup_join(
    j: &weir_planner::stream_plan::LookupJoinNode,
    node_no: usize,
    outputs: Vec<Output>,
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
    let mut joins = Vec::with_capacity(outputs.len());
    for _ in &outputs {
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
    for (((join, metrics), input), out) in joins.into_iter().zip(inputs).zip(outputs) {
        ctx.job.spawn(crate::runtime::lookup::run_lookup_join(
            join, input, out, metrics,
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
    outputs: Vec<Output>,
    ctx: &BuildContext,
) -> Result<()> {
    let mut parts = Vec::with_capacity(outputs.len());
    for i in 0..outputs.len() {
        let mut op = build_operator(node, ctx)?;
        let slot = Subtask::new(node_no, i, outputs.len()).slot();
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
        let task = operator_task(node, node_no, op.as_mut(), ctx)?;
        parts.push((op, ck, task));
    }
    let inputs = subtask_inputs(node, outputs.len(), ctx)?;
    for (((op, ck, task), rxs), out) in parts.into_iter().zip(inputs).zip(outputs) {
        ctx.job
            .spawn(run_operator(op, Inputs::merged(rxs), out, ck, task));
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
