//! Query planning: Flink SQL text -> DataFusion logical plan -> streaming plan.
//!
//! The [`Planner`] owns a DataFusion `SessionState` (functions, type coercion, a small set of
//! optimizer rules that keep a streaming plan's shape) and resolves names against Weir's
//! catalog through a `ContextProvider`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{DataFusionError, TableReference};
use datafusion::config::ConfigOptions;
use datafusion::execution::{FunctionRegistry, SessionState, SessionStateBuilder};
use datafusion::logical_expr::{AggregateUDF, LogicalPlan, ScalarUDF, TableSource, WindowUDF};
use datafusion::optimizer::OptimizerRule;
use datafusion::prelude::SessionConfig;
use datafusion::sql::planner::{ContextProvider, ParserOptions, SqlToRel};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::tokenizer::TokenWithSpan;

use crate::catalog::{Catalog, TableDef};
use crate::ddl::QuerySql;
use crate::error::{Location, PlanError, Result};
use crate::stream_plan::{EmitConfig, StreamNode, StreamPlan};
use crate::table_sources::{StreamTableSource, ViewSource, WindowTvfSource};
use crate::tokens::{parse_error, parser_for, tokenize};
use crate::tvf::{rewrite_tvfs, TvfCall};

/// `SET` options of a session or job.
pub type Settings = BTreeMap<String, String>;

/// The session time zone key and its default.
pub const TIME_ZONE_KEY: &str = "table.local-time-zone";

pub fn session_time_zone(settings: &Settings) -> String {
    settings
        .get(TIME_ZONE_KEY)
        .cloned()
        .unwrap_or_else(|| "UTC".to_string())
}

/// `SET` keys of updating results.
pub const ALLOWED_LATENESS_KEY: &str = "window.allowed-lateness";
pub const EARLY_FIRE_KEY: &str = "window.early-fire.delay";
pub const STATE_TTL_KEY: &str = "table.exec.state.ttl";

/// How window aggregations emit, from `SET 'window.allowed-lateness'` and
/// `'window.early-fire.delay'`.
pub fn emit_config(settings: &Settings) -> std::result::Result<EmitConfig, String> {
    let get = |k: &str| -> std::result::Result<Option<i64>, String> {
        match settings.get(k) {
            None => Ok(None),
            Some(v) => match crate::interval::parse_duration(v) {
                Ok(ns) if ns >= 0 => Ok(Some(ns)),
                Ok(_) => Err(format!("'{k}' = '{v}' is negative")),
                Err(e) => Err(format!("'{k}': {e}")),
            },
        }
    };
    Ok(EmitConfig {
        allowed_lateness_ns: get(ALLOWED_LATENESS_KEY)?.unwrap_or(0),
        early_fire_ns: get(EARLY_FIRE_KEY)?.filter(|d| *d > 0),
    })
}

/// The state TTL in nanoseconds (`None`: state is kept forever).
pub fn state_ttl(settings: &Settings) -> std::result::Result<Option<i64>, String> {
    match settings.get(STATE_TTL_KEY) {
        None => Ok(None),
        Some(v) => crate::interval::parse_duration(v)
            .map(|ns| (ns > 0).then_some(ns))
            .map_err(|e| format!("'{STATE_TTL_KEY}': {e}")),
    }
}

fn state_warnings(node: &StreamNode, settings: &Settings) -> Vec<String> {
    let keyed = |n: &StreamNode| match n {
        StreamNode::GroupAggregate(_) | StreamNode::Rank(_) => true,
        // A regular join's input whose rows wait for an input that does not end, without a
        // STATE_TTL hint of its own.
        StreamNode::Join(j) => {
            j.interval.is_none()
                && (0..2).any(|s| (j.changelog || !j.bounded[1 - s]) && j.state_ttl[s].is_none())
        }
        _ => false,
    };
    fn any(n: &StreamNode, f: &dyn Fn(&StreamNode) -> bool) -> bool {
        f(n) || n.children().into_iter().any(|c| any(c, f))
    }
    if settings.contains_key(STATE_TTL_KEY) || !any(node, &keyed) {
        return vec![];
    }
    vec![format!(
        "this query keeps state for every key it has seen, and it grows with the number of \
         keys; SET '{STATE_TTL_KEY}' = '1 d' (for example) to drop keys idle that long"
    )]
}

/// A planned query: the logical plan, and the streaming plan when it reads a stream.
pub struct PlannedQuery {
    pub logical: LogicalPlan,
    /// `None` for a query without tables (`SELECT 1 + 1`), which runs once as a batch.
    pub stream: Option<StreamPlan>,
}

/// Plans queries against a catalog.
#[derive(Clone)]
pub struct Planner {
    state: SessionState,
}

impl Default for Planner {
    fn default() -> Self {
        Self::new()
    }
}

fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    use datafusion::optimizer::*;
    vec![
        Arc::new(optimize_unions::OptimizeUnions::new()),
        Arc::new(simplify_expressions::SimplifyExpressions::new()),
        Arc::new(replace_distinct_aggregate::ReplaceDistinctWithAggregate::new()),
        Arc::new(eliminate_filter::EliminateFilter::new()),
        Arc::new(decorrelate_predicate_subquery::DecorrelatePredicateSubquery::new()),
        Arc::new(extract_equijoin_predicate::ExtractEquijoinPredicate::new()),
        Arc::new(push_down_filter::PushDownFilter::new()),
        Arc::new(optimize_projections::OptimizeProjections::new()),
    ]
}

fn parser_options() -> ParserOptions {
    ParserOptions {
        enable_ident_normalization: false,
        collect_spans: true,
        map_string_types_to_utf8view: false,
        ..ParserOptions::new()
    }
}

impl Planner {
    pub fn new() -> Self {
        let mut config = SessionConfig::new();
        let opts = config.options_mut();
        opts.sql_parser.enable_ident_normalization = false;
        opts.sql_parser.map_string_types_to_utf8view = false;
        opts.sql_parser.collect_spans = true;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_optimizer_rules(optimizer_rules())
            .build();
        let functions = state.aggregate_functions();
        let exact = crate::exact_aggs::exact_float_aggregates(functions);
        let total = crate::total_min_max::total_order_min_max(functions);
        for f in exact.into_iter().chain(total) {
            let _ = state.register_udaf(f);
        }
        for f in crate::functions::flink_functions() {
            let _ = state.register_udf(f);
        }
        // Flink's LISTAGG(x, separator) is DataFusion's STRING_AGG.
        if let Some(f) = state.aggregate_functions().get("string_agg").cloned() {
            let _ = state.register_udaf(Arc::new((*f).clone().with_aliases(["listagg"])));
        }
        Self { state }
    }

    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// Register a user-defined scalar function.
    pub fn register_udf(&mut self, f: Arc<ScalarUDF>) -> Result<()> {
        self.state.register_udf(f)?;
        Ok(())
    }

    /// Register a user-defined aggregate function.
    pub fn register_udaf(&mut self, f: Arc<AggregateUDF>) -> Result<()> {
        self.state.register_udaf(f)?;
        Ok(())
    }

    /// Type computed columns and check the watermark of a new table.
    pub fn resolve_table(&self, table: TableDef) -> Result<TableDef> {
        crate::source_columns::resolve_table(&self.state, table)
    }

    /// Plan a query (or an INSERT's query).
    pub fn plan_query(
        &self,
        catalog: &Catalog,
        settings: &Settings,
        q: &QuerySql,
    ) -> Result<PlannedQuery> {
        crate::tvf::restart_names();
        let ctx = QueryContext::new(self, catalog);
        let plan = ctx.plan_tokens(q.tokens.clone(), q.location)?;
        let logical = self
            .optimizer_for(&ctx)
            .optimize(&plan)
            .map_err(|e| located(e, q.location))?;
        if !reads_tables(&logical) {
            return Ok(PlannedQuery {
                logical,
                stream: None,
            });
        }
        let emit = emit_config(settings).map_err(|m| PlanError::plan(m, q.location))?;
        let mut conv =
            crate::convert::Converter::new(&self.state, session_time_zone(settings), emit);
        conv.set_temporal(ctx.temporal.take());
        conv.set_hints(ctx.hints.take());
        let mut converted = conv.convert(&logical).map_err(|e| e.at(q.location))?;
        crate::check::check_plan(&converted.node).map_err(|e| e.at(q.location))?;
        crate::convert::prune_rank_output(&mut converted.node, None);
        let schema = converted.node.schema();
        let updating = converted.node.is_updating();
        if updating && schema.fields().iter().any(|f| f.name() == "op") {
            return Err(PlanError::plan(
                "an updating result names a column `op`, which Weir adds for the row kind \
                 (+I, -U, +U, -D); rename the column",
                q.location,
            ));
        }
        let warnings = state_warnings(&converted.node, settings);
        Ok(PlannedQuery {
            logical,
            stream: Some(StreamPlan {
                root: converted.node,
                schema,
                updating,
                warnings,
            }),
        })
    }

    /// The session that optimises a query: a temporal join's versioned input keeps every
    /// column (its event time is needed even when the query does not select it) and no
    /// condition on the joined rows may move into it (it would drop versions, not rows), so
    /// such a query is optimised without pruning columns or pushing filters down.
    fn optimizer_for(&self, ctx: &QueryContext) -> std::borrow::Cow<'_, SessionState> {
        if ctx.temporal.borrow().is_empty() {
            return std::borrow::Cow::Borrowed(&self.state);
        }
        let rules = optimizer_rules()
            .into_iter()
            .filter(|r| !["optimize_projections", "push_down_filter"].contains(&r.name()))
            .collect();
        let state = SessionStateBuilder::new_from_existing(self.state.clone())
            .with_optimizer_rules(rules)
            .build();
        std::borrow::Cow::Owned(state)
    }

    /// Plan a query given as text.
    pub fn plan_sql(
        &self,
        catalog: &Catalog,
        settings: &Settings,
        sql: &str,
    ) -> Result<PlannedQuery> {
        let tokens = tokenize(sql)?;
        let location = tokens.first().map(crate::tokens::loc).unwrap_or_default();
        let q = QuerySql {
            tokens,
            text: sql.to_string(),
            location,
        };
        self.plan_query(catalog, settings, &q)
    }

    /// The stream plan of a script's last statement, a query over the tables its `CREATE
    /// TABLE` statements define, with default settings (for tests and tools).
    pub fn plan_script(&self, sql: &str) -> Result<crate::StreamNode> {
        let mut catalog = Catalog::default();
        let mut query = None;
        for statement in crate::parse_script(sql)? {
            match statement {
                crate::Statement::CreateTable { table, .. } => {
                    let table = self.resolve_table(table)?;
                    catalog.tables.insert(table.name.clone(), Arc::new(table));
                }
                crate::Statement::Query(q) => query = Some(q),
                _ => {}
            }
        }
        let q = query.ok_or_else(|| PlanError::plan("no query", Default::default()))?;
        let plan = self.plan_query(&catalog, &Default::default(), &q)?;
        plan.stream
            .map(|s| s.root)
            .ok_or_else(|| PlanError::plan("the query reads no table", q.location))
    }

    /// Names of all scalar and aggregate functions (for SHOW FUNCTIONS and completion).
    pub fn function_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.state.scalar_functions().keys().cloned().collect();
        v.extend(self.state.aggregate_functions().keys().cloned());
        v.sort();
        v.dedup();
        v
    }
}

fn reads_tables(plan: &LogicalPlan) -> bool {
    if matches!(plan, LogicalPlan::TableScan(_)) {
        return true;
    }
    plan.inputs().iter().any(|p| reads_tables(p))
}

/// A DataFusion error with the position its diagnostic names, if any.
pub fn located(e: DataFusionError, fallback: Location) -> PlanError {
    let loc = e
        .diagnostic()
        .and_then(|d| d.span)
        .map(|s| Location::new(s.start.line, s.start.column))
        .filter(|l| l.line > 0)
        .unwrap_or(fallback);
    PlanError::from(e).at(loc)
}

/// Where the name quoted in `msg` (`'name'`) first appears among `tokens`.
fn name_location(msg: &str, tokens: &[TokenWithSpan]) -> Option<Location> {
    let start = msg.find('\'')? + 1;
    let len = msg[start..].find('\'')?;
    let name = &msg[start..start + len];
    tokens.iter().find_map(|t| match &t.token {
        datafusion::sql::sqlparser::tokenizer::Token::Word(w) if w.value == name => {
            Some(crate::tokens::loc(t))
        }
        _ => None,
    })
}

/// Resolves names for one query: catalog tables, views, and the query's window TVFs.
struct QueryContext<'a> {
    planner: &'a Planner,
    catalog: &'a Catalog,
    tvfs: RefCell<HashMap<String, TvfCall>>,
    /// The `FOR SYSTEM_TIME AS OF` clauses of the query and the views it reads.
    temporal: RefCell<Vec<crate::temporal::TemporalRef>>,
    /// The hints of the query and the views it reads.
    hints: RefCell<crate::hints::Hints>,
}

impl<'a> QueryContext<'a> {
    fn new(planner: &'a Planner, catalog: &'a Catalog) -> Self {
        Self {
            planner,
            catalog,
            tvfs: RefCell::new(HashMap::new()),
            temporal: RefCell::new(Vec::new()),
            hints: RefCell::default(),
        }
    }

    fn plan_tokens(&self, tokens: Vec<TokenWithSpan>, at: Location) -> Result<LogicalPlan> {
        let (tokens, hints) = crate::hints::strip_hints(tokens)?;
        let tokens = crate::functions::listagg_separator(tokens);
        self.hints.borrow_mut().state_ttl.extend(hints.state_ttl);
        let (tokens, temporal) = crate::temporal::strip_system_time(tokens)?;
        self.temporal.borrow_mut().extend(temporal);
        let (tokens, calls) = rewrite_tvfs(tokens)?;
        let names = tokens.clone();
        let mut query = parser_for(tokens)
            .parse_query()
            .map_err(|e| parse_error(e, at))?;
        let mut calls = calls;
        crate::group_window::rewrite_query(&mut query, &mut calls, at)?;
        self.tvfs
            .borrow_mut()
            .extend(calls.into_iter().map(|c| (c.name.clone(), c)));
        let sql_to_rel = SqlToRel::new_with_options(self, parser_options());
        sql_to_rel
            .sql_statement_to_plan(SqlStatement::Query(query))
            .map_err(|e| located(e, Location::default()))
            .map_err(|e| match e.location() {
                Some(_) => e,
                None => {
                    let loc = name_location(&e.to_string(), &names).unwrap_or(at);
                    e.at(loc)
                }
            })
    }

    fn plan_text(&self, sql: &str, at: Location) -> Result<LogicalPlan> {
        let tokens = tokenize(sql).map_err(|e| e.at(at))?;
        self.plan_tokens(tokens, at).map_err(|e| match e {
            PlanError::Parse { message, .. } => PlanError::parse(message, at),
            other => other,
        })
    }

    fn window_source(&self, call: TvfCall) -> Result<Arc<dyn TableSource>> {
        let at = call.location;
        let input = self.plan_text(&format!("SELECT * FROM {}", call.input_sql), at)?;
        let src = WindowTvfSource::new(call, input).map_err(|m| PlanError::plan(m, at))?;
        Ok(Arc::new(src))
    }
}

fn to_df(e: PlanError) -> DataFusionError {
    DataFusionError::Plan(e.to_string())
}

impl ContextProvider for QueryContext<'_> {
    fn get_table_source(
        &self,
        name: TableReference,
    ) -> datafusion::common::Result<Arc<dyn TableSource>> {
        let table = name.table();
        let call = self.tvfs.borrow().get(table).cloned();
        if let Some(call) = call {
            return self.window_source(call).map_err(to_df);
        }
        if let Some(t) = self.catalog.table(table) {
            return Ok(Arc::new(StreamTableSource { table: t.clone() }));
        }
        if let Some(v) = self.catalog.view(table) {
            let plan = self.plan_text(&v.query_sql, v.location).map_err(to_df)?;
            return Ok(Arc::new(ViewSource { plan }));
        }
        Err(DataFusionError::Plan(format!(
            "table or view '{table}' not found"
        )))
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        let f = self.planner.state.scalar_functions();
        f.get(name)
            .or_else(|| f.get(&name.to_ascii_lowercase()))
            .cloned()
    }

    fn get_higher_order_meta(
        &self,
        _name: &str,
    ) -> Option<Arc<datafusion::logical_expr::HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        let f = self.planner.state.aggregate_functions();
        f.get(name)
            .or_else(|| f.get(&name.to_ascii_lowercase()))
            .cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        let f = self.planner.state.window_functions();
        f.get(name)
            .or_else(|| f.get(&name.to_ascii_lowercase()))
            .cloned()
    }

    fn get_variable_type(&self, _names: &[String]) -> Option<DataType> {
        None
    }

    fn get_variable_field(&self, _names: &[String]) -> Option<Arc<Field>> {
        None
    }

    fn get_expr_planners(&self) -> &[Arc<dyn datafusion::logical_expr::planner::ExprPlanner>] {
        self.planner.state.expr_planners()
    }

    fn options(&self) -> &ConfigOptions {
        self.planner.state.config_options()
    }

    fn udf_names(&self) -> Vec<String> {
        self.planner
            .state
            .scalar_functions()
            .keys()
            .cloned()
            .collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        vec![]
    }

    fn udaf_names(&self) -> Vec<String> {
        self.planner
            .state
            .aggregate_functions()
            .keys()
            .cloned()
            .collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.planner
            .state
            .window_functions()
            .keys()
            .cloned()
            .collect()
    }
}
