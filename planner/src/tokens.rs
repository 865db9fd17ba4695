//! Tokenising a script and splitting it into statements, keeping every token's position.
//!
//! Weir parses the Flink statements `sqlparser` lacks over the token stream, so positions stay
//! exact for error messages even after rewrites.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Word};

use crate::error::{Location, PlanError, Result};

/// The dialect Weir parses with: generic SQL, identifiers in `"..."` or `` `...` ``.
pub static DIALECT: GenericDialect = GenericDialect {};

/// One statement: its tokens (no whitespace or comments) and its text.
#[derive(Debug, Clone)]
pub struct StatementTokens {
    pub tokens: Vec<TokenWithSpan>,
    pub text: String,
    pub location: Location,
}

impl StatementTokens {
    /// The upper-cased words at the start, e.g. `["CREATE", "TABLE"]`.
    pub fn leading_words(&self, n: usize) -> Vec<String> {
        self.tokens
            .iter()
            .take(n)
            .map(|t| match &t.token {
                Token::Word(w) => w.value.to_ascii_uppercase(),
                other => other.to_string(),
            })
            .collect()
    }
}

pub fn loc(t: &TokenWithSpan) -> Location {
    Location::new(t.span.start.line, t.span.start.column)
}

/// Tokenise `sql`, dropping whitespace and comments, except hints (`/*+ ... */`, see
/// [`crate::hints`]).
pub fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>> {
    let mut tokenizer = Tokenizer::new(&DIALECT, sql);
    let tokens = tokenizer.tokenize_with_location().map_err(|e| {
        PlanError::parse(
            e.message.clone(),
            Location::new(e.location.line, e.location.column),
        )
    })?;
    Ok(tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)) || crate::hints::is_hint(&t.token))
        .collect())
}

/// Split a script into statements at top-level `;`. `EXECUTE STATEMENT SET BEGIN ... END;`
/// (and `BEGIN STATEMENT SET; ... END;`) stays one statement.
pub fn split_statements(sql: &str) -> Result<Vec<StatementTokens>> {
    let tokens = tokenize(sql)?;
    let index = LineIndex::new(sql);
    let mut out = Vec::new();
    let mut current: Vec<TokenWithSpan> = Vec::new();
    let mut in_set = false;
    for t in tokens {
        if matches!(t.token, Token::EOF) {
            break;
        }
        if t.token == Token::SemiColon {
            if in_set && !ends_with_end(&current) {
                current.push(t);
                continue;
            }
            if !current.is_empty() {
                in_set = false;
                out.push(finish(std::mem::take(&mut current), &index, sql));
            }
            continue;
        }
        current.push(t);
        if !in_set && starts_statement_set(&current) {
            in_set = true;
        }
    }
    if !current.is_empty() {
        out.push(finish(current, &index, sql));
    }
    Ok(out)
}

fn word_is(t: &TokenWithSpan, kw: &str) -> bool {
    matches!(&t.token, Token::Word(w) if w.value.eq_ignore_ascii_case(kw))
}

fn starts_statement_set(tokens: &[TokenWithSpan]) -> bool {
    let exec = ["EXECUTE", "STATEMENT", "SET", "BEGIN"];
    let begin = ["BEGIN", "STATEMENT", "SET"];
    let matches = |kws: &[&str]| {
        tokens.len() == kws.len() && tokens.iter().zip(kws).all(|(t, k)| word_is(t, k))
    };
    matches(&exec) || matches(&begin)
}

fn ends_with_end(tokens: &[TokenWithSpan]) -> bool {
    tokens.last().is_some_and(|t| word_is(t, "END"))
        && tokens.len() >= 2
        && tokens[tokens.len() - 2].token == Token::SemiColon
}

fn finish(tokens: Vec<TokenWithSpan>, index: &LineIndex, sql: &str) -> StatementTokens {
    let first = tokens.first().map(loc).unwrap_or_default();
    let start = index.offset(first.line, first.column).unwrap_or(0);
    let end = match tokens.last() {
        Some(t) => index
            .offset(t.span.end.line, t.span.end.column)
            .unwrap_or(sql.len()),
        None => sql.len(),
    };
    let text = sql.get(start..end.max(start)).unwrap_or("").to_string();
    StatementTokens {
        tokens,
        text,
        location: first,
    }
}

/// Converts (line, column) positions (1-based, columns in characters) to byte offsets.
pub struct LineIndex<'a> {
    sql: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(sql: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        Self { sql, line_starts }
    }

    pub fn offset(&self, line: u64, column: u64) -> Option<usize> {
        let start = *self.line_starts.get((line as usize).checked_sub(1)?)?;
        let rest = &self.sql[start..];
        let col = (column as usize).saturating_sub(1);
        match rest.char_indices().nth(col) {
            Some((i, _)) => Some(start + i),
            None => Some(self.sql.len()),
        }
    }
}

/// A sqlparser `Parser` over already-tokenised input.
pub fn parser_for(tokens: Vec<TokenWithSpan>) -> Parser<'static> {
    Parser::new(&DIALECT).with_tokens_with_locations(tokens)
}

/// Turn a sqlparser error ("... at Line: 3, Column: 7") into a located [`PlanError`].
pub fn parse_error(e: ParserError, fallback: Location) -> PlanError {
    let msg = match &e {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "statement nested too deeply".to_string(),
    };
    let (message, location) = split_location(&msg);
    PlanError::parse(message, location.unwrap_or(fallback))
}

fn split_location(msg: &str) -> (String, Option<Location>) {
    let Some(pos) = msg.rfind(" at Line: ") else {
        return (msg.to_string(), None);
    };
    let tail = &msg[pos + " at Line: ".len()..];
    let mut parts = tail.split(", Column: ");
    let line = parts.next().and_then(|s| s.trim().parse().ok());
    let col = parts.next().and_then(|s| s.trim().parse().ok());
    match (line, col) {
        (Some(l), Some(c)) => (msg[..pos].to_string(), Some(Location::new(l, c))),
        _ => (msg.to_string(), None),
    }
}

/// A word token at `loc` (used when rewriting the token stream).
pub fn word_token(value: &str, like: &TokenWithSpan) -> TokenWithSpan {
    let w = Word {
        value: value.to_string(),
        quote_style: None,
        keyword: Keyword::NoKeyword,
    };
    TokenWithSpan {
        token: Token::Word(w),
        span: like.span,
    }
}
