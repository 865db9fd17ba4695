//! Window joins: two window aggregations' results joined on equal `window_start` and
//! `window_end` (plus keys). Such a join runs as an interval join on the window ends with
//! bounds `[0, 0]`: a row can go once the other input's watermark has passed its window's
//! end, when every row of that window on the other input has arrived.

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{Expr, Join};

use crate::stream_plan::{IntervalBounds, JoinTime, StreamNode};

/// The positions of `window_start` and `window_end` in the output of `node`, when it is a
/// tumble, hop or cumulate aggregation's result (through filters and projections).
pub(super) fn window_columns(node: &StreamNode) -> Option<(usize, usize)> {
    use datafusion::physical_expr::expressions::Column;
    match node {
        StreamNode::WindowAggregate(a) if !a.spec.is_session() => {
            Some((a.window_start, a.window_end))
        }
        StreamNode::Filter { input, .. } => window_columns(input),
        StreamNode::Project { input, exprs, .. } => {
            let (start, end) = window_columns(input)?;
            let at = |i: usize| {
                exprs
                    .iter()
                    .position(|e| e.downcast_ref::<Column>().is_some_and(|c| c.index() == i))
            };
            Some((at(start)?, at(end)?))
        }
        _ => None,
    }
}

/// The bounds of a window join: `on` pairs both inputs' `window_start` and `window_end`.
pub(super) fn window_bounds(
    j: &Join,
    on: &[(Expr, Expr)],
    left: &StreamNode,
    right: &StreamNode,
) -> Option<IntervalBounds> {
    let (ls, le) = window_columns(left)?;
    let (rs, re) = window_columns(right)?;
    let index = |e: &Expr, plan: &datafusion::logical_expr::LogicalPlan| match e {
        Expr::Column(c) => plan.schema().index_of_column(c).ok(),
        _ => None,
    };
    let pairs: Vec<(Option<usize>, Option<usize>)> = on
        .iter()
        .map(|(l, r)| (index(l, &j.left), index(r, &j.right)))
        .collect();
    let paired = |l: usize, r: usize| pairs.contains(&(Some(l), Some(r)));
    if !paired(ls, rs) || !paired(le, re) {
        return None;
    }
    let time = |node: &StreamNode, index: usize| match node.schema().field(index).data_type() {
        DataType::Timestamp(unit, _) => Some(JoinTime { index, unit: *unit }),
        _ => None,
    };
    Some(IntervalBounds {
        left: time(left, le)?,
        right: time(right, re)?,
        lower_ns: 0,
        upper_ns: 0,
    })
}
