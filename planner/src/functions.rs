//! Flink function names DataFusion lacks.

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

/// Scalar functions added to every planner.
pub fn flink_functions() -> Vec<Arc<ScalarUDF>> {
    vec![]
}
