//! The OVER operator drops a RANGE frame's partitions once their newest row is a frame's
//! length behind the watermark, and a key that comes back starts afresh in a reused slot.

use datafusion::arrow::array::Int64Array;

use super::OverAggregateOperator;
use crate::message::{Message, StreamBatch};
use crate::operator::Operator;

fn over_node() -> weir_planner::stream_plan::OverNode {
    let sql = "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
      WITH ('connector' = 'filesystem', 'path' = '/dev/null', 'format' = 'json');
      SELECT k, ts, COUNT(*) OVER (PARTITION BY k ORDER BY ts
        RANGE BETWEEN INTERVAL '10' SECOND PRECEDING AND CURRENT ROW) AS n FROM t;";
    super::super::planned(sql, |n| match n {
        weir_planner::StreamNode::Over(o) => Some(o.clone()),
        _ => None,
    })
}

/// Rows `(key, second)` in the input's columns (the key, a number, the time).
fn rows(node: &weir_planner::stream_plan::OverNode, rows: &[(&str, i64)]) -> StreamBatch {
    super::super::test_rows(node.input.schema(), rows)
}

/// The `n` column of what the operator emitted.
fn counts(out: &[Message]) -> Vec<i64> {
    out.iter()
        .filter_map(|m| match m {
            Message::Batch(b) => Some(b),
            _ => None,
        })
        .flat_map(|b| {
            let n = b.batch.column(b.batch.num_columns() - 1);
            let n = n.as_any().downcast_ref::<Int64Array>().unwrap().clone();
            n.values().to_vec()
        })
        .collect()
}

#[test]
fn idle_partitions_of_a_range_frame_are_dropped_and_their_slots_reused() {
    let node = over_node();
    let mut op = OverAggregateOperator::new(&node).unwrap();
    let mut out = Vec::new();
    let s = 1_000_000_000;
    op.process_batch(rows(&node, &[("a", 0), ("b", 5)]), &mut out)
        .unwrap();
    op.on_watermark(5 * s, &mut out).unwrap();
    assert_eq!(op.state_size().keys, 2);
    op.process_batch(rows(&node, &[("c", 30)]), &mut out)
        .unwrap();
    op.on_watermark(30 * s, &mut out).unwrap();
    assert_eq!(
        op.state_size().keys,
        1,
        "a and b are 10 s behind the watermark"
    );
    assert_eq!(op.parts.len(), 3);
    op.process_batch(rows(&node, &[("a", 31), ("b", 32)]), &mut out)
        .unwrap();
    op.on_watermark(32 * s, &mut out).unwrap();
    assert_eq!(op.parts.len(), 3, "a and b took the freed slots");
    assert_eq!(counts(&out), vec![1, 1, 1, 1, 1]);
}
