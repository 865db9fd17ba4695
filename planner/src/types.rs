//! Flink SQL types -> Arrow types.
//!
//! `TIMESTAMP(p)` is wall time without a zone (`Timestamp(unit, None)`), `TIMESTAMP_LTZ(p)` is an
//! instant (`Timestamp(unit, Some("UTC"))`, shown in the session time zone). The precision picks
//! the unit exactly: 0 -> s, 1..=3 -> ms, 4..=6 -> us, 7..=9 -> ns.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{PlanError, Result};
use crate::tokens::loc;

/// A parsed column type: the Arrow type and the normalised SQL spelling.
pub struct ParsedType {
    pub data_type: DataType,
    pub sql: String,
}

pub fn timestamp_unit(precision: u64) -> TimeUnit {
    match precision {
        0 => TimeUnit::Second,
        1..=3 => TimeUnit::Millisecond,
        4..=6 => TimeUnit::Microsecond,
        _ => TimeUnit::Nanosecond,
    }
}

/// Parse a Flink type at the parser's position.
pub fn parse_type(p: &mut Parser) -> Result<ParsedType> {
    let tok = p.next_token();
    let at = loc(&tok);
    let Token::Word(w) = &tok.token else {
        return Err(PlanError::parse(
            format!("expected a column type, found `{tok}`"),
            at,
        ));
    };
    let name = w.value.to_ascii_uppercase();
    if name == "MAP" || name == "ARRAY" {
        return parse_collection(p, &name, at);
    }
    let args = parse_type_args(p)?;
    let arg = |i: usize, d: u64| args.get(i).copied().unwrap_or(d);
    let (dt, sql) = match name.as_str() {
        "STRING" | "VARCHAR" | "CHAR" | "TEXT" => (DataType::Utf8, name.clone()),
        "BOOLEAN" | "BOOL" => (DataType::Boolean, "BOOLEAN".into()),
        "TINYINT" => (DataType::Int8, name.clone()),
        "SMALLINT" => (DataType::Int16, name.clone()),
        "INT" | "INTEGER" => (DataType::Int32, "INT".into()),
        "BIGINT" => (DataType::Int64, name.clone()),
        "FLOAT" | "REAL" => (DataType::Float32, "FLOAT".into()),
        "DOUBLE" => {
            let _ = p.parse_keyword(datafusion::sql::sqlparser::keywords::Keyword::PRECISION);
            (DataType::Float64, "DOUBLE".into())
        }
        "DECIMAL" | "DEC" | "NUMERIC" => {
            let (prec, scale) = (arg(0, 10), arg(1, 0));
            if !(1..=38).contains(&prec) || scale > prec {
                return Err(PlanError::plan(
                    format!("invalid DECIMAL({prec}, {scale})"),
                    at,
                ));
            }
            (
                DataType::Decimal128(prec as u8, scale as i8),
                format!("DECIMAL({prec}, {scale})"),
            )
        }
        "DATE" => (DataType::Date32, name.clone()),
        "TIME" => (DataType::Time64(TimeUnit::Microsecond), name.clone()),
        "TIMESTAMP" => timestamp_type(p, arg(0, 6))?,
        "TIMESTAMP_LTZ" => ltz(arg(0, 6)),
        "BYTES" | "VARBINARY" | "BINARY" => (DataType::Binary, "BYTES".into()),
        _ => return Err(PlanError::plan(format!("unknown type `{}`", w.value), at)),
    };
    let sql = match (name.as_str(), args.first()) {
        ("VARCHAR" | "CHAR", Some(n)) => format!("{name}({n})"),
        _ => sql,
    };
    Ok(ParsedType { data_type: dt, sql })
}

/// `MAP<K, V>` (Arrow's map with `keys`/`values` entries, as arrow's `MapBuilder` makes them)
/// and `ARRAY<T>` (a list).
fn parse_collection(p: &mut Parser, name: &str, at: crate::error::Location) -> Result<ParsedType> {
    use datafusion::arrow::datatypes::{Field, Fields};
    use std::sync::Arc;
    expect(p, Token::Lt, "`<`")?;
    let first = parse_type(p)?;
    let parsed = if name == "MAP" {
        expect(p, Token::Comma, "`,`")?;
        let value = parse_type(p)?;
        let entries = Fields::from(vec![
            Field::new("keys", first.data_type, false),
            Field::new("values", value.data_type, true),
        ]);
        ParsedType {
            data_type: DataType::Map(
                Arc::new(Field::new("entries", DataType::Struct(entries), false)),
                false,
            ),
            sql: format!("MAP<{}, {}>", first.sql, value.sql),
        }
    } else {
        ParsedType {
            data_type: DataType::new_list(first.data_type, true),
            sql: format!("ARRAY<{}>", first.sql),
        }
    };
    let t = p.next_token();
    match t.token {
        Token::Gt => Ok(parsed),
        Token::ShiftRight => Err(PlanError::parse(
            "write nested `>>` as `> >` (one closing bracket per type)",
            loc(&t),
        )),
        _ => Err(PlanError::parse(
            format!("expected `>` to close {name}<...>, found `{t}`"),
            if t.token == Token::EOF { at } else { loc(&t) },
        )),
    }
}

fn expect(p: &mut Parser, want: Token, what: &str) -> Result<()> {
    let t = p.next_token();
    if t.token == want {
        Ok(())
    } else {
        Err(PlanError::parse(
            format!("expected {what}, found `{t}`"),
            loc(&t),
        ))
    }
}

fn ltz(precision: u64) -> (DataType, String) {
    let dt = DataType::Timestamp(timestamp_unit(precision), Some("UTC".into()));
    (dt, format!("TIMESTAMP_LTZ({precision})"))
}

/// `TIMESTAMP(p) [WITHOUT TIME ZONE | WITH LOCAL TIME ZONE]`.
fn timestamp_type(p: &mut Parser, precision: u64) -> Result<(DataType, String)> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    if p.parse_keywords(&[Keyword::WITH, Keyword::LOCAL, Keyword::TIME, Keyword::ZONE]) {
        return Ok(ltz(precision));
    }
    let _ = p.parse_keywords(&[Keyword::WITHOUT, Keyword::TIME, Keyword::ZONE]);
    if precision > 9 {
        return Err(PlanError::plan(
            format!("TIMESTAMP precision must be 0..9, not {precision}"),
            Default::default(),
        ));
    }
    let dt = DataType::Timestamp(timestamp_unit(precision), None);
    Ok((dt, format!("TIMESTAMP({precision})")))
}

fn parse_type_args(p: &mut Parser) -> Result<Vec<u64>> {
    let mut args = Vec::new();
    if !p.consume_token(&Token::LParen) {
        return Ok(args);
    }
    loop {
        let t = p.next_token();
        match &t.token {
            Token::Number(n, _) => args.push(n.parse().map_err(|_| {
                PlanError::parse(format!("expected a number, found `{n}`"), loc(&t))
            })?),
            _ => {
                return Err(PlanError::parse(
                    format!("expected a number, found `{t}`"),
                    loc(&t),
                ))
            }
        }
        let t = p.next_token();
        match t.token {
            Token::Comma => continue,
            Token::RParen => return Ok(args),
            _ => {
                return Err(PlanError::parse(
                    format!("expected `,` or `)`, found `{t}`"),
                    loc(&t),
                ))
            }
        }
    }
}
