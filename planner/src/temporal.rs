//! `FOR SYSTEM_TIME AS OF t.ts`, Flink's temporal join syntax, which the SQL parser does not
//! take: the clause is taken out of the tokens before parsing, and each one is remembered by
//! the name its table goes by in the query, so the join it is part of can be planned as an
//! event-time temporal join.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{Location, PlanError, Result};
use crate::tokens::loc;

/// A versioned table read `FOR SYSTEM_TIME AS OF` a column of the other input.
#[derive(Debug, Clone, PartialEq)]
pub struct TemporalRef {
    /// The name the versioned table goes by (its alias, else its name).
    pub alias: String,
    /// The time column, as written (`t.ts`).
    pub time: String,
    pub location: Location,
}

fn is_word(t: Option<&TokenWithSpan>, kw: &str) -> bool {
    matches!(t.map(|t| &t.token), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

fn word(t: Option<&TokenWithSpan>) -> Option<String> {
    match t.map(|t| &t.token) {
        Some(Token::Word(w)) => Some(w.value.clone()),
        _ => None,
    }
}

/// The tokens without their `FOR SYSTEM_TIME AS OF <column>` clauses, and those clauses.
pub fn strip_system_time(
    tokens: Vec<TokenWithSpan>,
) -> Result<(Vec<TokenWithSpan>, Vec<TemporalRef>)> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut refs = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let clause = is_word(tokens.get(i), "FOR")
            && is_word(tokens.get(i + 1), "SYSTEM_TIME")
            && is_word(tokens.get(i + 2), "AS")
            && is_word(tokens.get(i + 3), "OF");
        if !clause {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let at = loc(&tokens[i]);
        let table = word(out.last()).ok_or_else(|| {
            PlanError::parse("FOR SYSTEM_TIME AS OF must follow a table name", at)
        })?;
        let (time, next) = column_ref(&tokens, i + 4)
            .ok_or_else(|| PlanError::parse("FOR SYSTEM_TIME AS OF takes a column (t.ts)", at))?;
        let alias_at = if is_word(tokens.get(next), "AS") {
            next + 1
        } else {
            next
        };
        let alias = word(tokens.get(alias_at))
            .filter(|w| !is_clause_keyword(w))
            .unwrap_or(table);
        refs.push(TemporalRef {
            alias,
            time,
            location: at,
        });
        i = next;
    }
    Ok((out, refs))
}

/// `a` or `a.b` from `start`: the text and the index after it.
fn column_ref(tokens: &[TokenWithSpan], start: usize) -> Option<(String, usize)> {
    let mut text = word(tokens.get(start))?;
    let mut i = start + 1;
    while matches!(tokens.get(i).map(|t| &t.token), Some(Token::Period)) {
        text = format!("{text}.{}", word(tokens.get(i + 1))?);
        i += 2;
    }
    Some((text, i))
}

fn is_clause_keyword(w: &str) -> bool {
    [
        "ON", "JOIN", "LEFT", "INNER", "WHERE", "GROUP", "USING", "CROSS", "FULL", "RIGHT",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clause_is_taken_out_and_remembered_by_alias() {
        let sql = "SELECT * FROM t JOIN cal FOR SYSTEM_TIME AS OF t.ts AS c ON t.k = c.k \
                   JOIN v FOR SYSTEM_TIME AS OF t.ts ON t.k = v.k";
        let (tokens, refs) = strip_system_time(crate::tokens::tokenize(sql).unwrap()).unwrap();
        let text: Vec<String> = tokens.iter().map(|t| t.token.to_string()).collect();
        assert_eq!(
            text.join(" "),
            "SELECT * FROM t JOIN cal AS c ON t . k = c . k JOIN v ON t . k = v . k"
        );
        assert_eq!(refs[0].alias, "c");
        assert_eq!(refs[0].time, "t.ts");
        assert_eq!(refs[1].alias, "v");
    }
}
