//! The group-window syntax (`GROUP BY k, TUMBLE(ts, INTERVAL '1' MINUTE)` with
//! `TUMBLE_START(...)`, `TUMBLE_END(...)`, `TUMBLE_ROWTIME(...)`), rewritten on the AST into a
//! window table over the `FROM` relation, grouped by hidden window columns.
//!
//! `SELECT k, TUMBLE_START(ts, i) FROM t GROUP BY k, TUMBLE(ts, i)` becomes
//! `SELECT k, __weir_window_start FROM __weir_tvf_N AS t GROUP BY k, __weir_window_start,
//! __weir_window_end, __weir_window_time`, where `__weir_tvf_N` is a [`TvfCall`] over `t`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    Ident, Query, Select, SetExpr, Statement, TableFactor,
};

use crate::error::{Location, PlanError, Result};
use crate::interval::interval_to_ns;
use crate::tokens::{parse_error, parser_for, tokenize};
use crate::tvf::{fresh_name, window_spec, TvfCall, HIDDEN_END, HIDDEN_START, HIDDEN_TIME};

/// Rewrite every group window in `query` (CTEs and subqueries included).
pub fn rewrite_query(query: &mut Query, calls: &mut Vec<TvfCall>, at: Location) -> Result<()> {
    if let Some(with) = &mut query.with {
        for cte in &mut with.cte_tables {
            rewrite_query(&mut cte.query, calls, at)?;
        }
    }
    rewrite_set_expr(&mut query.body, calls, at)
}

fn rewrite_set_expr(body: &mut SetExpr, calls: &mut Vec<TvfCall>, at: Location) -> Result<()> {
    match body {
        SetExpr::Select(select) => rewrite_select(select, calls, at),
        SetExpr::Query(q) => rewrite_query(q, calls, at),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set_expr(left, calls, at)?;
            rewrite_set_expr(right, calls, at)
        }
        _ => Ok(()),
    }
}

fn function_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Function(f) => f
            .name
            .0
            .last()?
            .as_ident()
            .map(|i| i.value.to_ascii_uppercase()),
        _ => None,
    }
}

fn function_args(e: &Expr) -> Vec<&Expr> {
    let Expr::Function(f) = e else { return vec![] };
    let FunctionArguments::List(list) = &f.args else {
        return vec![];
    };
    list.args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            FunctionArg::Named {
                arg: FunctionArgExpr::Expr(e),
                ..
            } => Some(e),
            _ => None,
        })
        .collect()
}

fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(i.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
        _ => None,
    }
}

fn rewrite_select(select: &mut Select, calls: &mut Vec<TvfCall>, at: Location) -> Result<()> {
    for twj in &mut select.from {
        if let TableFactor::Derived { subquery, .. } = &mut twj.relation {
            rewrite_query(subquery, calls, at)?;
        }
    }
    let GroupByExpr::Expressions(exprs, _) = &mut select.group_by else {
        return Ok(());
    };
    let Some(idx) = exprs.iter().position(|e| {
        matches!(
            function_name(e).as_deref(),
            Some("TUMBLE" | "HOP" | "SESSION")
        )
    }) else {
        return Ok(());
    };
    let kind = function_name(&exprs[idx]).unwrap_or_default();
    let args = function_args(&exprs[idx]);
    let time_col = args.first().and_then(|e| column_name(e)).ok_or_else(|| {
        PlanError::plan(
            format!("{kind}(time_column, ...) needs a time column first"),
            at,
        )
    })?;
    let mut durations = Vec::new();
    for a in args.iter().skip(1) {
        durations.push((interval_to_ns(a).map_err(|m| PlanError::plan(m, at))?, at));
    }
    let spec = window_spec(&kind, &durations, at)?;
    let partition_by: Vec<String> = exprs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != idx)
        .filter_map(|(_, e)| column_name(e))
        .collect();
    exprs.splice(
        idx..=idx,
        [HIDDEN_START, HIDDEN_END, HIDDEN_TIME].map(ident_expr),
    );
    let name = fresh_name();
    let input_sql = replace_from(select, &name, at)?;
    replace_helpers(select, &kind)?;
    calls.push(TvfCall {
        name,
        spec,
        input_sql,
        time_col,
        partition_by,
        hidden: true,
        location: at,
    });
    Ok(())
}

fn ident_expr(name: &str) -> Expr {
    Expr::Identifier(Ident::new(name))
}

/// Point the single FROM relation at the generated table; returns the relation's SQL.
fn replace_from(select: &mut Select, name: &str, at: Location) -> Result<String> {
    let only_one = select.from.len() == 1 && select.from[0].joins.is_empty();
    if !only_one {
        return Err(PlanError::unsupported(
            "a group window (GROUP BY TUMBLE/HOP/SESSION) needs a single table in FROM",
            "Join first in a view or subquery, then window over it",
        )
        .at(at));
    }
    let factor = &mut select.from[0].relation;
    let (input_sql, alias) = match factor {
        TableFactor::Table { name, alias, .. } => {
            let alias_name = alias.as_ref().map(|a| a.name.value.clone());
            let last = name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.clone());
            (name.to_string(), alias_name.or(last))
        }
        TableFactor::Derived {
            subquery, alias, ..
        } => (
            format!("({subquery})"),
            alias.as_ref().map(|a| a.name.value.clone()),
        ),
        _ => {
            return Err(PlanError::unsupported(
                "a group window needs a table, view or subquery in FROM",
                "",
            )
            .at(at))
        }
    };
    *factor = generated_factor(name, alias.as_deref())?;
    Ok(input_sql)
}

fn generated_factor(name: &str, alias: Option<&str>) -> Result<TableFactor> {
    let sql = match alias {
        Some(a) => format!("SELECT * FROM {name} AS {}", Ident::with_quote('"', a)),
        None => format!("SELECT * FROM {name}"),
    };
    let stmt = parser_for(tokenize(&sql)?)
        .parse_statement()
        .map_err(|e| parse_error(e, Location::default()))?;
    let Statement::Query(q) = stmt else {
        return Err(PlanError::Internal("not a query".into()));
    };
    match *q.body {
        SetExpr::Select(s) => Ok(s
            .from
            .into_iter()
            .next()
            .map(|t| t.relation)
            .ok_or_else(|| PlanError::Internal("generated query has no FROM".into()))?),
        _ => Err(PlanError::Internal(
            "generated query is not a SELECT".into(),
        )),
    }
}

/// `TUMBLE_START(...)` -> `__weir_window_start`, and the same for `_END` and `_ROWTIME`.
fn replace_helpers(select: &mut Select, kind: &str) -> Result<()> {
    let mut bad = None;
    let _ = visit_expressions_mut(select, |e: &mut Expr| {
        if let Some(name) = function_name(e) {
            if let Some(suffix) = name.strip_prefix(&format!("{kind}_")) {
                match suffix {
                    "START" => *e = ident_expr(HIDDEN_START),
                    "END" => *e = ident_expr(HIDDEN_END),
                    "ROWTIME" => *e = ident_expr(HIDDEN_TIME),
                    other => bad = Some(format!("{kind}_{other} is not supported")),
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    match bad {
        Some(m) => Err(PlanError::unsupported(m, "use _START, _END or _ROWTIME")),
        None => Ok(()),
    }
}
