//! Lookup joins: `a [LEFT] JOIN d FOR SYSTEM_TIME AS OF a.proc_time ON a.k = d.k` where `d` is a
//! table of a lookup connector (`jdbc`). Unlike an event-time temporal join, `d` is not read
//! as a stream: each left row is joined with the rows `d` has for its key when the row is
//! processed, as in Flink.

use std::sync::Arc;

use datafusion::logical_expr::{Expr, Join, LogicalPlan};

use super::{Converted, Converter, Role};
use crate::catalog::{ColumnKind, TableDef};
use crate::error::{PlanError, Result};
use crate::stream_plan::{JoinKind, LookupJoinNode, StreamNode};
use crate::table_sources::StreamTableSource;
use crate::temporal::TemporalRef;

/// Connectors whose tables are looked up by key instead of read as a stream.
pub const LOOKUP_CONNECTORS: &[&str] = &["jdbc"];

/// The table `plan` scans when it is a lookup table (a table of a lookup connector).
pub(super) fn lookup_table(plan: &LogicalPlan) -> Option<Arc<TableDef>> {
    let scan = match plan {
        LogicalPlan::SubqueryAlias(a) => match a.input.as_ref() {
            LogicalPlan::TableScan(s) => s,
            _ => return None,
        },
        LogicalPlan::TableScan(s) => s,
        _ => return None,
    };
    let t = scan.source.downcast_ref::<StreamTableSource>()?;
    let connector = t.table.connector()?;
    LOOKUP_CONNECTORS
        .contains(&connector)
        .then(|| t.table.clone())
}

/// The lookup table's column an ON key names (through the casts type coercion adds).
fn key_column(e: &Expr, table: &TableDef) -> Result<String> {
    let bad = || {
        PlanError::unsupported(
            format!("lookup join key `{e}`"),
            "Match the looked-up table's columns themselves, e.g. ON a.sensor_id = d.id",
        )
    };
    let col = match e {
        Expr::Column(c) => c,
        Expr::Cast(c) => match c.expr.as_ref() {
            Expr::Column(c) => c,
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    match table.column(&col.name) {
        Some(c) if c.kind == ColumnKind::Physical => Ok(col.name.clone()),
        _ => Err(bad()),
    }
}

/// Refuse columns of the lookup table that are not physical (computed or metadata).
fn physical_only(right: &datafusion::arrow::datatypes::Schema, table: &TableDef) -> Result<()> {
    for f in right.fields() {
        if table
            .column(f.name())
            .is_none_or(|c| c.kind != ColumnKind::Physical)
        {
            return Err(PlanError::unsupported(
                format!("column `{}` of lookup table `{}`", f.name(), table.name),
                "A looked-up table gives its physical columns only (no computed or metadata columns)",
            ));
        }
    }
    Ok(())
}

impl Converter<'_> {
    /// A lookup join of `j` into `table` (its keys `on`, the rest of its condition `rest`).
    pub(super) fn lookup_join(
        &mut self,
        j: &Join,
        kind: JoinKind,
        on: &[(Expr, Expr)],
        rest: Vec<Expr>,
        t: &TemporalRef,
        table: Arc<TableDef>,
    ) -> Result<Converted> {
        if !matches!(kind, JoinKind::Inner | JoinKind::Left) {
            return Err(PlanError::unsupported(
                format!("a {kind} lookup join"),
                "A lookup join is an INNER or a LEFT join",
            ));
        }
        let right_schema = Arc::new(j.right.schema().as_arrow().clone());
        physical_only(&right_schema, &table)?;
        let left = self.convert(&j.left)?;
        if left.node.is_updating() {
            return Err(PlanError::unsupported(
                "a lookup join of an updating input",
                "Look up the raw rows, then aggregate",
            ));
        }
        let mut left_keys = Vec::with_capacity(on.len());
        let mut right_keys = Vec::with_capacity(on.len());
        for (l, r) in on {
            left_keys.push(self.phys(l, j.left.schema())?);
            right_keys.push(key_column(r, &table)?);
        }
        let filter = self.pair_filter(j, rest)?;
        let mut roles = left.roles;
        roles.extend(std::iter::repeat_n(
            Role::Plain,
            right_schema.fields().len(),
        ));
        let node = StreamNode::LookupJoin(LookupJoinNode {
            left: Box::new(left.node),
            table,
            kind,
            left_keys,
            right_keys,
            right_schema,
            filter,
            schema: Arc::new(j.schema.as_arrow().clone()),
            keys_sql: on.iter().map(|(l, r)| format!("{l} = {r}")).collect(),
            time_sql: t.time.clone(),
        });
        Ok(Converted { node, roles })
    }
}
