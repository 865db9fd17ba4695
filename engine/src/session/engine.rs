//! The embeddable engine: a catalog, session settings, connectors and running jobs.
//!
//! `Engine::execute` runs statements one by one (DDL changes the catalog, a query starts a job
//! whose rows arrive as a [`QueryStream`], INSERT submits a background job). Planning happens
//! entirely before anything starts, so a planning error never leaves a half-started job.

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;
use weir_planner::{Catalog, PlanError, Planner, Settings, Statement, StreamPlan};

use crate::checkpoint::coordinator::run_coordinator;
use crate::checkpoint::{CheckpointConfig, CheckpointStore, Checkpointing, TaskSlot};
use crate::connector::{ConnectorRegistry, SinkFactory, SourceFactory};
use crate::error::{EngineError, Result};
use crate::runtime::job::{spawn_node, spawn_subtasks, BuildContext, JobShared};
use crate::runtime::sink::run_sink;
use crate::session::job_history::{JobHistory, JobKind};
use crate::session::job_sinks::{late_sinks, open_sink, sink_parallelism, SinkTarget, SinkTask};
use crate::session::stream::{JobHandle, QueryStream};

/// What one statement produced.
pub enum Output {
    /// A one-line confirmation (`Table 'x' created.`).
    Message(String),
    /// Text such as an EXPLAIN plan.
    Text(String),
    /// A small finished result (SHOW, DESCRIBE, `SELECT 1 + 1`).
    Table(SchemaRef, Vec<RecordBatch>),
    /// The rows of a running query.
    Stream(QueryStream),
    /// A submitted background job (INSERT INTO, statement set).
    Job(JobHandle),
}

pub(crate) struct Inner {
    pub catalog: Catalog,
    pub settings: Settings,
    /// Options fixed from outside the script (`weir run --set`): its own `SET` cannot change them.
    pub pinned: Settings,
    pub planner: Planner,
    pub registry: ConnectorRegistry,
    pub jobs: JobHistory,
    pub batch_size: usize,
    pub quiet: bool,
    pub checkpoint: Option<CheckpointConfig>,
}

/// A Weir engine. Cheap to clone; clones share the catalog and jobs.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Mutex<Inner>>,
}

impl Engine {
    /// An engine with the given connectors.
    pub fn with_connectors(registry: ConnectorRegistry) -> Self {
        crate::operators::key_index::process_clock(); // starts the process uptime clock
        let inner = Inner {
            catalog: Catalog::default(),
            settings: Settings::new(),
            pinned: Settings::new(),
            planner: Planner::new(),
            registry,
            jobs: JobHistory::default(),
            batch_size: 8192,
            quiet: false,
            checkpoint: None,
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("engine lock poisoned")
    }

    /// Add a source connector (replacing one of the same name).
    pub fn register_source(&self, f: Arc<dyn SourceFactory>) {
        self.lock().registry.register_source(f);
    }

    /// Add a sink connector (replacing one of the same name).
    pub fn register_sink(&self, f: Arc<dyn SinkFactory>) {
        self.lock().registry.register_sink(f);
    }

    /// Register a scalar UDF (DataFusion's `ScalarUDF`), usable in SQL by its name.
    pub fn register_udf(&self, f: ScalarUDF) -> Result<()> {
        Ok(self.lock().planner.register_udf(Arc::new(f))?)
    }

    /// Register an aggregate UDF (DataFusion's `AggregateUDF`).
    pub fn register_udaf(&self, f: AggregateUDF) -> Result<()> {
        Ok(self.lock().planner.register_udaf(Arc::new(f))?)
    }

    /// Rows per batch that sources aim for (default 8192).
    pub fn set_batch_size(&self, n: usize) {
        self.lock().batch_size = n.max(1);
    }

    /// Do not print skipped bad records to stderr.
    pub fn set_quiet(&self, quiet: bool) {
        self.lock().quiet = quiet;
    }

    /// Set a session option, as `SET 'key' = 'value'` does.
    pub fn set(&self, key: &str, value: &str) {
        self.lock()
            .settings
            .insert(key.to_string(), value.to_string());
    }

    /// Fix an option for this engine's life, as `weir run --set key=value` does: a `SET` of the
    /// same key in a script is then ignored (the command line wins, like Flink's `-D`), and
    /// `RESET` brings the fixed value back. An unknown key is refused, naming the closest
    /// known one.
    pub fn override_option(&self, key: &str, value: &str) -> Result<()> {
        if weir_planner::options::session_option(key).is_none() {
            return Err(plan_error(&weir_planner::options::unknown_option_message(
                key,
            )));
        }
        let mut g = self.lock();
        crate::session::statements::check_option_value(key, value)?;
        g.pinned.insert(key.to_string(), value.to_string());
        g.settings.insert(key.to_string(), value.to_string());
        Ok(())
    }

    /// A copy of the session options set so far (`SET` / [`Engine::set`]).
    pub fn settings(&self) -> Settings {
        self.lock().settings.clone()
    }

    /// A copy of the catalog: the tables and views defined so far.
    pub fn catalog(&self) -> Catalog {
        self.lock().catalog.clone()
    }

    /// Names of every scalar and aggregate function usable in SQL, sorted.
    pub fn function_names(&self) -> Vec<String> {
        self.lock().planner.function_names()
    }

    /// Names of every registered connector (sources and sinks), sorted.
    pub fn connector_names(&self) -> Vec<String> {
        self.lock().registry.names()
    }

    /// Jobs started by this engine: every running one and the last
    /// [`crate::session::job_history::KEPT_ENDED`] that ended, oldest first.
    pub fn jobs(&self) -> Vec<JobHandle> {
        let mut g = self.lock();
        g.jobs.prune();
        g.jobs.all()
    }

    /// The jobs `/metrics` shows and `/health` judges: the running ones, and the latest ended
    /// job of each submitted pipeline (see [`crate::session::job_history`]).
    pub fn current_jobs(&self) -> Vec<JobHandle> {
        let mut g = self.lock();
        g.jobs.prune();
        g.jobs.current()
    }

    /// Run every statement of `sql` in order; stops at the first error.
    pub async fn execute(&self, sql: &str) -> Result<Vec<Output>> {
        let statements = weir_planner::parse_script(sql)?;
        let mut out = Vec::with_capacity(statements.len());
        for s in statements {
            out.push(self.execute_statement(s).await?);
        }
        Ok(out)
    }

    /// Run statements and return the rows of the last one, which must be a query.
    pub async fn query(&self, sql: &str) -> Result<QueryStream> {
        match self.execute(sql).await?.pop() {
            Some(Output::Stream(s)) => Ok(s),
            Some(Output::Table(schema, batches)) => Ok(self.finished_stream(schema, batches)),
            _ => Err(EngineError::Plan(PlanError::plan(
                "query() needs a SELECT as the last statement",
                Default::default(),
            ))),
        }
    }

    /// Run statements and return the job of the last one (INSERT INTO or a statement set).
    pub async fn submit(&self, sql: &str) -> Result<JobHandle> {
        match self.execute(sql).await?.pop() {
            Some(Output::Job(j)) => Ok(j),
            _ => Err(EngineError::Plan(PlanError::plan(
                "submit() needs an INSERT INTO or EXECUTE STATEMENT SET as the last statement",
                Default::default(),
            ))),
        }
    }

    /// Plan a query or INSERT and describe its operators, without running it.
    pub fn explain(&self, sql: &str) -> Result<String> {
        let mut statements = weir_planner::parse_script(sql)?;
        let Some(last) = statements.pop() else {
            return Ok(String::new());
        };
        crate::session::statements::explain(&self.lock(), &last)
    }

    /// Execute one parsed statement.
    pub async fn execute_statement(&self, s: Statement) -> Result<Output> {
        match s {
            Statement::Query(q) if crate::session::system_tables::mentions(&q.text) => {
                let jobs = crate::session::system_tables::Jobs {
                    kept: self.jobs(),
                    current: self.current_jobs(),
                };
                crate::session::system_tables::query(&q.text, &jobs).await
            }
            Statement::Query(q) => {
                let plan = crate::session::statements::plan_query(&self.lock(), &q)?;
                match plan.stream {
                    Some(stream) => self.start_query(stream),
                    None => self.run_batch(plan.logical).await,
                }
            }
            Statement::ExplainAnalyze(inner) => {
                self.explain_analyze(*inner, std::future::pending()).await
            }
            Statement::Insert { .. } | Statement::StatementSet(_) => {
                let inserts = crate::session::statements::plan_inserts(&self.lock(), &s)?;
                self.start_inserts(inserts).map(Output::Job)
            }
            other => crate::session::statements::execute_ddl(&mut self.lock(), other),
        }
    }

    /// Execute one statement, giving up when `stop` completes first (a shell's Ctrl-C). An
    /// `EXPLAIN ANALYZE` then cancels its query and still returns the analyzed operator tree of
    /// what ran so far, headed `cancelled after ...`; any other statement that has not finished
    /// returns [`EngineError::Cancelled`]. A query's rows arrive later, so a SELECT that started
    /// is stopped through its [`QueryStream`] instead.
    pub async fn execute_statement_until(
        &self,
        s: Statement,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Output> {
        match s {
            Statement::ExplainAnalyze(inner) => self.explain_analyze(*inner, stop).await,
            other => tokio::select! {
                r = self.execute_statement(other) => r,
                () = stop => Err(EngineError::Cancelled),
            },
        }
    }

    async fn run_batch(&self, plan: datafusion::logical_expr::LogicalPlan) -> Result<Output> {
        let state = self.lock().planner.state().clone();
        let ctx = SessionContext::new_with_state(state);
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
        Ok(Output::Table(schema, batches))
    }

    fn finished_stream(&self, schema: SchemaRef, batches: Vec<RecordBatch>) -> QueryStream {
        let job = JobShared::new("constant query".into());
        let (tx, rx) = tokio::sync::mpsc::channel(batches.len() + 1);
        for b in batches {
            let _ = tx.try_send(crate::message::Message::Batch(
                crate::message::StreamBatch::new(b),
            ));
        }
        let _ = tx.try_send(crate::message::Message::EndOfStream);
        QueryStream::new(rx, JobHandle(job), schema)
    }

    /// The current jobs' metrics in the Prometheus text format (see `docs/metrics.md`): ended
    /// ad-hoc queries and superseded pipeline runs are left out.
    pub fn metrics_text(&self) -> String {
        crate::observe::prometheus::render(&self.current_jobs())
    }

    /// The current jobs' metrics as typed samples (what [`Engine::metrics_text`] writes).
    pub fn samples(&self) -> crate::observe::samples::Samples {
        crate::observe::collect::samples(&self.current_jobs())
    }

    /// `Ok` when no current pipeline failed (the latest job of each submitted INSERT; ad-hoc
    /// queries never count) and running checkpointing jobs checkpointed within
    /// `max_checkpoint_age`; otherwise the reasons as JSON.
    pub fn health(
        &self,
        max_checkpoint_age: std::time::Duration,
    ) -> std::result::Result<(), String> {
        crate::observe::health::health(&self.current_jobs(), max_checkpoint_age)
    }

    /// `EXPLAIN ANALYZE <query>`: run the query to its end (or until `stop` completes, which
    /// cancels it), discarding its rows, then show the operator tree with each operator's rows,
    /// busy time and backpressured time.
    async fn explain_analyze(
        &self,
        s: Statement,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Output> {
        let Statement::Query(q) = s else {
            return Err(EngineError::Plan(PlanError::unsupported(
                "EXPLAIN ANALYZE of this statement",
                "EXPLAIN ANALYZE runs a query: EXPLAIN ANALYZE SELECT ...",
            )));
        };
        let plan = crate::session::statements::plan_query(&self.lock(), &q)?;
        let Some(stream) = plan.stream else {
            return Ok(Output::Text("a constant query has no operators".into()));
        };
        let tree = {
            let g = self.lock();
            let shape = weir_planner::parallel::Shape {
                config: parallel_config(&g.settings)?,
                sources: &g.registry,
            };
            shape.explain(&stream.root)
        };
        let started = std::time::Instant::now();
        let Output::Stream(rows) = self.start_query(stream)? else {
            return Err(EngineError::Internal(
                "a query did not start a stream".into(),
            ));
        };
        let run = analyze_run(rows, stop).await?;
        let wall = started.elapsed();
        let text = crate::observe::op_metrics::annotate(&tree, &run.operators, wall);
        let ms = wall.as_secs_f64() * 1e3;
        let head = match run.cancelled {
            false => format!("{} result rows in {ms:.1} ms", run.rows),
            true => format!(
                "cancelled after {ms:.1} ms, {} result rows so far",
                run.rows
            ),
        };
        Ok(Output::Text(format!(
            "== Analyzed plan ({head}) ==\n{text}"
        )))
    }

    fn start_query(&self, plan: StreamPlan) -> Result<Output> {
        let g = self.lock();
        let job = JobShared::new("query".into());
        let _building = job.hold();
        let mut ctx = build_ctx(&g, &job)?;
        let thresholds = crate::observe::monitor::Thresholds::parse(&g.settings)?;
        let rx = spawn_node(&plan.root, &ctx)?;
        let late = std::mem::take(&mut ctx.late);
        for s in late_sinks(&g, &job, None, late)? {
            job.spawn(run_sink(
                s.input,
                s.rx,
                job.metrics.clone(),
                None,
                job.cancel_receiver(),
            ));
        }
        crate::observe::monitor::spawn(&job, thresholds, g.quiet);
        print_warnings(&g, &plan);
        drop(g);
        let handle = JobHandle(job);
        self.lock().jobs.push(handle.clone(), JobKind::AdHoc);
        let event_col = plan.root.event_time_column();
        let stream = if plan.updating {
            QueryStream::updating(rx, handle, plan.schema)
        } else {
            QueryStream::new(rx, handle, plan.schema)
        };
        Ok(Output::Stream(stream.track_latency(event_col)))
    }

    fn start_inserts(
        &self,
        inserts: Vec<crate::session::statements::PlannedInsert>,
    ) -> Result<JobHandle> {
        let g = self.lock();
        let names: Vec<&str> = inserts.iter().map(|i| i.table.name.as_str()).collect();
        let job = JobShared::new(format!("insert into {}", names.join(", ")));
        let _building = job.hold();
        let ck = checkpointing(&g, &inserts)?;
        let thresholds = crate::observe::monitor::Thresholds::parse(&g.settings)?;
        let sinks = insert_tasks(&g, &job, ck.as_ref(), &inserts)?;
        if let Some(c) = &ck {
            if let Err(e) = check_tasks(c, g.quiet) {
                job.cancel();
                return Err(e);
            }
        }
        for s in sinks {
            let cancel = job.cancel_receiver();
            job.spawn(run_sink(s.input, s.rx, job.metrics.clone(), s.ck, cancel));
        }
        if let Some(c) = ck {
            start_coordinator(&job, c, g.quiet);
        }
        crate::observe::monitor::spawn(&job, thresholds, g.quiet);
        drop(g);
        let handle = JobHandle(job);
        self.lock().jobs.push(handle.clone(), JobKind::Submitted);
        Ok(handle)
    }

    /// Checkpoint into `dir` (every `interval`, default 10 s) for the jobs submitted from now
    /// on; a job resumes from the latest complete checkpoint found there.
    pub fn set_checkpointing(&self, config: Option<CheckpointConfig>) {
        self.lock().checkpoint = config;
    }
}

/// Build the tasks of a job of `inserts` (sources and operators start at once, sinks are
/// returned to start once the checkpoint layout is checked): each INSERT's plan into its
/// target, then the late-data destinations the operators were given.
fn insert_tasks(
    g: &Inner,
    job: &Arc<JobShared>,
    ck: Option<&Arc<Checkpointing>>,
    inserts: &[crate::session::statements::PlannedInsert],
) -> Result<Vec<SinkTask>> {
    let mut ctx = build_ctx(g, job)?;
    ctx.checkpointing = ck.cloned();
    ctx.late.set_checkpointing(ck.is_some());
    let mut sinks = Vec::new();
    for ins in inserts {
        print_warnings(g, &ins.plan);
        let upsert_key = ins.plan.root.upsert_key();
        let target = SinkTarget {
            table: &ins.table,
            updating: ins.plan.updating,
            event_col: ins.plan.root.event_time_column(),
            upsert_key: upsert_key.as_deref(),
        };
        let input_p = ctx.shape().parallelism(&ins.plan.root);
        let p = sink_parallelism(g, target, input_p, ck.is_some())?;
        let opened = (0..p)
            .map(|index| open_sink(g, job, ck, target, TaskSlot { index, count: p }))
            .collect::<Result<Vec<_>>>()?;
        let rxs = match p {
            1 => vec![spawn_node(&ins.plan.root, &ctx)?],
            _ => spawn_subtasks(&ins.plan.root, &ctx)?,
        };
        for ((input, ck), rx) in opened.into_iter().zip(rxs) {
            sinks.push(SinkTask { input, rx, ck });
        }
    }
    let late = std::mem::take(&mut ctx.late);
    sinks.extend(late_sinks(g, job, ck, late)?);
    Ok(sinks)
}

/// Start the checkpoint coordinator of a job whose sources registered with `c`.
fn start_coordinator(job: &Arc<JobShared>, c: Arc<Checkpointing>, quiet: bool) {
    job.set_checkpointing(c.clone());
    let sources = c
        .participants()
        .iter()
        .filter(|p| p.starts_with("source-"))
        .count();
    let fp = crate::checkpoint::layout::fingerprint_of(&c.layouts());
    job.spawn(run_coordinator(
        c,
        fp,
        sources,
        quiet,
        job.cancel_receiver(),
    ));
}

/// What an `EXPLAIN ANALYZE` run did: its result rows and each operator's counters.
struct AnalyzeRun {
    rows: usize,
    cancelled: bool,
    operators: Vec<Arc<crate::observe::op_metrics::OperatorMetrics>>,
}

/// How long a cancelled `EXPLAIN ANALYZE` waits for its tasks to wind down.
const WIND_DOWN: std::time::Duration = std::time::Duration::from_secs(2);

/// Count a query's rows until it ends, or until `stop` completes: then cancel it and count the
/// rows still in flight while its tasks wind down (at most [`WIND_DOWN`]).
async fn analyze_run(
    mut rows: QueryStream,
    stop: impl std::future::Future<Output = ()>,
) -> Result<AnalyzeRun> {
    let mut count = 0;
    let cancelled = tokio::select! {
        r = count_rows(&mut rows, &mut count) => { r?; false }
        () = stop => true,
    };
    if cancelled {
        rows.job().cancel();
        // A failure while winding down is the cancellation's, not the query's.
        let _ = tokio::time::timeout(WIND_DOWN, count_rows(&mut rows, &mut count)).await;
    }
    Ok(AnalyzeRun {
        rows: count,
        cancelled,
        operators: rows.job().operator_metrics(),
    })
}

/// Add the rows of every remaining batch of `rows` to `count`.
async fn count_rows(rows: &mut QueryStream, count: &mut usize) -> Result<()> {
    while let Some(b) = rows.next_batch().await {
        *count += b?.num_rows();
    }
    Ok(())
}

/// What the planning pass executes for a statement: queries and INSERTs become EXPLAIN;
/// statements that act on running jobs or read the system tables are left to the run.
pub fn plan_only(st: Statement) -> Option<Statement> {
    match st {
        Statement::Query(q) if crate::session::system_tables::mentions(&q.text) => None,
        Statement::Query(_) | Statement::Insert { .. } | Statement::StatementSet(_) => {
            Some(Statement::Explain(Box::new(st)))
        }
        Statement::ExplainAnalyze(inner) => plan_only(*inner),
        Statement::StopJob { .. } => None,
        other => Some(other),
    }
}

/// The checkpoint configuration of a job from the engine's and the session's settings, with
/// the checkpoint it restores from.
fn checkpointing(
    g: &Inner,
    inserts: &[crate::session::statements::PlannedInsert],
) -> Result<Option<Arc<Checkpointing>>> {
    let mut config = g.checkpoint.clone();
    if let Some(d) = g.settings.get("execution.checkpointing.dir") {
        let c = config.get_or_insert_with(|| CheckpointConfig::new(d));
        c.dir = d.into();
    }
    let interval = g.settings.get("execution.checkpointing.interval");
    let Some(mut config) = config else {
        return match interval {
            Some(_) => Err(plan_error(
                "'execution.checkpointing.interval' needs a checkpoint directory: \
                 `weir run --checkpoint-dir DIR` or SET 'execution.checkpointing.dir' = '...'",
            )),
            None => Ok(None),
        };
    };
    if let Some(i) = interval {
        let ns = weir_planner::interval::parse_duration(i)
            .map_err(|e| plan_error(&format!("'execution.checkpointing.interval' = '{i}': {e}")))?;
        config.interval = std::time::Duration::from_nanos(ns.max(1_000_000) as u64);
    }
    if let Some(t) = g.settings.get("execution.checkpointing.timeout") {
        let ns = weir_planner::interval::parse_duration(t)
            .map_err(|e| plan_error(&format!("'execution.checkpointing.timeout' = '{t}': {e}")))?;
        config.timeout = std::time::Duration::from_nanos(ns.max(1_000_000) as u64);
    }
    if let Some(m) = g.settings.get("state.memory-limit") {
        config.memory_limit = crate::state::parse_bytes(m).ok_or_else(|| {
            plan_error(&format!(
                "'state.memory-limit' = '{m}' is not a size like '512 mb'"
            ))
        })? as usize;
    }
    let store = CheckpointStore::open(&config.dir)?;
    let restored = store.latest()?;
    let parallel = parallel_config(&g.settings)?;
    let job = crate::checkpoint::layout::job_layouts(inserts, parallel);
    if let Some(r) = &restored {
        crate::checkpoint::layout::check_key_groups(r, &job, &config.dir)?;
        check_restore(r, &job, &config)?;
        if !g.quiet {
            tracing::info!(
                "restoring from checkpoint {} in {}",
                r.id,
                config.dir.display()
            );
        }
    }
    Ok(Some(Arc::new(Checkpointing::new(
        config, store, restored, job,
    ))))
}

/// Refuse to restore `r` into a job whose queries or source tables changed, saying what
/// changed (unless `--allow-changed-query`).
fn check_restore(
    r: &crate::checkpoint::CheckpointMeta,
    job: &std::collections::BTreeMap<String, String>,
    config: &CheckpointConfig,
) -> Result<()> {
    use crate::checkpoint::layout::{changes, is_task, refusal, PARALLELISM};
    if config.allow_changed_query {
        return Ok(());
    }
    let dir = config.dir.display().to_string();
    let changed = changes(&r.layouts, job, |n| !is_task(n) && n != PARALLELISM);
    if r.layouts.is_empty() && r.fingerprint != crate::checkpoint::layout::fingerprint_of(job) {
        return Err(EngineError::State(format!(
            "checkpoint directory '{dir}' holds checkpoint {} of a different query; use a new \
             directory, or --allow-changed-query if the state still fits the new query",
            r.id
        )));
    }
    match changed.is_empty() {
        true => Ok(()),
        false => Err(EngineError::State(refusal(&dir, r.id, &changed))),
    }
}

/// Tasks whose state layout changed since the restored checkpoint: refused, or with
/// `--allow-changed-query` started empty (and said so). Runs once the job is built (task
/// layouts are known then) and before its sinks start, so a refused job wrote nothing.
fn check_tasks(c: &Checkpointing, quiet: bool) -> Result<()> {
    let changed = c.task_changes();
    if changed.is_empty() {
        return Ok(());
    }
    let id = c.restored.as_ref().map_or(0, |r| r.id);
    let dir = c.config.dir.display().to_string();
    if !c.config.allow_changed_query {
        let msg = crate::checkpoint::layout::refusal(&dir, id, &changed);
        return Err(EngineError::State(msg));
    }
    if !quiet {
        let list: Vec<String> = changed.iter().map(|x| x.to_string()).collect();
        tracing::warn!(
            "restoring checkpoint {id} into a changed job (--allow-changed-query); these start \
             empty: {}",
            list.join("; ")
        );
    }
    Ok(())
}

fn plan_error(msg: &str) -> EngineError {
    EngineError::Plan(PlanError::plan(msg, Default::default()))
}

/// Tell the user what the plan warns about (once per job).
fn print_warnings(g: &Inner, plan: &StreamPlan) {
    if !g.quiet {
        for w in &plan.warnings {
            tracing::warn!("{w}");
        }
    }
}

fn build_ctx<'a>(g: &'a Inner, job: &'a Arc<JobShared>) -> Result<BuildContext<'a>> {
    Ok(BuildContext {
        job,
        registry: &g.registry,
        settings: &g.settings,
        batch_size: g.batch_size,
        quiet: g.quiet,
        checkpointing: None,
        next_node: std::cell::Cell::new(0),
        late: crate::late::LateRouting::new(&g.catalog, &g.settings)?,
        parallel: parallel_config(&g.settings)?,
    })
}

/// `parallelism.default` and `pipeline.max-parallelism` of the session.
pub(crate) fn parallel_config(
    settings: &std::collections::BTreeMap<String, String>,
) -> Result<weir_planner::parallel::ParallelConfig> {
    weir_planner::parallel::ParallelConfig::from_settings(settings)
        .map_err(|m| EngineError::Plan(PlanError::plan(&m, Default::default())))
}
