//! A source table's columns and watermark as physical expressions.
//!
//! Computed columns (`ts AS TO_TIMESTAMP_LTZ(ts_ms, 3)`) are evaluated over the decoded batch,
//! then the watermark expression over the full row. Both are checked when the table is created,
//! so a typo in them is a planning error at CREATE TABLE.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::physical_expr::expressions::Column;

use crate::catalog::{ColumnKind, TableDef};
use crate::error::{PlanError, Result};
use crate::stream_plan::{PhysExpr, SourceNode};

fn df_schema(schema: &Schema) -> Result<DFSchema> {
    Ok(DFSchema::try_from(schema.clone())?)
}

fn expr_for(
    state: &SessionState,
    sql: &str,
    schema: &DFSchema,
    table: &TableDef,
) -> Result<PhysExpr> {
    let logical = state
        .create_logical_expr(sql, schema)
        .map_err(|e| PlanError::from(e).at(table.location))?;
    state
        .create_physical_expr(logical, schema)
        .map_err(|e| PlanError::from(e).at(table.location))
}

/// Fill in the types of computed columns and check the watermark; returns the finished table.
pub fn resolve_table(state: &SessionState, mut table: TableDef) -> Result<TableDef> {
    let physical = table.physical_schema();
    let dfs = df_schema(&physical)?;
    let table_at = table.clone();
    for col in table.columns.iter_mut() {
        if let ColumnKind::Computed { expr_sql } = &col.kind {
            let e = expr_for(state, expr_sql, &dfs, &table_at)?;
            col.data_type = e.data_type(&physical)?;
            col.sql_type = sql_type_of(&col.data_type);
        }
    }
    if let Some(wm) = &table.watermark {
        let col = table.column(&wm.column).expect("checked at parse");
        if !matches!(col.data_type, DataType::Timestamp(..)) {
            return Err(PlanError::plan(
                format!(
                    "WATERMARK FOR `{}`: the column must be a timestamp, not {}",
                    wm.column, col.data_type
                ),
                table.location,
            ));
        }
    }
    source_node_inner(state, &table)?;
    Ok(table)
}

/// A Flink-style spelling of an Arrow type, for DESCRIBE of computed columns.
pub fn sql_type_of(dt: &DataType) -> String {
    use datafusion::arrow::datatypes::TimeUnit::*;
    let p = |u: &datafusion::arrow::datatypes::TimeUnit| match u {
        Second => 0,
        Millisecond => 3,
        Microsecond => 6,
        Nanosecond => 9,
    };
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(u, None) => format!("TIMESTAMP({})", p(u)),
        DataType::Timestamp(u, Some(_)) => format!("TIMESTAMP_LTZ({})", p(u)),
        DataType::Binary => "BYTES".into(),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(f) if f.len() == 2 => format!(
                "MAP<{}, {}>",
                sql_type_of(f[0].data_type()),
                sql_type_of(f[1].data_type())
            ),
            other => other.to_string(),
        },
        DataType::List(item) => format!("ARRAY<{}>", sql_type_of(item.data_type())),
        other => other.to_string(),
    }
}

/// The source node of a table: every column plus the watermark, over the decoded batch.
pub fn source_node(state: &SessionState, table: &Arc<TableDef>) -> Result<SourceNode> {
    source_node_inner(state, table.as_ref()).map(|mut n| {
        n.table = table.clone();
        n
    })
}

fn source_node_inner(state: &SessionState, table: &TableDef) -> Result<SourceNode> {
    let physical = table.physical_schema();
    let dfs = df_schema(&physical)?;
    let mut columns = Vec::with_capacity(table.columns.len());
    for col in &table.columns {
        let e: PhysExpr = match &col.kind {
            ColumnKind::Physical => {
                let idx = physical.index_of(&col.name)?;
                Arc::new(Column::new(&col.name, idx))
            }
            ColumnKind::Computed { expr_sql } => expr_for(state, expr_sql, &dfs, table)?,
            ColumnKind::Metadata { .. } => {
                // Connectors append metadata columns after the physical ones, in order.
                let k = table
                    .metadata_columns()
                    .iter()
                    .position(|c| c.name == col.name)
                    .unwrap_or(0);
                Arc::new(Column::new(&col.name, physical.fields().len() + k))
            }
        };
        columns.push(e);
    }
    let full = table.schema();
    let watermark = match &table.watermark {
        Some(wm) => {
            let e = expr_for(state, &wm.expr_sql, &df_schema(&full)?, table)?;
            if !matches!(e.data_type(&full)?, DataType::Timestamp(..)) {
                return Err(PlanError::plan(
                    format!(
                        "the watermark expression `{}` must produce a timestamp",
                        wm.expr_sql
                    ),
                    table.location,
                ));
            }
            Some((e, full.index_of(&wm.column)?))
        }
        None => None,
    };
    Ok(SourceNode {
        table: Arc::new(table.clone()),
        columns,
        watermark_sql: table.watermark.as_ref().map(|w| w.expr_sql.clone()),
        watermark,
        projection: (0..table.columns.len()).collect(),
        schema: full,
    })
}
