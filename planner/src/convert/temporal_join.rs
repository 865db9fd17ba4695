//! Event-time temporal joins: `a [LEFT] JOIN v FOR SYSTEM_TIME AS OF a.ts ON a.k = v.k`. `v` is
//! versioned: every row of it is a version of its key from its event time on. A view that keeps
//! the latest row per key by event time (`ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts DESC)
//! = 1`, as in Flink) is read as the rows it deduplicates, each one a version.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, Join, LogicalPlan};

use super::{Converted, Converter, Role};
use crate::error::{PlanError, Result};
use crate::stream_plan::{JoinKind, JoinTime, StreamNode, TemporalJoinNode};
use crate::temporal::TemporalRef;

impl Converter<'_> {
    /// The `FOR SYSTEM_TIME AS OF` clause of the join's right input, if it has one.
    pub(super) fn temporal_ref(&self, j: &Join) -> Option<TemporalRef> {
        let name = match j.right.as_ref() {
            LogicalPlan::SubqueryAlias(a) => a.alias.table().to_string(),
            LogicalPlan::TableScan(s) => s.table_name.table().to_string(),
            _ => return None,
        };
        self.temporal.iter().find(|t| t.alias == name).cloned()
    }

    /// A temporal join of `j` (its keys `on`, the rest of its condition `rest`).
    pub(super) fn temporal_join(
        &mut self,
        j: &Join,
        kind: JoinKind,
        on: &[(Expr, Expr)],
        rest: Vec<Expr>,
        t: &TemporalRef,
    ) -> Result<Converted> {
        if !matches!(kind, JoinKind::Inner | JoinKind::Left) {
            return Err(PlanError::unsupported(
                format!("a {kind} temporal join"),
                "A temporal join is an INNER or a LEFT join",
            ));
        }
        let left = self.convert(&j.left)?;
        let right = self.convert(&j.right)?;
        let left_time = as_of_column(j, &left, t)?;
        let (versions, right_time) = versions(right)?;
        let (left_keys, right_keys) = self.join_keys(j, on)?;
        let filter = self.pair_filter(j, rest)?;
        let mut roles = left.roles;
        roles.extend(std::iter::repeat_n(
            Role::Plain,
            versions.schema().fields().len(),
        ));
        let node = StreamNode::TemporalJoin(TemporalJoinNode {
            left: Box::new(left.node),
            right: Box::new(versions),
            kind,
            left_keys,
            right_keys,
            left_time,
            right_time,
            filter,
            schema: Arc::new(j.schema.as_arrow().clone()),
            keys_sql: on.iter().map(|(l, r)| format!("{l} = {r}")).collect(),
            time_sql: t.time.clone(),
        });
        Ok(Converted { node, roles })
    }
}

/// The left input's event-time column `FOR SYSTEM_TIME AS OF` names.
fn as_of_column(j: &Join, left: &Converted, t: &TemporalRef) -> Result<JoinTime> {
    let bad = || {
        PlanError::unsupported(
            format!(
                "FOR SYSTEM_TIME AS OF {}: not the other input's event time",
                t.time
            ),
            "Name the event-time column (the one with a WATERMARK) of the table joined with \
             the versioned one; lookups at processing time are not supported yet",
        )
    };
    let index = j
        .left
        .schema()
        .index_of_column(&Column::from_qualified_name(&t.time))
        .map_err(|_| bad())?;
    match (
        left.roles[index],
        left.node.schema().field(index).data_type(),
    ) {
        (Role::Rowtime, DataType::Timestamp(unit, _)) => Ok(JoinTime { index, unit: *unit }),
        _ => Err(bad()),
    }
}

/// The versions of a versioned input, and their time column: the rows a keep-last
/// deduplication on event time reads, or the rows of an append-only input with an event time.
fn versions(right: Converted) -> Result<(StreamNode, JoinTime)> {
    let no_time = || {
        PlanError::unsupported(
            "a versioned table without an event time",
            "Declare a WATERMARK on the versioned table (each row is a version from its time on)",
        )
    };
    let index = right
        .roles
        .iter()
        .position(|r| *r == Role::Rowtime)
        .ok_or_else(no_time)?;
    let node = strip_dedup(right.node)?;
    let schema = node.schema();
    let DataType::Timestamp(unit, _) = schema.field(index).data_type() else {
        return Err(no_time());
    };
    let unit = *unit;
    Ok((node, JoinTime { index, unit }))
}

fn strip_dedup(node: StreamNode) -> Result<StreamNode> {
    Ok(match node {
        StreamNode::Rank(r) if r.limit == 1 && r.newest_wins_ties => *r.input,
        StreamNode::Project {
            input,
            exprs,
            schema,
        } => {
            let input = strip_dedup(*input)?;
            let (exprs, schema) = without_gone_columns(exprs, schema, &input)?;
            StreamNode::Project {
                input: Box::new(input),
                exprs,
                schema,
            }
        }
        StreamNode::Filter { input, predicate } => StreamNode::Filter {
            input: Box::new(strip_dedup(*input)?),
            predicate,
        },
        other if other.is_updating() => {
            return Err(PlanError::unsupported(
                "a versioned table that is an updating result",
                "Version a table's rows, or keep the latest row per key by event time \
                 (ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts DESC) = 1)",
            ))
        }
        other => other,
    })
}

/// A projection over `input` after the deduplication below it went: the row number column it
/// added (the last one) is gone, and so are the expressions that only passed it on.
fn without_gone_columns(
    exprs: Vec<crate::stream_plan::PhysExpr>,
    schema: datafusion::arrow::datatypes::SchemaRef,
    input: &StreamNode,
) -> Result<(
    Vec<crate::stream_plan::PhysExpr>,
    datafusion::arrow::datatypes::SchemaRef,
)> {
    use datafusion::physical_expr::utils::collect_columns;
    let width = input.schema().fields().len();
    let mut kept = Vec::new();
    let mut fields = Vec::new();
    for (e, f) in exprs.into_iter().zip(schema.fields()) {
        if collect_columns(&e).iter().all(|c| c.index() < width) {
            kept.push(e);
            fields.push(f.clone());
        } else if e
            .downcast_ref::<datafusion::physical_expr::expressions::Column>()
            .is_none()
        {
            return Err(PlanError::unsupported(
                "a versioned view that computes with its row number",
                "Keep the row number only in the deduplication's filter (WHERE rn = 1)",
            ));
        }
    }
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    Ok((kept, schema))
}
