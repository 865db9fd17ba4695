//! DDL, SHOW, DESCRIBE, SET and EXPLAIN against the engine's catalog, and INSERT planning.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use weir_planner::{
    ColumnKind, Location, PlanError, QuerySql, ShowWhat, Statement, StreamNode, StreamPlan,
    TableDef,
};

use crate::connector::Sink;
use crate::error::{EngineError, Result};
use crate::session::engine::{Inner, Output};

fn plan_err(msg: impl Into<String>, at: Location) -> EngineError {
    EngineError::Plan(PlanError::plan(msg, at))
}

/// CREATE/DROP/SHOW/DESCRIBE/SET/RESET/EXPLAIN.
pub(crate) fn execute_ddl(g: &mut Inner, s: Statement) -> Result<Output> {
    match s {
        Statement::CreateTable {
            table,
            if_not_exists,
        } => create_table(g, table, if_not_exists),
        Statement::CreateView {
            view,
            if_not_exists,
            or_replace,
        } => create_view(g, view, if_not_exists, or_replace),
        Statement::DropTable {
            name,
            if_exists,
            location,
        } => drop_object(
            g.catalog.tables.remove(&name).is_some(),
            "Table",
            &name,
            if_exists,
            location,
        ),
        Statement::DropView {
            name,
            if_exists,
            location,
        } => drop_object(
            g.catalog.views.remove(&name).is_some(),
            "View",
            &name,
            if_exists,
            location,
        ),
        Statement::Show(what) => Ok(show(g, what)),
        Statement::Describe { name, location } => describe(g, &name, location),
        Statement::Explain(inner) => explain(g, &inner).map(Output::Text),
        Statement::Set { key: None, .. } => Ok(show_options(g)),
        Statement::Set {
            key: Some(k),
            value,
        } => set_option(g, k, value.unwrap_or_default()),
        Statement::Reset { key } => Ok(reset_option(g, key)),
        Statement::StopJob {
            id,
            savepoint,
            location,
        } => crate::session::admin::stop_job(g, &id, savepoint, location),
        Statement::Help => Ok(Output::Text(crate::session::admin::help())),
        other => Err(EngineError::Internal(format!(
            "not a DDL statement: {other:?}"
        ))),
    }
}

/// `CREATE [OR REPLACE] VIEW`: its query must plan against the catalog as it is now.
fn create_view(
    g: &mut Inner,
    view: weir_planner::ViewDef,
    if_not_exists: bool,
    or_replace: bool,
) -> Result<Output> {
    if g.catalog.contains(&view.name) && !or_replace {
        if if_not_exists {
            return Ok(Output::Message(format!(
                "View '{}' already exists.",
                view.name
            )));
        }
        return Err(plan_err(
            format!("a table or view named '{}' already exists", view.name),
            view.location,
        ));
    }
    g.planner
        .plan_sql(&g.catalog, &g.settings, &view.query_sql)?;
    let name = view.name.clone();
    g.catalog.views.insert(name.clone(), Arc::new(view));
    Ok(Output::Message(format!("View '{name}' created.")))
}

/// `SET;`: every option set in the session.
fn show_options(g: &Inner) -> Output {
    let (k, v): (Vec<_>, Vec<_>) = g
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unzip();
    two_columns("key", "value", k, v)
}

/// `RESET ['k'];`: options fixed from outside (`--set`) keep their value.
fn reset_option(g: &mut Inner, key: Option<String>) -> Output {
    match &key {
        Some(k) => {
            g.settings.remove(k);
        }
        None => g.settings.clear(),
    }
    let pinned = g.pinned.clone();
    g.settings.extend(pinned);
    Output::Message("Options reset.".into())
}

/// `SET 'k' = 'v'`: a value fixed from outside wins; an unknown key is kept (Flink scripts carry
/// options Weir does not read) with a hint at the closest known key.
fn set_option(g: &mut Inner, k: String, v: String) -> Result<Output> {
    if let Some(fixed) = g.pinned.get(&k) {
        return Ok(Output::Message(format!(
            "Option '{k}' is fixed to '{fixed}' by --set; the script's '{v}' is ignored."
        )));
    }
    check_option_value(&k, &v)?;
    let note = match weir_planner::options::session_option(&k) {
        Some(_) => String::new(),
        None => format!(
            " Weir does not read it ({}).",
            weir_planner::options::unknown_option_message(&k)
        ),
    };
    g.settings.insert(k.clone(), v);
    Ok(Output::Message(format!("Option '{k}' set.{note}")))
}

/// Values that can be checked when they are set rather than when a job starts.
pub(crate) fn check_option_value(k: &str, v: &str) -> Result<()> {
    if k == weir_planner::query::TIME_ZONE_KEY && v.parse::<chrono_tz::Tz>().is_err() {
        return Err(plan_err(
            format!("unknown time zone '{v}' (use an IANA name like 'Europe/Berlin')"),
            Location::default(),
        ));
    }
    let parallel = [
        "parallelism.default",
        "pipeline.max-parallelism",
        weir_planner::parallel::AGG_PHASE_STRATEGY,
        weir_planner::parallel::OPERATOR_CHAINING,
    ];
    if parallel.contains(&k) {
        // Alone: whether the two fit together is checked when a job is planned.
        let mut alone = std::collections::BTreeMap::from([(
            "parallelism.default".to_string(),
            "1".to_string(),
        )]);
        alone.insert(k.to_string(), v.to_string());
        weir_planner::parallel::ParallelConfig::from_settings(&alone)
            .map_err(|m| plan_err(m, Location::default()))?;
    }
    Ok(())
}

fn drop_object(
    existed: bool,
    kind: &str,
    name: &str,
    if_exists: bool,
    at: Location,
) -> Result<Output> {
    if existed || if_exists {
        return Ok(Output::Message(format!("{kind} '{name}' dropped.")));
    }
    Err(plan_err(
        format!("{} '{name}' does not exist", kind.to_lowercase()),
        at,
    ))
}

fn create_table(g: &mut Inner, table: TableDef, if_not_exists: bool) -> Result<Output> {
    if g.catalog.contains(&table.name) {
        if if_not_exists {
            return Ok(Output::Message(format!(
                "Table '{}' already exists.",
                table.name
            )));
        }
        return Err(plan_err(
            format!("a table or view named '{}' already exists", table.name),
            table.location,
        ));
    }
    validate_connector(g, &table)?;
    check_metadata(g, &table)?;
    let table = g.planner.resolve_table(table)?;
    let name = table.name.clone();
    g.catalog.tables.insert(name.clone(), Arc::new(table));
    Ok(Output::Message(format!("Table '{name}' created.")))
}

/// Every `METADATA FROM 'key'` column names a key the source connector provides.
fn check_metadata(g: &Inner, t: &TableDef) -> Result<()> {
    let keys = t
        .connector()
        .and_then(|c| g.registry.source(c))
        .map(|f| f.metadata_keys())
        .unwrap_or(&[]);
    for c in &t.columns {
        if let ColumnKind::Metadata { key, .. } = &c.kind {
            if !keys.contains(&key.as_str()) {
                let offered = if keys.is_empty() {
                    "none".to_string()
                } else {
                    keys.join(", ")
                };
                return Err(plan_err(
                    format!(
                        "column `{}`: connector '{}' has no metadata key '{key}' (it offers: {offered})",
                        c.name,
                        t.connector().unwrap_or("?")
                    ),
                    t.location,
                ));
            }
        }
    }
    Ok(())
}

fn validate_connector(g: &Inner, t: &TableDef) -> Result<()> {
    let Some(name) = t.connector() else {
        return Err(plan_err(
            format!(
                "table '{}' needs a 'connector' option in WITH (...)",
                t.name
            ),
            t.location,
        ));
    };
    let (src, sink) = (g.registry.source(name), g.registry.sink(name));
    if src.is_none() && sink.is_none() {
        return Err(plan_err(
            format!(
                "unknown connector '{name}'; available: {}",
                g.registry.names().join(", ")
            ),
            t.option_location("connector"),
        ));
    }
    // The table's role (read or written) is known only when a job uses it: CREATE TABLE
    // accepts options valid for either; `check_sources` and `plan_insert` check the role.
    let first_err = match (src.map(|f| f.validate(t)), sink.map(|f| f.validate(t))) {
        (Some(Ok(())), _) | (_, Some(Ok(()))) => return Ok(()),
        (Some(Err(e)), _) | (None, Some(Err(e))) => e,
        (None, None) => return Ok(()),
    };
    Err(option_error(t, first_err))
}

/// A connector's message about table `t`, located at the option it names (else the table).
fn option_error(t: &TableDef, msg: String) -> EngineError {
    let at = option_location(t, &msg);
    plan_err(msg, at)
}

/// [`option_error`] for a check made when a job uses the table: the message names the table,
/// since it may be reported far from its CREATE TABLE.
fn role_error(t: &TableDef, msg: String) -> EngineError {
    let at = option_location(t, &msg);
    plan_err(format!("table '{}': {msg}", t.name), at)
}

/// Where the option a connector's message names (`'key'`, first quoted) is written.
fn option_location(t: &TableDef, msg: &str) -> Location {
    option_in_message(msg)
        .map(|k| t.option_location(&k))
        .unwrap_or(t.location)
}

/// Every table a job reads passes its connector's checks as a source: its options, then what
/// must exist outside Weir (a Kafka topic). Runs when a job is planned, before it starts.
pub(crate) fn check_sources(g: &Inner, plan: &StreamPlan) -> Result<()> {
    for s in plan.root.sources() {
        let t = &s.table;
        let name = t.connector().unwrap_or("");
        let Some(f) = g.registry.source(name) else {
            return Err(plan_err(
                format!(
                    "table '{}' cannot be read: connector '{name}' only writes",
                    t.name
                ),
                t.option_location("connector"),
            ));
        };
        f.validate(t)
            .and_then(|()| f.check_external(t))
            .map_err(|e| role_error(t, e))?;
    }
    Ok(())
}

/// Plan a query and check the tables it reads (see [`check_sources`]).
pub(crate) fn plan_query(g: &Inner, q: &QuerySql) -> Result<weir_planner::PlannedQuery> {
    let planned = g.planner.plan_query(&g.catalog, &g.settings, q)?;
    if let Some(plan) = &planned.stream {
        check_sources(g, plan)?;
        check_late_destinations(g, plan)?;
    }
    Ok(planned)
}

/// Every late-data destination of a plan's windows can be written to: the table named by
/// `SET 'table.exec.late-data.sink'`, or the Kafka sink behind a source's `'late-data.topic'`.
fn check_late_destinations(g: &Inner, plan: &StreamPlan) -> Result<()> {
    let routing = crate::late::LateRouting::new(&g.catalog, &g.settings)
        .map_err(|e| plan_err(e.to_string(), Location::default()))?;
    let mut windows = Vec::new();
    window_nodes(&plan.root, &mut windows);
    for node in windows {
        let table = routing.table_for(node).map_err(|e| {
            let at = node.sources().first().map(|s| s.table.location);
            plan_err(e.to_string(), at.unwrap_or_default())
        })?;
        let Some(t) = table else { continue };
        let connector = t.connector().unwrap_or("");
        let Some(f) = g.registry.sink(connector) else {
            return Err(plan_err(
                format!(
                    "late rows cannot be written to table '{}': connector '{connector}' only reads",
                    t.name
                ),
                t.option_location("connector"),
            ));
        };
        f.validate(&t).map_err(|e| role_error(&t, e))?;
    }
    Ok(())
}

/// The nodes under `node` that drop late rows.
fn window_nodes<'a>(node: &'a StreamNode, out: &mut Vec<&'a StreamNode>) {
    if matches!(
        node,
        StreamNode::WindowAssign(_) | StreamNode::WindowAggregate(_)
    ) {
        out.push(node);
    }
    for c in node.children() {
        window_nodes(c, out);
    }
}

/// The first `'quoted'` word of a message (connectors name the offending option that way).
fn option_in_message(msg: &str) -> Option<String> {
    let start = msg.find('\'')? + 1;
    let len = msg[start..].find('\'')?;
    Some(msg[start..start + len].to_string())
}

fn one_column(name: &str, values: Vec<String>) -> Output {
    let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]));
    let col: ArrayRef = Arc::new(StringArray::from(values));
    let batch = RecordBatch::try_new(schema.clone(), vec![col]).expect("one column");
    Output::Table(schema, vec![batch])
}

fn two_columns(a: &str, b: &str, x: Vec<String>, y: Vec<String>) -> Output {
    let schema = Arc::new(Schema::new(vec![
        Field::new(a, DataType::Utf8, false),
        Field::new(b, DataType::Utf8, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(x)),
        Arc::new(StringArray::from(y)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).expect("two columns");
    Output::Table(schema, vec![batch])
}

fn show(g: &mut Inner, what: ShowWhat) -> Output {
    match what {
        ShowWhat::Tables => one_column("table name", g.catalog.tables.keys().cloned().collect()),
        ShowWhat::Views => one_column("view name", g.catalog.views.keys().cloned().collect()),
        ShowWhat::Functions => one_column("function name", g.planner.function_names()),
        ShowWhat::Jobs => crate::session::admin::show_jobs(g),
    }
}

fn describe(g: &Inner, name: &str, at: Location) -> Result<Output> {
    let Some(t) = g.catalog.table(name) else {
        if let Some(v) = g.catalog.view(name) {
            let plan = g.planner.plan_sql(&g.catalog, &g.settings, &v.query_sql)?;
            let s = plan.logical.schema();
            let names = s.fields().iter().map(|f| f.name().clone()).collect();
            let types = s
                .fields()
                .iter()
                .map(|f| weir_planner::source_columns::sql_type_of(f.data_type()))
                .collect();
            return Ok(two_columns("name", "type", names, types));
        }
        return Err(plan_err(format!("table or view '{name}' not found"), at));
    };
    let mut names: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
    let mut types: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            let mut s = c.sql_type.clone();
            if let ColumnKind::Computed { expr_sql } = &c.kind {
                s.push_str(&format!(" AS {expr_sql}"));
            }
            if let ColumnKind::Metadata { key, .. } = &c.kind {
                s.push_str(&format!(" METADATA FROM '{key}'"));
            }
            if t.watermark.as_ref().is_some_and(|w| w.column == c.name) {
                s.push_str(&format!(
                    " *ROWTIME* WATERMARK AS {}",
                    t.watermark
                        .as_ref()
                        .map(|w| w.expr_sql.as_str())
                        .unwrap_or("")
                ));
            }
            s
        })
        .collect();
    for (k, v) in crate::session::admin::option_rows(t) {
        names.push(k);
        types.push(v);
    }
    Ok(two_columns("name", "type", names, types))
}

/// EXPLAIN of a query or INSERT: the operator tree.
pub(crate) fn explain(g: &Inner, s: &Statement) -> Result<String> {
    let shape = weir_planner::parallel::Shape {
        config: crate::session::engine::parallel_config(&g.settings)?,
        sources: &g.registry,
    };
    match s {
        Statement::Query(q) => {
            let p = plan_query(g, q)?;
            Ok(match p.stream {
                Some(plan) => format!(
                    "== Streaming plan ==\n{}",
                    shape.explain_sink("Sink: stdout", &plan.root, false)
                ),
                None => format!(
                    "== Batch plan (no tables) ==\n{}",
                    p.logical.display_indent()
                ),
            })
        }
        Statement::Insert { .. } | Statement::StatementSet(_) => {
            let inserts = plan_inserts(g, s)?;
            let mut out = String::from("== Streaming plan ==\n");
            for i in inserts {
                let header = format!(
                    "Sink: {} (connector={})",
                    i.table.name,
                    i.table.connector().unwrap_or("?")
                );
                let factory = g.registry.sink(i.table.connector().unwrap_or(""));
                let checkpointing = g.checkpoint.is_some()
                    || g.settings.contains_key("execution.checkpointing.dir");
                let parallel = factory.is_some_and(|f| {
                    let updating = i.plan.updating;
                    crate::session::job_sinks::sink_splits(
                        f.as_ref(),
                        &i.table,
                        updating,
                        checkpointing,
                    )
                });
                out.push_str(&shape.explain_sink(&header, &i.plan.root, parallel));
            }
            Ok(out)
        }
        _ => Err(plan_err(
            "EXPLAIN takes a query or an INSERT",
            Location::default(),
        )),
    }
}

/// A planned INSERT: the target table and the query's plan.
pub(crate) struct PlannedInsert {
    pub table: Arc<TableDef>,
    pub plan: StreamPlan,
    /// The query's SQL text (for the checkpoint fingerprint).
    pub query_sql: String,
}

pub(crate) fn plan_inserts(g: &Inner, s: &Statement) -> Result<Vec<PlannedInsert>> {
    let list: Vec<&Statement> = match s {
        Statement::StatementSet(v) => v.iter().collect(),
        other => vec![other],
    };
    list.into_iter().map(|st| plan_insert(g, st)).collect()
}

fn plan_insert(g: &Inner, s: &Statement) -> Result<PlannedInsert> {
    let Statement::Insert {
        table,
        query,
        location,
    } = s
    else {
        return Err(plan_err(
            "a statement set may only contain INSERT INTO",
            Location::default(),
        ));
    };
    let Some(t) = g.catalog.table(table) else {
        return Err(plan_err(format!("table '{table}' not found"), *location));
    };
    let connector = t.connector().unwrap_or("");
    let Some(sink) = g.registry.sink(connector) else {
        return Err(plan_err(
            format!("connector '{connector}' of table '{table}' cannot be written to"),
            *location,
        ));
    };
    sink.validate(t).map_err(|e| role_error(t, e))?;
    let planned = plan_query(g, query)?;
    let Some(plan) = planned.stream else {
        return Err(plan_err(
            "INSERT INTO needs a query that reads a table",
            query.location,
        ));
    };
    if plan.updating && !sink.accepts_updates(t) {
        return Err(plan_err(
            format!(
                "INSERT INTO {table}: the query's result is updating (a GROUP BY without a \
                 window, a deduplication, a top-N or a window with allowed lateness produces \
                 +I/-U/+U/-D rows) but connector '{connector}' only appends rows; write it to an \
                 'upsert-kafka' table with a PRIMARY KEY, or to 'print'"
            ),
            *location,
        ));
    }
    check_columns(&plan, t, *location)?;
    Ok(PlannedInsert {
        table: t.clone(),
        plan,
        query_sql: query.text.clone(),
    })
}

/// The query's columns fit the sink table's: as many, each castable to the table's type.
fn check_columns(plan: &StreamPlan, t: &TableDef, location: Location) -> Result<()> {
    let table = &t.name;
    let target = t.physical_schema();
    if plan.schema.fields().len() != target.fields().len() {
        return Err(plan_err(
            format!(
                "INSERT INTO {table}: the query produces {} columns but the table has {}",
                plan.schema.fields().len(),
                target.fields().len()
            ),
            location,
        ));
    }
    for (q, t) in plan.schema.fields().iter().zip(target.fields()) {
        if !datafusion::arrow::compute::can_cast_types(q.data_type(), t.data_type()) {
            return Err(plan_err(
                format!(
                    "INSERT INTO {table}: column `{}` is {} and cannot be stored as {}",
                    t.name(),
                    q.data_type(),
                    t.data_type()
                ),
                location,
            ));
        }
    }
    Ok(())
}

/// Casts the query's rows to the sink table's column names and types.
pub(crate) struct CastingSink {
    inner: Box<dyn Sink>,
    schema: SchemaRef,
}

impl CastingSink {
    pub fn wrap(inner: Box<dyn Sink>, schema: SchemaRef) -> Box<dyn Sink> {
        Box::new(CastingSink { inner, schema })
    }
}

impl Sink for CastingSink {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        let converted: Result<RecordBatch> = (|| {
            // An updating result's `op` column passes through in front.
            let skip = usize::from(crate::changelog::has_op(&batch.schema()));
            let mut cols = batch.columns()[..skip].to_vec();
            let mut fields: Vec<_> = batch.schema().fields()[..skip].to_vec();
            for (c, f) in batch.columns()[skip..].iter().zip(self.schema.fields()) {
                cols.push(cast(c, f.data_type())?);
                fields.push(Arc::new(f.as_ref().clone().with_nullable(true)));
            }
            Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
        })();
        Box::pin(async move { self.inner.write(converted?).await })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        self.inner.finish()
    }

    fn pre_commit(&mut self, checkpoint: u64) -> BoxFuture<'_, Result<String>> {
        self.inner.pre_commit(checkpoint)
    }

    fn commit(&mut self, checkpoint: u64) -> BoxFuture<'_, Result<()>> {
        self.inner.commit(checkpoint)
    }
}
