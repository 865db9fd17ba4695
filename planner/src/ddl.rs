//! The statements of a job file, parsed over tokens.
//!
//! `sqlparser` does not know Flink's DDL (`WATERMARK FOR`, computed columns, `METADATA`,
//! `PRIMARY KEY ... NOT ENFORCED`), `SET 'k' = 'v'`, `SHOW JOBS` or statement sets, so those are
//! parsed here with sqlparser's token-level helpers. Queries keep their tokens and are planned
//! later (see `query.rs`), because their meaning depends on the catalog at that point.

use std::collections::{BTreeMap, HashMap};

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::catalog::{ColumnDef, ColumnKind, TableDef, ViewDef, WatermarkDef};
use crate::error::{Location, PlanError, Result};
use crate::tokens::{loc, parse_error, parser_for, split_statements, StatementTokens};
use crate::types::parse_type;

/// A query (or the query of an INSERT) kept as tokens until it is planned.
#[derive(Debug, Clone)]
pub struct QuerySql {
    pub tokens: Vec<TokenWithSpan>,
    pub text: String,
    pub location: Location,
}

/// What `SHOW` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowWhat {
    Tables,
    Views,
    Functions,
    Jobs,
}

/// One statement of a script.
#[derive(Debug, Clone)]
pub enum Statement {
    CreateTable {
        table: TableDef,
        if_not_exists: bool,
    },
    CreateView {
        view: ViewDef,
        if_not_exists: bool,
        or_replace: bool,
    },
    DropTable {
        name: String,
        if_exists: bool,
        location: Location,
    },
    DropView {
        name: String,
        if_exists: bool,
        location: Location,
    },
    Show(ShowWhat),
    Describe {
        name: String,
        location: Location,
    },
    Explain(Box<Statement>),
    /// `EXPLAIN ANALYZE <query>`: run it to its end and show the operator tree with what each
    /// operator did (rows, time busy, time backpressured).
    ExplainAnalyze(Box<Statement>),
    /// `SET 'k' = 'v'`; `SET;` lists (key None).
    Set {
        key: Option<String>,
        value: Option<String>,
    },
    Reset {
        key: Option<String>,
    },
    Query(QuerySql),
    Insert {
        table: String,
        query: QuerySql,
        location: Location,
    },
    /// `EXECUTE STATEMENT SET BEGIN INSERT ...; INSERT ...; END`: one job.
    StatementSet(Vec<Statement>),
    /// `STOP JOB 'id' [WITH SAVEPOINT]`.
    StopJob {
        id: String,
        savepoint: bool,
        location: Location,
    },
    /// `HELP`: a one-screen summary.
    Help,
}

/// Parse every statement of a script; the first error stops.
pub fn parse_script(sql: &str) -> Result<Vec<Statement>> {
    split_statements(sql)?
        .into_iter()
        .map(|s| parse_statement(&s))
        .collect()
}

/// Parse every statement, collecting every error (for `weir run`, which reports them all).
pub fn parse_script_all(sql: &str) -> (Vec<Statement>, Vec<PlanError>) {
    let parts = match split_statements(sql) {
        Ok(p) => p,
        Err(e) => return (vec![], vec![e]),
    };
    let (mut ok, mut errs) = (Vec::new(), Vec::new());
    for p in parts {
        match parse_statement(&p) {
            Ok(s) => ok.push(s),
            Err(e) => errs.push(e),
        }
    }
    (ok, errs)
}

/// Parse one statement.
pub fn parse_statement(st: &StatementTokens) -> Result<Statement> {
    let w = st.leading_words(4);
    let w: Vec<&str> = w.iter().map(|s| s.as_str()).collect();
    match w.as_slice() {
        ["CREATE", ..] => parse_create(st),
        ["DROP", ..] => parse_drop(st),
        ["SHOW", what, ..] => parse_show(what, st),
        ["DESCRIBE" | "DESC", ..] => parse_describe(st),
        ["EXPLAIN", ..] => admin::parse_explain(st),
        ["SET", ..] => parse_set(st),
        ["RESET", ..] => parse_reset(st),
        ["STOP", "JOB", ..] => admin::parse_stop_job(st),
        ["HELP", ..] => admin::parse_help(st),
        ["INSERT", ..] => parse_insert(st, 0),
        ["EXECUTE", "STATEMENT", "SET", ..] | ["BEGIN", "STATEMENT", "SET", ..] => {
            parse_statement_set(st)
        }
        ["SELECT" | "WITH" | "VALUES" | "(", ..] => Ok(Statement::Query(query_sql(st, 0))),
        _ => Err(PlanError::parse(
            format!(
                "unknown statement starting with `{}`",
                w.first().unwrap_or(&"")
            ),
            st.location,
        )),
    }
}

fn query_sql(st: &StatementTokens, skip: usize) -> QuerySql {
    let tokens: Vec<TokenWithSpan> = st.tokens[skip.min(st.tokens.len())..].to_vec();
    let location = tokens.first().map(loc).unwrap_or(st.location);
    let text = tail_text(st, location);
    QuerySql {
        tokens,
        text,
        location,
    }
}

/// The statement text from `from` on.
fn tail_text(st: &StatementTokens, from: Location) -> String {
    let index = crate::tokens::LineIndex::new(&st.text);
    let line = from.line.saturating_sub(st.location.line) + 1;
    let column = if from.line == st.location.line {
        from.column - st.location.column + 1
    } else {
        from.column
    };
    let off = index.offset(line, column).unwrap_or(0);
    st.text[off..].to_string()
}

fn parser(st: &StatementTokens) -> Parser<'static> {
    parser_for(st.tokens.clone())
}

fn err_at(p: &Parser, msg: impl Into<String>) -> PlanError {
    PlanError::parse(msg, loc(p.peek_token_ref()))
}

fn pe(loc0: Location) -> impl Fn(datafusion::sql::sqlparser::parser::ParserError) -> PlanError {
    move |e| parse_error(e, loc0)
}

/// A possibly qualified name (`cat.db.t` keeps only the last part, as Weir has one namespace).
fn parse_name(p: &mut Parser) -> Result<(String, Location)> {
    let at = loc(p.peek_token_ref());
    let name = p.parse_object_name(false).map_err(pe(at))?;
    let last = name
        .0
        .last()
        .and_then(|part| part.as_ident())
        .map(|i| i.value.clone());
    last.map(|n| (n, at))
        .ok_or_else(|| PlanError::parse("expected a name", at))
}

fn expect_end(p: &mut Parser) -> Result<()> {
    let t = p.peek_token();
    if matches!(t.token, Token::EOF) {
        Ok(())
    } else {
        Err(PlanError::parse(
            format!("unexpected `{t}` at the end of the statement"),
            loc(&t),
        ))
    }
}

fn parse_create(st: &StatementTokens) -> Result<Statement> {
    let mut p = parser(st);
    p.expect_keyword(Keyword::CREATE).map_err(pe(st.location))?;
    let or_replace = p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    let _ = p.parse_keyword(Keyword::TEMPORARY);
    if p.parse_keyword(Keyword::TABLE) {
        let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let table = parse_table_body(&mut p, st.location)?;
        return Ok(Statement::CreateTable {
            table,
            if_not_exists,
        });
    }
    if p.parse_keyword(Keyword::VIEW) {
        let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let (name, _) = parse_name(&mut p)?;
        p.expect_keyword(Keyword::AS).map_err(pe(st.location))?;
        let q = query_sql(st, p.index());
        let view = ViewDef {
            name,
            query_sql: q.text,
            location: q.location,
        };
        return Ok(Statement::CreateView {
            view,
            if_not_exists,
            or_replace,
        });
    }
    Err(err_at(&p, "expected TABLE or VIEW after CREATE"))
}

fn parse_table_body(p: &mut Parser, at: Location) -> Result<TableDef> {
    let (name, _) = parse_name(p)?;
    let mut table = TableDef {
        name,
        columns: vec![],
        watermark: None,
        primary_key: vec![],
        partition_by: vec![],
        options: BTreeMap::new(),
        option_locations: HashMap::new(),
        location: at,
    };
    p.expect_token(&Token::LParen).map_err(pe(at))?;
    loop {
        parse_table_element(p, &mut table)?;
        if p.consume_token(&Token::Comma) {
            continue;
        }
        p.expect_token(&Token::RParen).map_err(pe(at))?;
        break;
    }
    if p.parse_keywords(&[Keyword::PARTITIONED, Keyword::BY]) {
        let cols = p
            .parse_parenthesized_column_list(
                datafusion::sql::sqlparser::parser::IsOptional::Mandatory,
                false,
            )
            .map_err(pe(at))?;
        table.partition_by = cols.into_iter().map(|i| i.value).collect();
    }
    if p.parse_keyword(Keyword::WITH) {
        parse_options(p, &mut table)?;
    }
    expect_end(p)?;
    check_table(&table)?;
    Ok(table)
}

fn parse_table_element(p: &mut Parser, table: &mut TableDef) -> Result<()> {
    let at = loc(p.peek_token_ref());
    if matches!(&p.peek_token_ref().token, Token::Word(w) if w.value.eq_ignore_ascii_case("WATERMARK"))
    {
        p.next_token();
        p.expect_keyword(Keyword::FOR).map_err(pe(at))?;
        let column = p.parse_identifier().map_err(pe(at))?.value;
        p.expect_keyword(Keyword::AS).map_err(pe(at))?;
        let expr = p.parse_expr().map_err(pe(at))?;
        if table.watermark.is_some() {
            return Err(PlanError::plan(
                "a table can declare only one WATERMARK",
                at,
            ));
        }
        table.watermark = Some(WatermarkDef {
            column,
            expr_sql: expr.to_string(),
        });
        return Ok(());
    }
    if p.parse_keyword(Keyword::PRIMARY) {
        p.expect_keyword(Keyword::KEY).map_err(pe(at))?;
        let cols = p
            .parse_parenthesized_column_list(
                datafusion::sql::sqlparser::parser::IsOptional::Mandatory,
                false,
            )
            .map_err(pe(at))?;
        table.primary_key = cols.into_iter().map(|i| i.value).collect();
        let _ = p.parse_keywords(&[Keyword::NOT, Keyword::ENFORCED]);
        return Ok(());
    }
    let column = parse_column(p)?;
    if table.column(&column.name).is_some() {
        return Err(PlanError::plan(
            format!("column `{}` is declared twice", column.name),
            at,
        ));
    }
    table.columns.push(column);
    Ok(())
}

fn parse_column(p: &mut Parser) -> Result<ColumnDef> {
    let at = loc(p.peek_token_ref());
    let name = p.parse_identifier().map_err(pe(at))?.value;
    if p.parse_keyword(Keyword::AS) {
        let expr = p.parse_expr().map_err(pe(at))?;
        let kind = ColumnKind::Computed {
            expr_sql: expr.to_string(),
        };
        // The type is derived when the table is registered.
        let data_type = datafusion::arrow::datatypes::DataType::Null;
        return Ok(ColumnDef {
            name,
            data_type,
            nullable: true,
            sql_type: String::new(),
            kind,
        });
    }
    let ty = parse_type(p).map_err(|e| e.at(at))?;
    let mut col = ColumnDef {
        name,
        data_type: ty.data_type,
        nullable: true,
        sql_type: ty.sql,
        kind: ColumnKind::Physical,
    };
    if p.parse_keyword(Keyword::METADATA) {
        let key = if p.parse_keyword(Keyword::FROM) {
            p.parse_literal_string().map_err(pe(at))?
        } else {
            col.name.clone()
        };
        let is_virtual = p.parse_keyword(Keyword::VIRTUAL);
        col.kind = ColumnKind::Metadata { key, is_virtual };
    }
    if p.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
        col.nullable = false;
        col.sql_type.push_str(" NOT NULL");
    } else {
        let _ = p.parse_keyword(Keyword::NULL);
    }
    Ok(col)
}

fn parse_options(p: &mut Parser, table: &mut TableDef) -> Result<()> {
    let at = loc(p.peek_token_ref());
    p.expect_token(&Token::LParen).map_err(pe(at))?;
    if p.consume_token(&Token::RParen) {
        return Ok(());
    }
    loop {
        let key_loc = loc(p.peek_token_ref());
        let key = p.parse_literal_string().map_err(pe(key_loc))?;
        p.expect_token(&Token::Eq).map_err(pe(key_loc))?;
        let value = p.parse_literal_string().map_err(pe(key_loc))?;
        if table.options.insert(key.clone(), value).is_some() {
            return Err(PlanError::plan(
                format!("option '{key}' is given twice"),
                key_loc,
            ));
        }
        table.option_locations.insert(key, key_loc);
        if p.consume_token(&Token::Comma) {
            continue;
        }
        p.expect_token(&Token::RParen).map_err(pe(key_loc))?;
        return Ok(());
    }
}

/// Checks that need the whole table: watermark column exists and is a timestamp, keys exist.
fn check_table(t: &TableDef) -> Result<()> {
    if let Some(wm) = &t.watermark {
        let Some(col) = t.column(&wm.column) else {
            return Err(PlanError::plan(
                format!(
                    "WATERMARK FOR `{}`: no such column in table `{}`",
                    wm.column, t.name
                ),
                t.location,
            ));
        };
        let is_ts = matches!(
            col.data_type,
            datafusion::arrow::datatypes::DataType::Timestamp(..)
        );
        if !is_ts && !matches!(col.kind, ColumnKind::Computed { .. }) {
            return Err(PlanError::plan(
                format!(
                    "WATERMARK FOR `{}`: the column must be TIMESTAMP(p) or TIMESTAMP_LTZ(p), not {}",
                    wm.column, col.sql_type
                ),
                t.location,
            ));
        }
    }
    for k in &t.primary_key {
        if t.column(k).is_none() {
            return Err(PlanError::plan(
                format!("PRIMARY KEY column `{k}` does not exist"),
                t.location,
            ));
        }
    }
    for k in &t.partition_by {
        if !t.column(k).is_some_and(|c| c.kind == ColumnKind::Physical) {
            return Err(PlanError::plan(
                format!("PARTITIONED BY column `{k}` is not a physical column of the table"),
                t.location,
            ));
        }
    }
    Ok(())
}

fn parse_drop(st: &StatementTokens) -> Result<Statement> {
    let mut p = parser(st);
    p.expect_keyword(Keyword::DROP).map_err(pe(st.location))?;
    let _ = p.parse_keyword(Keyword::TEMPORARY);
    let is_view = if p.parse_keyword(Keyword::TABLE) {
        false
    } else if p.parse_keyword(Keyword::VIEW) {
        true
    } else {
        return Err(err_at(&p, "expected TABLE or VIEW after DROP"));
    };
    let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let (name, location) = parse_name(&mut p)?;
    expect_end(&mut p)?;
    Ok(if is_view {
        Statement::DropView {
            name,
            if_exists,
            location,
        }
    } else {
        Statement::DropTable {
            name,
            if_exists,
            location,
        }
    })
}

fn parse_show(what: &str, st: &StatementTokens) -> Result<Statement> {
    let w = match what {
        "TABLES" => ShowWhat::Tables,
        "VIEWS" => ShowWhat::Views,
        "FUNCTIONS" => ShowWhat::Functions,
        "JOBS" => ShowWhat::Jobs,
        other => {
            return Err(PlanError::parse(
                format!("SHOW {other} is not supported; use SHOW TABLES, VIEWS, FUNCTIONS or JOBS"),
                st.location,
            ))
        }
    };
    if st.tokens.len() > 2 {
        return Err(PlanError::parse(
            "unexpected text after SHOW",
            loc(&st.tokens[2]),
        ));
    }
    Ok(Statement::Show(w))
}

fn parse_describe(st: &StatementTokens) -> Result<Statement> {
    let mut p = parser(st);
    p.next_token();
    let (name, location) = parse_name(&mut p)?;
    expect_end(&mut p)?;
    Ok(Statement::Describe { name, location })
}

fn literal_or_word(p: &mut Parser) -> Result<String> {
    let t = p.next_token();
    match t.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s),
        Token::Word(w) => Ok(w.value),
        Token::Number(n, _) => Ok(n),
        _ => Err(PlanError::parse(
            format!("expected a quoted string, found `{t}`"),
            loc(&t),
        )),
    }
}

/// `SET 'key' = 'value'`; keys may also be written bare (`SET table.local-time-zone = ...`).
fn parse_set(st: &StatementTokens) -> Result<Statement> {
    if st.tokens.len() == 1 {
        return Ok(Statement::Set {
            key: None,
            value: None,
        });
    }
    let eq = st
        .tokens
        .iter()
        .position(|t| t.token == Token::Eq)
        .ok_or_else(|| PlanError::parse("expected SET 'key' = 'value'", loc(&st.tokens[1])))?;
    let key = join_key(&st.tokens[1..eq]);
    let mut p = parser_for(st.tokens[eq + 1..].to_vec());
    let value = literal_or_word(&mut p)?;
    expect_end(&mut p)?;
    Ok(Statement::Set {
        key: Some(key),
        value: Some(value),
    })
}

fn join_key(tokens: &[TokenWithSpan]) -> String {
    let mut s = String::new();
    for t in tokens {
        match &t.token {
            Token::SingleQuotedString(v) | Token::DoubleQuotedString(v) => s.push_str(v),
            Token::Word(w) => s.push_str(&w.value),
            other => s.push_str(&other.to_string()),
        }
    }
    s
}

fn parse_reset(st: &StatementTokens) -> Result<Statement> {
    let key = (st.tokens.len() > 1).then(|| join_key(&st.tokens[1..]));
    Ok(Statement::Reset { key })
}

fn parse_insert(st: &StatementTokens, start: usize) -> Result<Statement> {
    let mut p = parser_for(st.tokens[start..].to_vec());
    let at = loc(p.peek_token_ref());
    p.expect_keyword(Keyword::INSERT).map_err(pe(at))?;
    if !p.parse_keyword(Keyword::INTO) && !p.parse_keyword(Keyword::OVERWRITE) {
        return Err(err_at(&p, "expected INTO after INSERT"));
    }
    let _ = p.parse_keyword(Keyword::TABLE);
    let (table, location) = parse_name(&mut p)?;
    let q = query_sql(st, start + p.index());
    if q.tokens.is_empty() {
        return Err(PlanError::parse("INSERT INTO needs a query", location));
    }
    Ok(Statement::Insert {
        table,
        query: q,
        location,
    })
}

fn parse_statement_set(st: &StatementTokens) -> Result<Statement> {
    let body_start = if matches!(&st.tokens[0].token, Token::Word(w) if w.value.eq_ignore_ascii_case("EXECUTE"))
    {
        4
    } else {
        3
    };
    let mut inserts = Vec::new();
    let mut start = body_start;
    for (i, t) in st.tokens.iter().enumerate().skip(body_start) {
        if t.token == Token::SemiColon {
            if i > start {
                let sub = sub_statement(st, start, i);
                inserts.push(parse_insert(&sub, 0)?);
            }
            start = i + 1;
        }
    }
    let rest: Vec<_> = st.tokens[start..].iter().collect();
    if rest.len() != 1
        || !matches!(&rest[0].token, Token::Word(w) if w.value.eq_ignore_ascii_case("END"))
    {
        return Err(PlanError::parse(
            "a statement set must end with END;",
            st.location,
        ));
    }
    if inserts.is_empty() {
        return Err(PlanError::parse(
            "a statement set needs at least one INSERT",
            st.location,
        ));
    }
    Ok(Statement::StatementSet(inserts))
}

fn sub_statement(st: &StatementTokens, from: usize, to: usize) -> StatementTokens {
    let tokens = st.tokens[from..to].to_vec();
    let location = loc(&tokens[0]);
    let mut text = tail_text(st, location);
    let end = loc(&st.tokens[to]);
    let full = tail_text(st, end);
    text.truncate(text.len().saturating_sub(full.len()));
    StatementTokens {
        tokens,
        text,
        location,
    }
}

mod admin;
#[cfg(test)]
mod tests;
