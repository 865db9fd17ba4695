//! One operator per file; each is a synchronous state machine behind [`crate::operator::Operator`],
//! except the lookup join, which awaits its lookups (see [`crate::runtime::lookup`]).

pub mod changelog_join;
mod changelog_side;
pub mod filter;
pub mod group_aggregate;
mod group_state;
pub mod groups;
pub mod join;
mod join_side;
pub mod key_index;
pub mod lookup_cache;
pub mod lookup_join;
pub mod over_aggregate;
pub mod project;
pub mod rank;
pub mod retract;
pub(crate) mod row_slots;
mod rows;
pub mod session_aggregate;
mod session_pending;
pub mod spill;
pub mod temporal_join;
pub mod window_aggregate;
pub mod window_assign;
pub mod window_local;
pub mod window_updates;

/// The first node `pick` accepts in the plan of `sql` (a CREATE TABLE, then a query), from the
/// root down its first inputs: how operator tests get their node.
#[cfg(test)]
pub(crate) fn planned<T>(sql: &str, pick: impl Fn(&weir_planner::StreamNode) -> Option<T>) -> T {
    let mut node = weir_planner::Planner::new().plan_script(sql).unwrap();
    loop {
        if let Some(found) = pick(&node) {
            return found;
        }
        node = node.children()[0].clone();
    }
}

/// The window aggregation of `SELECT k, window_start, COUNT(*)` over one-minute tumbles of a
/// table `t (k STRING, ts TIMESTAMP(3))` watermarked at `ts`: the window operators' test node.
#[cfg(test)]
pub(crate) fn minute_counts() -> weir_planner::stream_plan::WindowAggregateNode {
    let sql = "CREATE TABLE t (k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
               WITH ('connector' = 'x');
               SELECT k, window_start, COUNT(*) AS n
               FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
               GROUP BY k, window_start, window_end";
    planned(sql, |n| match n {
        weir_planner::StreamNode::WindowAggregate(a) => Some(a.clone()),
        _ => None,
    })
}

/// Rows `(key, number)` in the columns of `schema`, as operator tests build their input: a
/// string column takes the key, a millisecond timestamp the number as seconds, any other
/// column the number.
#[cfg(test)]
pub(crate) fn test_rows(
    schema: datafusion::arrow::datatypes::SchemaRef,
    rows: &[(&str, i64)],
) -> crate::message::StreamBatch {
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::DataType;
    use std::sync::Arc;
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.data_type() {
                DataType::Utf8 => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                DataType::Timestamp(_, _) => Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.1 * 1000),
                )),
                _ => Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            }
        })
        .collect();
    let batch = datafusion::arrow::record_batch::RecordBatch::try_new(schema, cols).unwrap();
    crate::message::StreamBatch::new(batch)
}
