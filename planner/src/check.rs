//! Whole-plan checks that need more than one node.

use crate::error::{PlanError, Result};
use crate::stream_plan::StreamNode;

/// A SESSION window TVF must feed a window aggregation: its bounds are only known once the
/// session closes.
pub fn check_plan(node: &StreamNode) -> Result<()> {
    check(node, false)
}

fn check(node: &StreamNode, under_aggregate: bool) -> Result<()> {
    match node {
        StreamNode::WindowAssign(w) if w.spec.is_session() && !under_aggregate => {
            Err(PlanError::unsupported(
                "a SESSION window needs an aggregation",
                "Add GROUP BY window_start, window_end (and the PARTITION BY keys) with aggregates",
            ))
        }
        StreamNode::WindowAggregate(a) => check(&a.input, true),
        StreamNode::Filter { .. } | StreamNode::Project { .. } => node
            .children()
            .into_iter()
            .try_for_each(|c| check(c, under_aggregate)),
        other => other
            .children()
            .into_iter()
            .try_for_each(|c| check(c, false)),
    }
}
