//! Flink's query hints, `SELECT /*+ STATE_TTL('a' = '1 d', 'b' = '12 h') */ ...`: the
//! tokenizer keeps `/*+ ... */` comments ([`crate::tokens::tokenize`]) and a query's hints are
//! taken out of its tokens here before it is parsed. `STATE_TTL` gives the state of a regular
//! join's input (named by its alias, else its table name) its own time to live, over
//! `table.exec.state.ttl`. Other hint names are refused with the list Weir knows.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

use crate::error::{Location, PlanError, Result};
use crate::tokens::loc;

/// The hints of a query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hints {
    /// `STATE_TTL`: time to live (ns) by the name a join input goes by (lower case).
    pub state_ttl: BTreeMap<String, i64>,
}

/// Whether `t` is a hint comment (`/*+ ... */`), which the tokenizer keeps.
pub fn is_hint(t: &Token) -> bool {
    matches!(t, Token::Whitespace(Whitespace::MultiLineComment(c)) if c.starts_with('+'))
}

/// The tokens without their hint comments, and the hints they held.
pub fn strip_hints(tokens: Vec<TokenWithSpan>) -> Result<(Vec<TokenWithSpan>, Hints)> {
    let mut hints = Hints::default();
    let mut out = Vec::with_capacity(tokens.len());
    for t in tokens {
        match &t.token {
            Token::Whitespace(Whitespace::MultiLineComment(c)) if c.starts_with('+') => {
                parse_hints(&c[1..], loc(&t), &mut hints)?;
            }
            _ => out.push(t),
        }
    }
    Ok((out, hints))
}

/// `NAME(options), NAME(options) ...` inside one comment.
fn parse_hints(text: &str, at: Location, hints: &mut Hints) -> Result<()> {
    let tokens = crate::tokens::tokenize(text).map_err(|e| e.at(at))?;
    let mut i = 0;
    while i < tokens.len() && tokens[i].token != Token::EOF {
        let Token::Word(w) = &tokens[i].token else {
            return Err(bad(at, "a hint name, e.g. STATE_TTL('t' = '1 d')"));
        };
        if !w.value.eq_ignore_ascii_case("STATE_TTL") {
            return Err(PlanError::plan(
                format!("unknown hint {}: Weir knows STATE_TTL", w.value),
                at,
            ));
        }
        i = state_ttl(&tokens, i + 1, at, hints)?;
        if tokens.get(i).map(|t| &t.token) == Some(&Token::Comma) {
            i += 1;
        }
    }
    Ok(())
}

/// `('a' = '1 d', ...)` from `i`; the index after the `)`.
fn state_ttl(
    tokens: &[TokenWithSpan],
    mut i: usize,
    at: Location,
    hints: &mut Hints,
) -> Result<usize> {
    let tok = |i: usize| tokens.get(i).map(|t| &t.token);
    if tok(i) != Some(&Token::LParen) {
        return Err(bad(at, "STATE_TTL('t' = '1 d')"));
    }
    i += 1;
    loop {
        let (
            Some(Token::SingleQuotedString(name)),
            Some(Token::Eq),
            Some(Token::SingleQuotedString(ttl)),
        ) = (tok(i), tok(i + 1), tok(i + 2))
        else {
            return Err(bad(at, "STATE_TTL('t' = '1 d', 'u' = '12 h')"));
        };
        let ns = crate::interval::parse_duration(ttl).map_err(|m| PlanError::plan(m, at))?;
        hints.state_ttl.insert(name.to_ascii_lowercase(), ns);
        i += 3;
        match tok(i) {
            Some(Token::Comma) => i += 1,
            Some(Token::RParen) => return Ok(i + 1),
            _ => return Err(bad(at, "STATE_TTL('t' = '1 d', 'u' = '12 h')")),
        }
    }
}

fn bad(at: Location, form: &str) -> PlanError {
    PlanError::plan(format!("a hint is written /*+ {form} */"), at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_ttl_hints_are_taken_out_and_read_by_name() {
        let sql =
            "SELECT /*+ STATE_TTL('o' = '1 d', 'Shipments' = '12 h') */ * FROM o JOIN shipments";
        let (tokens, hints) = strip_hints(crate::tokens::tokenize(sql).unwrap()).unwrap();
        assert!(!tokens.iter().any(|t| is_hint(&t.token)));
        assert_eq!(hints.state_ttl["o"], 86_400_000_000_000);
        assert_eq!(hints.state_ttl["shipments"], 43_200_000_000_000);
    }

    #[test]
    fn unknown_or_malformed_hints_are_refused() {
        for (sql, want) in [
            (
                "SELECT /*+ BROADCAST(t) */ * FROM t",
                "unknown hint BROADCAST",
            ),
            (
                "SELECT /*+ STATE_TTL('t') */ * FROM t",
                "STATE_TTL('t' = '1 d', 'u' = '12 h')",
            ),
            (
                "SELECT /*+ STATE_TTL('t' = 'soon') */ * FROM t",
                "not a duration",
            ),
        ] {
            let err = strip_hints(crate::tokens::tokenize(sql).unwrap()).unwrap_err();
            assert!(err.to_string().contains(want), "{sql}: {err}");
        }
    }
}
