//! `weir-planner`: SQL text in the Flink dialect -> a streaming plan.
//!
//! It owns statement splitting, the Flink DDL that `sqlparser` lacks (WATERMARK, computed
//! columns, `WITH` options), the window rewrites (TVF and group-window syntax), DataFusion logical
//! planning, and the translation of a logical plan into [`stream_plan::StreamPlan`] nodes that the
//! engine instantiates as operators.

pub mod catalog;
mod check;
pub mod convert;
pub mod ddl;
pub mod error;
pub mod exact_aggs;
pub mod exact_sum;
pub mod functions;
mod group_window;
pub mod hints;
pub mod interval;
pub mod join_plan;
pub mod options;
pub mod over_plan;
mod overrides;
pub mod parallel;
pub mod query;
pub mod source_columns;
pub mod stream_plan;
pub mod table_sources;
pub mod temporal;
pub mod tokens;
pub mod total_min_max;
pub mod tvf;
pub mod types;
pub mod window_spec;

pub use catalog::{Catalog, ColumnDef, ColumnKind, TableDef, ViewDef, WatermarkDef};
pub use ddl::{parse_script, parse_script_all, QuerySql, ShowWhat, Statement};
pub use error::{Location, PlanError};
pub use query::{PlannedQuery, Planner, Settings};
pub use stream_plan::{StreamNode, StreamPlan};
pub use window_spec::{WindowKind, WindowSpec};
