//! The shell's line-editor helper: tab completion and syntax highlighting.
//!
//! Completion offers SQL keywords, table and view names, the columns of tables the statement
//! mentions, function names, and inside `WITH (...)` the option keys of the connector the
//! statement names. Statements span lines, so the helper also sees the lines typed before the
//! current one ([`SqlHelper::set_pending`]). Keywords are highlighted bold and strings green.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "HAVING",
    "ORDER",
    "AS",
    "AND",
    "OR",
    "NOT",
    "CREATE",
    "TABLE",
    "VIEW",
    "DROP",
    "INSERT",
    "INTO",
    "WITH",
    "WATERMARK",
    "FOR",
    "INTERVAL",
    "SECOND",
    "MINUTE",
    "HOUR",
    "DAY",
    "TUMBLE",
    "HOP",
    "CUMULATE",
    "SESSION",
    "DESCRIPTOR",
    "SHOW",
    "TABLES",
    "VIEWS",
    "FUNCTIONS",
    "JOBS",
    "DESCRIBE",
    "EXPLAIN",
    "SET",
    "RESET",
    "STOP",
    "JOB",
    "SAVEPOINT",
    "HELP",
    "EXECUTE",
    "STATEMENT",
    "BEGIN",
    "END",
    "PRIMARY",
    "KEY",
    "ENFORCED",
    "METADATA",
    "VIRTUAL",
    "UNION",
    "ALL",
    "DISTINCT",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "CAST",
    "STRING",
    "BIGINT",
    "INT",
    "DOUBLE",
    "BOOLEAN",
    "TIMESTAMP",
    "TIMESTAMP_LTZ",
    "DECIMAL",
    "OVER",
    "PARTITION",
    "ROW_NUMBER",
    "LIMIT",
    "IS",
    "NULL",
    "IN",
    "BETWEEN",
    "LIKE",
    "ON",
    "window_start",
    "window_end",
    "window_time",
];

/// What completion knows about the session, refreshed after every statement.
#[derive(Default, Clone)]
pub struct Names {
    /// Tables and views with their column names.
    pub relations: Vec<(String, Vec<String>)>,
    pub functions: Vec<String>,
}

#[derive(Default)]
pub struct SqlHelper {
    names: Arc<Mutex<Names>>,
    /// Lines of the statement typed before the current line.
    pending: Mutex<String>,
}

impl SqlHelper {
    pub fn set_names(&self, names: Names) {
        *self.names.lock().expect("lock") = names;
    }

    pub fn set_pending(&self, text: &str) {
        *self.pending.lock().expect("lock") = text.to_string();
    }

    fn candidates(&self, statement: &str, word: &str) -> Vec<String> {
        let names = self.names.lock().expect("lock");
        if let Some(prefix) = word.strip_prefix('\'') {
            let connector = connector_of(statement).unwrap_or_default();
            return weir::connectors::option_keys(&connector)
                .into_iter()
                .filter(|k| k.starts_with(prefix))
                .map(|k| format!("'{k}'"))
                .collect();
        }
        let upper = statement.to_ascii_uppercase();
        let mut out: Vec<String> = Vec::new();
        for (rel, cols) in &names.relations {
            out.push(rel.clone());
            if upper.contains(&rel.to_ascii_uppercase()) {
                out.extend(cols.iter().cloned());
            }
        }
        out.extend(KEYWORDS.iter().map(|k| k.to_string()));
        out.extend(names.functions.iter().cloned());
        let lw = word.to_ascii_lowercase();
        out.retain(|c| c.to_ascii_lowercase().starts_with(&lw) && c.len() > word.len());
        out.sort();
        out.dedup();
        out
    }
}

/// The connector named by `'connector' = 'x'` in a statement.
fn connector_of(sql: &str) -> Option<String> {
    let i = sql.find("'connector'")?;
    let rest = &sql[i + "'connector'".len()..];
    let start = rest.find('\'')? + 1;
    let len = rest[start..].find('\'')?;
    Some(rest[start..start + len].to_string())
}

/// Where the word under the cursor starts (a quoted option key counts as one word).
fn word_start(line: &str, pos: usize) -> usize {
    let before = &line[..pos];
    let quote = before.rfind('\'');
    if let Some(q) = quote {
        let inside = before[..q].matches('\'').count().is_multiple_of(2);
        if inside && !before[q + 1..].contains(|c: char| c.is_whitespace()) {
            return q;
        }
    }
    before
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
        .map_or(0, |i| i + 1)
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = word_start(line, pos);
        let statement = format!("{}{line}", self.pending.lock().expect("lock"));
        let found = self
            .candidates(&statement, &line[start..pos])
            .into_iter()
            .map(|c| Pair {
                display: c.clone(),
                replacement: c,
            })
            .collect();
        Ok((start, found))
    }
}

impl Hinter for SqlHelper {
    type Hint = String;
}

impl Validator for SqlHelper {}

impl Helper for SqlHelper {}

impl Highlighter for SqlHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Owned(highlight_sql(line))
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        true
    }
}

/// Keywords bold blue, string literals green (ANSI).
pub fn highlight_sql(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 16);
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            let mut end = line.len();
            for (j, d) in chars.by_ref() {
                if d == '\'' {
                    end = j + 1;
                    break;
                }
            }
            out.push_str("\x1b[32m");
            out.push_str(&line[i..end]);
            out.push_str("\x1b[0m");
        } else if c.is_alphabetic() || c == '_' {
            let mut end = line.len();
            while let Some(&(j, d)) = chars.peek() {
                if !(d.is_alphanumeric() || d == '_') {
                    end = j;
                    break;
                }
                chars.next();
            }
            let word = &line[i..end];
            if KEYWORDS
                .iter()
                .any(|k| k.eq_ignore_ascii_case(word) && k.chars().all(|c| c.is_ascii_uppercase()))
            {
                out.push_str("\x1b[1;34m");
                out.push_str(word);
                out.push_str("\x1b[0m");
            } else {
                out.push_str(word);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_tables_columns_keywords_and_options() {
        let h = SqlHelper::default();
        h.set_names(Names {
            relations: vec![("sensor_readings".into(), vec!["temperature".into()])],
            functions: vec!["avg".into()],
        });
        assert_eq!(
            h.candidates("SELECT * FROM sen", "sen"),
            vec!["sensor_readings"]
        );
        assert_eq!(
            h.candidates("SELECT tem FROM sensor_readings", "tem"),
            vec!["temperature"]
        );
        assert!(h.candidates("SEL", "SEL").contains(&"SELECT".to_string()));
        let with = "CREATE TABLE x (a INT) WITH ('connector' = 'kafka', 'scan.st";
        let c = h.candidates(with, "'scan.st");
        assert!(c.contains(&"'scan.startup.mode'".to_string()), "{c:?}");
        assert_eq!(word_start(with, with.len()), with.len() - "'scan.st".len());
    }

    #[test]
    fn highlights_keywords_and_strings() {
        let h = highlight_sql("SELECT 'x' FROM t");
        assert!(h.contains("\x1b[1;34mSELECT\x1b[0m") && h.contains("\x1b[32m'x'\x1b[0m"));
    }
}
