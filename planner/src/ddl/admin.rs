//! Statements that act on the session rather than on data: `STOP JOB 'id' [WITH SAVEPOINT]` and
//! `HELP`.

use super::{expect_end, literal_or_word, parser, Statement, StatementTokens};
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
