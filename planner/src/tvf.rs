//! Window table-valued functions and group windows, rewritten into generated tables.
//!
//! Flink's `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))` is not SQL that
//! `sqlparser` or DataFusion know. Before parsing, each TVF call in the token stream is replaced
//! by a generated table name (`__weir_tvf_N`) and described by a [`TvfCall`]; when DataFusion
//! resolves that name, the planner builds a table whose rows are the input's rows plus
//! `window_start`, `window_end` and `window_time`. The group-window form
//! (`GROUP BY TUMBLE(ts, ...)` with `TUMBLE_START(...)`) is rewritten on the AST into the same
//! shape with hidden column names (see `group_window.rs`).

use std::cell::Cell;

use datafusion::sql::sqlparser::ast::Expr;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{Location, PlanError, Result};
use crate::interval::interval_to_ns;
use crate::tokens::{loc, parse_error, parser_for, word_token};
use crate::window_spec::{WindowKind, WindowSpec};

/// Column names a TVF adds.
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";
pub const WINDOW_TIME: &str = "window_time";
/// Column names a group window adds (hidden from users).
pub const HIDDEN_START: &str = "__weir_window_start";
pub const HIDDEN_END: &str = "__weir_window_end";
pub const HIDDEN_TIME: &str = "__weir_window_time";

/// One window TVF (or group window) in a query.
#[derive(Debug, Clone)]
pub struct TvfCall {
    /// The generated table name that stands in the query.
    pub name: String,
    pub spec: WindowSpec,
    /// The relation the TVF reads, as SQL text usable after `SELECT * FROM`.
    pub input_sql: String,
    /// The time column (`DESCRIPTOR(ts)`).
    pub time_col: String,
    /// `PARTITION BY` keys (sessions).
    pub partition_by: Vec<String>,
    /// Group-window syntax: the added columns have hidden names.
    pub hidden: bool,
    pub location: Location,
}

impl TvfCall {
    pub fn column_names(&self) -> [&'static str; 3] {
        if self.hidden {
            [HIDDEN_START, HIDDEN_END, HIDDEN_TIME]
        } else {
            [WINDOW_START, WINDOW_END, WINDOW_TIME]
        }
    }
}

thread_local! {
    /// The number of the next generated name of the statement being planned on this thread.
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
}

/// A fresh generated table name: `__weir_tvf_0`, `_1`, ... within a statement.
pub fn fresh_name() -> String {
    let id = NEXT_ID.with(|n| n.replace(n.get() + 1));
    format!("__weir_tvf_{id}")
}

/// Number a new statement's generated names from 0, so a statement's plan (and EXPLAIN) is the
/// same whatever was planned before it.
pub fn restart_names() {
    NEXT_ID.with(|n| n.set(0));
}

fn is_word(t: &TokenWithSpan, kw: &str) -> bool {
    matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

fn window_kind_name(t: &TokenWithSpan) -> Option<&'static str> {
    ["TUMBLE", "HOP", "SESSION", "CUMULATE"]
        .into_iter()
        .find(|k| is_word(t, k))
}

/// Index of the `)` matching the `(` at `open`.
fn matching_paren(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Replace every `TABLE(<WINDOW>(...))` in `tokens` by a generated table name.
pub fn rewrite_tvfs(tokens: Vec<TokenWithSpan>) -> Result<(Vec<TokenWithSpan>, Vec<TvfCall>)> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut calls = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let is_tvf = is_word(&tokens[i], "TABLE")
            && tokens.get(i + 1).is_some_and(|t| t.token == Token::LParen)
            && tokens.get(i + 2).and_then(window_kind_name).is_some()
            && tokens.get(i + 3).is_some_and(|t| t.token == Token::LParen);
        if !is_tvf {
            unknown_table_function(&tokens[i..])?;
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let close = matching_paren(&tokens, i + 1)
            .ok_or_else(|| PlanError::parse("unbalanced parentheses", loc(&tokens[i])))?;
        let inner_close = matching_paren(&tokens, i + 3).unwrap_or(close);
        let kind = window_kind_name(&tokens[i + 2]).unwrap_or("TUMBLE");
        let call = parse_tvf(kind, &tokens[i + 4..inner_close], loc(&tokens[i]))?;
        out.push(word_token(&call.name, &tokens[i]));
        calls.push(call);
        i = close + 1;
    }
    Ok((out, calls))
}

/// `TABLE(<name>(TABLE t, ...))` with a name that is not a window: Flink's only table functions
/// over a table are the windows, and the parser would report a confusing token.
fn unknown_table_function(tokens: &[TokenWithSpan]) -> Result<()> {
    let shape = is_word(&tokens[0], "TABLE")
        && tokens.get(1).is_some_and(|t| t.token == Token::LParen)
        && tokens.get(3).is_some_and(|t| t.token == Token::LParen)
        && tokens.get(4).is_some_and(|t| is_word(t, "TABLE"));
    match tokens.get(2).map(|t| &t.token) {
        Some(Token::Word(w)) if shape => Err(PlanError::plan(
            format!(
                "unknown window table function {}: use TUMBLE, HOP, CUMULATE or SESSION",
                w.value
            ),
            loc(&tokens[2]),
        )),
        _ => Ok(()),
    }
}

/// Split at top-level commas.
fn split_args(tokens: &[TokenWithSpan]) -> Vec<&[TokenWithSpan]> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, t) in tokens.iter().enumerate() {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => {
                parts.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tokens[start..]);
    parts
}

/// Drop a leading `NAME =>` of a named argument; returns the name.
fn strip_named(arg: &[TokenWithSpan]) -> (Option<String>, &[TokenWithSpan]) {
    if arg.len() > 2 && arg[1].token == Token::RArrow {
        if let Token::Word(w) = &arg[0].token {
            return (Some(w.value.to_ascii_uppercase()), &arg[2..]);
        }
    }
    (None, arg)
}

fn parse_tvf(kind: &str, args: &[TokenWithSpan], at: Location) -> Result<TvfCall> {
    let parts = split_args(args);
    if parts.len() < 3 {
        return Err(PlanError::plan(
            format!("{kind} needs TABLE t, DESCRIPTOR(time column) and its sizes"),
            at,
        ));
    }
    let (_, data) = strip_named(parts[0]);
    let (input_sql, partition_by) = parse_data_arg(data, at)?;
    let (_, desc) = strip_named(parts[1]);
    let time_col = parse_descriptor(desc, at)?;
    let mut durations = Vec::new();
    for p in &parts[2..] {
        let (_, p) = strip_named(p);
        durations.push(parse_interval(p)?);
    }
    let spec = window_spec(kind, &durations, at)?;
    Ok(TvfCall {
        name: fresh_name(),
        spec,
        input_sql,
        time_col,
        partition_by,
        hidden: false,
        location: at,
    })
}

/// `TABLE name [PARTITION BY a, b]`.
fn parse_data_arg(data: &[TokenWithSpan], at: Location) -> Result<(String, Vec<String>)> {
    if data.len() < 2 || !is_word(&data[0], "TABLE") {
        return Err(PlanError::plan(
            "the first window argument must be `TABLE name`",
            at,
        ));
    }
    let part = data.iter().position(|t| is_word(t, "PARTITION"));
    let name_toks = &data[1..part.unwrap_or(data.len())];
    let input_sql: String = name_toks.iter().map(|t| t.token.to_string()).collect();
    let mut keys = Vec::new();
    if let Some(p) = part {
        for t in data.iter().skip(p + 1) {
            match &t.token {
                Token::Word(w) if w.value.eq_ignore_ascii_case("BY") && keys.is_empty() => {}
                Token::Word(w) => keys.push(w.value.clone()),
                Token::Comma | Token::LParen | Token::RParen => {}
                other => {
                    return Err(PlanError::parse(
                        format!("unexpected `{other}` in PARTITION BY"),
                        loc(t),
                    ))
                }
            }
        }
    }
    Ok((input_sql, keys))
}

fn parse_descriptor(desc: &[TokenWithSpan], at: Location) -> Result<String> {
    let ok = desc.len() == 4
        && is_word(&desc[0], "DESCRIPTOR")
        && desc[1].token == Token::LParen
        && desc[3].token == Token::RParen;
    match (ok, desc.get(2).map(|t| &t.token)) {
        (true, Some(Token::Word(w))) => Ok(w.value.clone()),
        _ => Err(PlanError::plan(
            "the second window argument must be DESCRIPTOR(time_column)",
            at,
        )),
    }
}

fn parse_interval(tokens: &[TokenWithSpan]) -> Result<(i64, Location)> {
    let at = tokens.first().map(loc).unwrap_or_default();
    let expr: Expr = parser_for(tokens.to_vec())
        .parse_expr()
        .map_err(|e| parse_error(e, at))?;
    let ns = interval_to_ns(&expr).map_err(|m| PlanError::plan(m, at))?;
    Ok((ns, at))
}

/// Build and check a window spec from the durations as written (HOP: slide first).
pub fn window_spec(kind: &str, d: &[(i64, Location)], at: Location) -> Result<WindowSpec> {
    let need = |n: usize, usage: &str| -> Result<()> {
        if d.len() < n || d.len() > n + 1 {
            return Err(PlanError::plan(
                format!("wrong number of arguments: {usage}"),
                at,
            ));
        }
        Ok(())
    };
    let positive = |(v, l): (i64, Location), what: &str| -> Result<i64> {
        if v <= 0 {
            return Err(PlanError::plan(format!("{what} must be positive"), l));
        }
        Ok(v)
    };
    let (wk, n) = match kind {
        "TUMBLE" => {
            need(1, "TUMBLE(data, timecol, size [, offset])")?;
            (
                WindowKind::Tumble {
                    size: positive(d[0], "window size")?,
                },
                1,
            )
        }
        "HOP" => {
            need(
                2,
                "HOP(data, timecol, slide, size [, offset]) — the slide comes first",
            )?;
            let slide = positive(d[0], "HOP slide")?;
            let size = positive(d[1], "HOP size")?;
            (WindowKind::Hop { slide, size }, 2)
        }
        "CUMULATE" => {
            need(2, "CUMULATE(data, timecol, step, max_size [, offset])")?;
            let (step, max_size) = (positive(d[0], "step")?, positive(d[1], "max size")?);
            if max_size % step != 0 {
                return Err(PlanError::plan(
                    "CUMULATE max_size must be a multiple of step",
                    d[1].1,
                ));
            }
            (WindowKind::Cumulate { step, max_size }, 2)
        }
        _ => {
            if d.len() != 1 {
                return Err(PlanError::plan(
                    "SESSION(data, timecol, gap) takes one interval",
                    at,
                ));
            }
            (
                WindowKind::Session {
                    gap: positive(d[0], "session gap")?,
                },
                1,
            )
        }
    };
    let offset = d.get(n).map(|x| x.0).unwrap_or(0);
    Ok(WindowSpec { kind: wk, offset })
}
