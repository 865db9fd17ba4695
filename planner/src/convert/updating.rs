//! Plans whose results update: GROUP BY without a window, deduplication and top-N.
//!
//! A `ROW_NUMBER() OVER (PARTITION BY k ORDER BY o)` only runs as a stream when a filter keeps the
//! first N rows of each partition (`rn = 1`, `rn <= N`, `rn < N`), as in Flink. The filter is
//! recognised first ([`Converter::rank_filter`]); converting its input then meets the window node
//! and turns the pair into one `Rank` node.

use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::expr::{Sort, WindowFunction};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Expr, Filter, LogicalPlan, Operator, Window,
};
use datafusion::physical_expr::PhysicalSortExpr;

use super::{Converted, Converter, Role};
use crate::error::{PlanError, Result};
use crate::stream_plan::{GroupAggregateNode, RankNode, StreamNode};

/// Aggregate functions an updating aggregation can retract.
const RETRACTABLE: &[&str] = &["count", "sum", "avg", "min", "max"];

/// The row-number filter waiting for its window node.
#[derive(Debug, Clone)]
pub struct RankLimit {
    /// Name of the row-number column in the window node's schema.
    column: String,
    limit: usize,
}

impl Converter<'_> {
    pub(super) fn group_aggregate(&mut self, a: &Aggregate, input: Converted) -> Result<Converted> {
        let parts = self.aggregate_parts(a)?;
        for agg in &parts.aggregates {
            let name = agg.fun().name().to_ascii_lowercase();
            if !RETRACTABLE.contains(&name.as_str()) {
                return Err(PlanError::unsupported(
                    format!("{}() in a GROUP BY without a window", agg.fun().name()),
                    "An updating aggregation supports COUNT, SUM, AVG, MIN, MAX and \
                     COUNT(DISTINCT); use a window for other functions",
                ));
            }
            if agg.is_distinct() && !matches!(name.as_str(), "count" | "min" | "max") {
                return Err(PlanError::unsupported(
                    format!("{name}(DISTINCT ..) in a GROUP BY without a window"),
                    "Use COUNT(DISTINCT ..), or a window",
                ));
            }
        }
        let roles = vec![Role::Plain; a.schema.fields().len()];
        let node = StreamNode::GroupAggregate(GroupAggregateNode {
            input: Box::new(input.node),
            group_exprs: parts.groups,
            aggregates: parts.aggregates,
            filters: parts.filters,
            schema: Arc::new(a.schema.as_arrow().clone()),
        });
        Ok(Converted { node, roles })
    }

    /// A filter on a row number becomes a rank node (`None`: it is an ordinary filter). Other
    /// conditions ANDed with it (an outer WHERE the optimizer merged in) filter the rank's
    /// output, which is where the query applies them.
    pub(super) fn rank_filter(&mut self, f: &Filter) -> Result<Option<Converted>> {
        let conjuncts = split_conjunction(&f.predicate);
        let found = conjuncts.iter().enumerate().find_map(|(i, c)| {
            let (column, limit) = rank_predicate(c)?;
            Some((i, trace_to_window(&f.input, &column.name)?, limit))
        });
        let Some((at, column, limit)) = found else {
            return Ok(None);
        };
        if limit == 0 {
            return Err(PlanError::unsupported(
                "a row-number filter that keeps no rows",
                "Use rn = 1 or rn <= N with N >= 1",
            ));
        }
        self.pending_rank = Some(RankLimit { column, limit });
        let out = self.convert(&f.input);
        if self.pending_rank.take().is_some() {
            return Err(PlanError::Internal(
                "row-number filter did not meet its window".into(),
            ));
        }
        let mut out = out?;
        let rest: Vec<Expr> = conjuncts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .map(|(_, c)| (*c).clone())
            .collect();
        if let Some(predicate) = conjunction(rest) {
            out.node = StreamNode::Filter {
                input: Box::new(out.node),
                predicate: self.phys(&predicate, f.input.schema())?,
            };
        }
        Ok(Some(out))
    }

    /// `ROW_NUMBER() OVER (..)` limited by the pending filter.
    pub(super) fn rank(&mut self, w: &Window) -> Result<Converted> {
        let limit = self.pending_rank.take().expect("checked by the caller");
        let wf = row_number_of(w, &limit.column)?;
        let input = self.convert(&w.input)?;
        if input.node.is_updating() {
            return Err(PlanError::unsupported(
                "deduplication or top-N over an updating input",
                "Apply ROW_NUMBER() to the table's rows, before any GROUP BY",
            ));
        }
        let in_schema = w.input.schema();
        let partition = wf
            .params
            .partition_by
            .iter()
            .map(|e| self.phys(e, in_schema))
            .collect::<Result<Vec<_>>>()?;
        let order = self.sort_exprs(&wf.params.order_by, in_schema)?;
        let by_rowtime_desc = wf.params.order_by.len() == 1
            && !wf.params.order_by[0].asc
            && matches!(
                super::column_role(&wf.params.order_by[0].expr, in_schema, &input.roles),
                Role::Rowtime
            );
        let mut roles = input.roles;
        roles.push(Role::Plain);
        let node = StreamNode::Rank(RankNode {
            input: Box::new(input.node),
            partition,
            order,
            limit: limit.limit,
            output_rank: true,
            newest_wins_ties: limit.limit == 1 && by_rowtime_desc,
            schema: Arc::new(w.schema.as_arrow().clone()),
        });
        Ok(Converted { node, roles })
    }

    /// The physical sort expressions of an `ORDER BY` over `schema`.
    fn sort_exprs(&self, by: &[Sort], schema: &DFSchema) -> Result<Vec<PhysicalSortExpr>> {
        by.iter()
            .map(|s| {
                let options = SortOptions {
                    descending: !s.asc,
                    nulls_first: s.nulls_first,
                };
                Ok(PhysicalSortExpr::new(self.phys(&s.expr, schema)?, options))
            })
            .collect()
    }
}

/// The `ROW_NUMBER() OVER (.. ORDER BY ..)` of `w` that output column `column` holds: the one
/// OVER function a row-number filter can stand on.
fn row_number_of<'a>(w: &'a Window, column: &str) -> Result<&'a WindowFunction> {
    let n_in = w.input.schema().fields().len();
    let idx = w
        .schema
        .fields()
        .iter()
        .position(|f| f.name() == column)
        .filter(|i| *i >= n_in && w.window_expr.len() == 1)
        .ok_or_else(|| {
            PlanError::unsupported(
                "several OVER functions beside a row-number filter",
                "Keep only ROW_NUMBER() in the subquery that is filtered on it",
            )
        })?;
    let Expr::WindowFunction(wf) = strip_alias(&w.window_expr[idx - n_in]) else {
        return Err(PlanError::Internal("window expression expected".into()));
    };
    if !wf.fun.name().eq_ignore_ascii_case("row_number") {
        return Err(PlanError::unsupported(
            format!("{}() OVER (..) on a stream", wf.fun.name()),
            "Only ROW_NUMBER() filtered to the first N rows (dedup, top-N) runs on a stream",
        ));
    }
    if wf.params.order_by.is_empty() {
        return Err(PlanError::unsupported(
            "ROW_NUMBER() without ORDER BY",
            "Order by the event time (deduplication) or by a column (top-N)",
        ));
    }
    Ok(wf)
}

fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip_alias(&a.expr),
        Expr::Cast(c) => strip_alias(&c.expr),
        Expr::TryCast(c) => strip_alias(&c.expr),
        other => other,
    }
}

/// `rn = 1`, `rn <= N`, `rn < N` (either way round): the column and how many rows it keeps.
fn rank_predicate(e: &Expr) -> Option<(&Column, usize)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return None;
    };
    let (col, lit, op) = match (strip_alias(left), strip_alias(right)) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c, v, *op),
        (Expr::Literal(v, _), Expr::Column(c)) => (c, v, op.swap()?),
        _ => return None,
    };
    let n: i64 = lit.to_string().parse().ok()?;
    let limit = match op {
        Operator::Eq if n == 1 => 1,
        Operator::LtEq => n,
        Operator::Lt => n - 1,
        _ => return None,
    };
    Some((col, usize::try_from(limit.max(0)).ok()?))
}

/// Follow column `name` down through aliases and projections to the window function that
/// computes it; returns its name in the window node's schema.
fn trace_to_window(plan: &LogicalPlan, name: &str) -> Option<String> {
    match plan {
        LogicalPlan::SubqueryAlias(a) => trace_to_window(&a.input, name),
        LogicalPlan::Projection(p) => {
            let i = p.schema.fields().iter().position(|f| f.name() == name)?;
            match strip_alias(&p.expr[i]) {
                Expr::Column(c) => trace_to_window(&p.input, &c.name),
                _ => None,
            }
        }
        LogicalPlan::Window(w) => {
            let i = w.schema.fields().iter().position(|f| f.name() == name)?;
            (i >= w.input.schema().fields().len()).then(|| name.to_string())
        }
        _ => None,
    }
}

/// Whether each rank node's row number is used above it; unused ones are not re-emitted when
/// only the position of a row changes.
pub fn prune_rank_output(node: &mut StreamNode, used: Option<Vec<bool>>) {
    use datafusion::physical_expr::utils::collect_columns;
    let width = node.schema().fields().len();
    let used = used.unwrap_or_else(|| vec![true; width]);
    match node {
        StreamNode::Project { input, exprs, .. } => {
            let mut below = vec![false; input.schema().fields().len()];
            for (e, u) in exprs.iter().zip(&used) {
                if *u {
                    collect_columns(e)
                        .iter()
                        .for_each(|c| below[c.index()] = true);
                }
            }
            prune_rank_output(input, Some(below));
        }
        StreamNode::Filter { input, predicate } => {
            let mut below = used;
            collect_columns(predicate)
                .iter()
                .for_each(|c| below[c.index()] = true);
            prune_rank_output(input, Some(below));
        }
        StreamNode::Rank(r) => {
            r.output_rank = used.last().copied().unwrap_or(true);
            prune_rank_output(&mut r.input, None);
        }
        other => other
            .children_mut()
            .into_iter()
            .for_each(|c| prune_rank_output(c, None)),
    }
}
