//! Statements about statements and the session rather than data: `EXPLAIN [ANALYZE]`,
//! `STOP JOB 'id' [WITH SAVEPOINT]` and `HELP`.

use datafusion::sql::sqlparser::tokenizer::Token;

use super::{
    expect_end, literal_or_word, parse_statement, parser, tail_text, Statement, StatementTokens,
};
use crate::error::{PlanError, Result};
use crate::tokens::loc;

/// `STOP JOB 'id' [WITH SAVEPOINT]` (Flink SQL client syntax).
pub(super) fn parse_stop_job(st: &StatementTokens) -> Result<Statement> {
    let mut p = parser(st);
    p.next_token();
    p.next_token();
    let at = p.peek_token();
    let location = loc(&at);
    let id = literal_or_word(&mut p)
        .map_err(|_| PlanError::parse("STOP JOB needs a job id: STOP JOB '3'", location))?;
    let savepoint = p.parse_keywords(&[
        datafusion::sql::sqlparser::keywords::Keyword::WITH,
        datafusion::sql::sqlparser::keywords::Keyword::SAVEPOINT,
    ]);
    expect_end(&mut p)?;
    Ok(Statement::StopJob {
        id,
        savepoint,
        location,
    })
}

/// `HELP`.
pub(super) fn parse_help(st: &StatementTokens) -> Result<Statement> {
    let mut p = parser(st);
    p.next_token();
    expect_end(&mut p)?;
    Ok(Statement::Help)
}

/// `EXPLAIN <statement>` and `EXPLAIN ANALYZE <query>`.
pub(super) fn parse_explain(st: &StatementTokens) -> Result<Statement> {
    let mut inner = st.clone();
    inner.tokens.remove(0);
    let Some(first) = inner.tokens.first() else {
        return Err(PlanError::parse("EXPLAIN needs a statement", st.location));
    };
    let analyze = matches!(&first.token, Token::Word(w) if w.value.eq_ignore_ascii_case("ANALYZE"));
    if analyze {
        inner.tokens.remove(0);
    }
    let Some(first) = inner.tokens.first() else {
        return Err(PlanError::parse(
            "EXPLAIN ANALYZE needs a query",
            st.location,
        ));
    };
    inner.location = loc(first);
    inner.text = tail_text(st, inner.location);
    let statement = Box::new(parse_statement(&inner)?);
    Ok(if analyze {
        Statement::ExplainAnalyze(statement)
    } else {
        Statement::Explain(statement)
    })
}
