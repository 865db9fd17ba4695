//! DataFusion logical plan -> streaming plan.
//!
//! Walks the optimised logical plan bottom-up, binding expressions to physical expressions and
//! tracking each column's *role* (event time, window bounds) so that an `Aggregate` grouped by a
//! window's bounds becomes a window aggregation that fires on the watermark. Anything that cannot
//! run incrementally is rejected with a sentence saying what to write instead.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection, TableScan};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;

use crate::error::{PlanError, Result};
use crate::stream_plan::{
    EmitConfig, PhysExpr, StreamNode, TimeInfo, WindowAggregateNode, WindowAssignNode,
};
use crate::table_sources::{StreamTableSource, WindowTvfSource};
use crate::window_spec::WindowSpec;

mod join;
mod lookup_join;
mod over;
mod temporal_join;
mod updating;
mod window_join;

/// What a column means for time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Plain,
    /// An event-time attribute (the watermark tracks it).
    Rowtime,
    WindowStart(usize),
    WindowEnd(usize),
    WindowTime(usize),
}

pub use updating::prune_rank_output;

pub struct Converted {
    pub node: StreamNode,
    pub roles: Vec<Role>,
}

struct WindowInfo {
    spec: WindowSpec,
    time: TimeInfo,
}

pub struct Converter<'a> {
    state: &'a SessionState,
    /// `table.local-time-zone`.
    session_tz: String,
    /// `window.allowed-lateness` and `window.early-fire.delay`.
    emit: EmitConfig,
    windows: Vec<WindowInfo>,
    /// A rank filter (`rn <= N`) waiting for the window node it limits.
    pending_rank: Option<updating::RankLimit>,
    /// Tables read `FOR SYSTEM_TIME AS OF` (temporal joins), by the name they go by.
    temporal: Vec<crate::temporal::TemporalRef>,
    /// The query's hints (`STATE_TTL`).
    hints: crate::hints::Hints,
}

impl<'a> Converter<'a> {
    pub fn new(state: &'a SessionState, session_tz: String, emit: EmitConfig) -> Self {
        Self {
            state,
            session_tz,
            emit,
            windows: vec![],
            pending_rank: None,
            temporal: Vec::new(),
            hints: Default::default(),
        }
    }

    /// The query's `FOR SYSTEM_TIME AS OF` clauses.
    pub fn set_temporal(&mut self, refs: Vec<crate::temporal::TemporalRef>) {
        self.temporal = refs;
    }

    /// The query's hints.
    pub fn set_hints(&mut self, hints: crate::hints::Hints) {
        self.hints = hints;
    }

    pub fn convert(&mut self, plan: &LogicalPlan) -> Result<Converted> {
        match plan {
            LogicalPlan::Projection(p) => self.projection(p),
            LogicalPlan::Filter(f) => {
                if let Some(rank) = self.rank_filter(f)? {
                    return Ok(rank);
                }
                let input = self.convert(&f.input)?;
                let predicate = self.phys(&f.predicate, f.input.schema())?;
                let node = StreamNode::Filter {
                    input: Box::new(input.node),
                    predicate,
                };
                Ok(Converted {
                    node,
                    roles: input.roles,
                })
            }
            LogicalPlan::SubqueryAlias(a) => self.convert(&a.input),
            LogicalPlan::TableScan(s) => self.scan(s),
            LogicalPlan::Aggregate(a) => self.aggregate(a),
            LogicalPlan::Union(u) => self.union(&u.inputs, plan),
            LogicalPlan::Join(j) => self.join(j),
            LogicalPlan::Window(w) if self.pending_rank.is_some() => self.rank(w),
            LogicalPlan::Window(w) => self.over(w),
            other => Err(unsupported(other)),
        }
    }

    fn phys(&self, e: &Expr, schema: &DFSchema) -> Result<PhysExpr> {
        Ok(self.state.create_physical_expr(e.clone(), schema)?)
    }

    fn projection(&mut self, p: &Projection) -> Result<Converted> {
        let input = self.convert(&p.input)?;
        let mut exprs = Vec::with_capacity(p.expr.len());
        let mut roles = Vec::with_capacity(p.expr.len());
        for e in &p.expr {
            exprs.push(self.phys(e, p.input.schema())?);
            roles.push(column_role(e, p.input.schema(), &input.roles));
        }
        let schema = Arc::new(p.schema.as_arrow().clone());
        if is_identity(&exprs, &input.node.schema(), &schema) {
            return Ok(Converted {
                node: input.node,
                roles,
            });
        }
        let node = StreamNode::Project {
            input: Box::new(input.node),
            exprs,
            schema,
        };
        Ok(Converted { node, roles })
    }

    fn scan(&mut self, s: &TableScan) -> Result<Converted> {
        let full = if let Some(t) = s.source.downcast_ref::<StreamTableSource>() {
            self.table_source(t)?
        } else if let Some(w) = s.source.downcast_ref::<WindowTvfSource>() {
            self.window_source(w)?
        } else {
            return Err(PlanError::Internal(format!(
                "unknown table source for {}",
                s.table_name
            )));
        };
        let Some(proj) = &s.projection else {
            return Ok(full);
        };
        if proj.iter().copied().eq(0..full.roles.len()) {
            return Ok(full);
        }
        let in_schema = full.node.schema();
        let exprs: Vec<PhysExpr> = proj
            .iter()
            .map(|&i| {
                Arc::new(datafusion::physical_expr::expressions::Column::new(
                    in_schema.field(i).name(),
                    i,
                )) as PhysExpr
            })
            .collect();
        let roles = proj.iter().map(|&i| full.roles[i]).collect();
        let schema = Arc::new(in_schema.project(proj)?);
        let node = StreamNode::Project {
            input: Box::new(full.node),
            exprs,
            schema,
        };
        Ok(Converted { node, roles })
    }

    fn table_source(&mut self, t: &StreamTableSource) -> Result<Converted> {
        let node = crate::source_columns::source_node(self.state, &t.table)?;
        let mut roles = vec![Role::Plain; t.table.columns.len()];
        if let Some((_, idx)) = &node.watermark {
            roles[*idx] = Role::Rowtime;
        }
        Ok(Converted {
            node: StreamNode::Source(node),
            roles,
        })
    }

    fn window_source(&mut self, w: &WindowTvfSource) -> Result<Converted> {
        let input = self.convert(&w.input)?;
        if input.node.is_updating() {
            return Err(updating_into_window());
        }
        if !matches!(
            input.roles[w.time_index],
            Role::Rowtime | Role::WindowTime(_)
        ) {
            return Err(PlanError::plan(
                format!(
                    "DESCRIPTOR({}): `{}` is not an event-time attribute; declare \
                     WATERMARK FOR {} in its table",
                    w.call.time_col, w.call.time_col, w.call.time_col
                ),
                w.call.location,
            ));
        }
        let tz = w.is_ltz().then(|| self.session_tz.clone());
        let time = TimeInfo {
            unit: w.time_unit(),
            tz,
        };
        let id = self.windows.len();
        self.windows.push(WindowInfo {
            spec: w.call.spec,
            time: time.clone(),
        });
        let mut roles = input.roles;
        roles.extend([
            Role::WindowStart(id),
            Role::WindowEnd(id),
            Role::WindowTime(id),
        ]);
        let node = StreamNode::WindowAssign(WindowAssignNode {
            input: Box::new(input.node),
            spec: w.call.spec,
            time_index: w.time_index,
            time,
            allowed_lateness_ns: if w.call.spec.is_session() {
                0
            } else {
                self.emit.allowed_lateness_ns
            },
            schema: w.schema.clone(),
        });
        Ok(Converted { node, roles })
    }

    fn aggregate(&mut self, a: &Aggregate) -> Result<Converted> {
        let input = self.convert(&a.input)?;
        let in_schema = a.input.schema();
        let group_roles: Vec<Role> = a
            .group_expr
            .iter()
            .map(|e| column_role(e, in_schema, &input.roles))
            .collect();
        let find = |is: fn(&Role) -> bool| group_roles.iter().position(is);
        let start = find(|r| matches!(r, Role::WindowStart(_)));
        let end = find(|r| matches!(r, Role::WindowEnd(_)));
        let wtime = find(|r| matches!(r, Role::WindowTime(_)));
        let (Some(start), Some(end)) = (start, end) else {
            if start.is_some() || end.is_some() {
                return Err(partial_window_group());
            }
            return self.group_aggregate(a, input);
        };
        if input.node.is_updating() {
            return Err(updating_into_window());
        }
        let Role::WindowEnd(id) = group_roles[end] else {
            return Err(PlanError::Internal("window end expected".into()));
        };
        let n_groups = a.group_expr.len();
        let out_schema = a.schema.as_arrow();
        let parts = self.aggregate_parts(a)?;
        let (group_exprs, aggregates, filters) = (parts.groups, parts.aggregates, parts.filters);
        let info = &self.windows[id];
        let mut roles = vec![Role::Plain; n_groups + a.aggr_expr.len()];
        if let Some(t) = wtime {
            roles[t] = Role::Rowtime;
        }
        let node = StreamNode::WindowAggregate(WindowAggregateNode {
            input: Box::new(input.node),
            spec: info.spec,
            time: info.time.clone(),
            group_exprs,
            window_start: start,
            window_end: end,
            window_time: wtime,
            aggregates,
            filters,
            emit: if info.spec.is_session() {
                EmitConfig::default()
            } else {
                self.emit
            },
            schema: Arc::new(out_schema.clone()),
        });
        Ok(Converted { node, roles })
    }

    /// Group expressions, aggregate functions and their filters of an `Aggregate`.
    fn aggregate_parts(&self, a: &Aggregate) -> Result<AggregateParts> {
        let in_schema = a.input.schema();
        let n_groups = a.group_expr.len();
        let out_schema = a.schema.as_arrow();
        let mut groups = Vec::with_capacity(n_groups);
        for (i, e) in a.group_expr.iter().enumerate() {
            groups.push((self.phys(e, in_schema)?, out_schema.field(i).name().clone()));
        }
        let phys_in = Arc::new(in_schema.as_arrow().clone());
        let (mut aggregates, mut filters) = (Vec::new(), Vec::new());
        for (i, e) in a.aggr_expr.iter().enumerate() {
            let name = out_schema.field(n_groups + i).name().clone();
            let planning = PhysicalPlanningContext::default();
            let lowered = LoweredAggregateBuilder::new(
                e,
                in_schema,
                &phys_in,
                self.state.execution_props(),
                &planning,
            )
            .with_name(name)
            .with_human_display(e.human_display().to_string())
            .build()?;
            aggregates.push(lowered.aggregate);
            filters.push(lowered.filter);
        }
        Ok(AggregateParts {
            groups,
            aggregates,
            filters,
        })
    }

    fn union(&mut self, inputs: &[Arc<LogicalPlan>], plan: &LogicalPlan) -> Result<Converted> {
        let mut nodes = Vec::new();
        let mut roles: Option<Vec<Role>> = None;
        for i in inputs {
            let c = self.convert(i)?;
            roles = Some(match roles {
                None => c.roles,
                Some(r) => r
                    .iter()
                    .zip(&c.roles)
                    .map(|(a, b)| if a == b { *a } else { Role::Plain })
                    .collect(),
            });
            nodes.push(c.node);
        }
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let node = StreamNode::Union {
            inputs: nodes,
            schema,
        };
        Ok(Converted {
            node,
            roles: roles.unwrap_or_default(),
        })
    }
}

/// True when a projection passes its input through unchanged (same columns, names and types).
fn is_identity(exprs: &[PhysExpr], input: &SchemaRef, output: &SchemaRef) -> bool {
    use datafusion::physical_expr::expressions::Column;
    exprs.len() == input.fields().len()
        && input.fields() == output.fields()
        && exprs
            .iter()
            .enumerate()
            .all(|(i, e)| e.downcast_ref::<Column>().is_some_and(|c| c.index() == i))
}

/// The role of `e` when it is a (possibly aliased) column reference.
fn column_role(e: &Expr, schema: &DFSchema, roles: &[Role]) -> Role {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        other => other,
    };
    match e {
        Expr::Column(c) => schema
            .index_of_column(c)
            .ok()
            .map(|i| roles[i])
            .unwrap_or(Role::Plain),
        _ => Role::Plain,
    }
}

/// The parts of an `Aggregate` bound to its input.
struct AggregateParts {
    groups: Vec<(PhysExpr, String)>,
    aggregates: Vec<Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr>>,
    filters: Vec<Option<PhysExpr>>,
}

fn partial_window_group() -> PlanError {
    PlanError::unsupported(
        "a window aggregation must GROUP BY both window_start and window_end",
        "Add the missing one to GROUP BY",
    )
}

fn updating_into_window() -> PlanError {
    PlanError::unsupported(
        "a window aggregation over an updating input (a GROUP BY without a window, a \
         deduplication or a top-N)",
        "Window the raw rows first, or aggregate the updating result without a window",
    )
}

fn unsupported(plan: &LogicalPlan) -> PlanError {
    let (what, hint) = match plan {
        LogicalPlan::Sort(_) => (
            "ORDER BY on an unbounded stream",
            "Remove the ORDER BY, or aggregate in a window first (results of one window arrive together)",
        ),
        LogicalPlan::Limit(_) => ("LIMIT on an unbounded stream", "Remove the LIMIT"),
        LogicalPlan::Join(_) => ("joins", "Joins are not supported yet; pre-join the data upstream"),
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
            ("VALUES inside a streaming query", "Read from a table")
        }
        _ => ("this query shape", ""),
    };
    PlanError::unsupported(format!("{what} cannot run as a stream"), hint)
}
