//! Flink function names DataFusion lacks: `TO_TIMESTAMP_LTZ(epoch, precision)`,
//! `DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm:ss')`, `PROCTIME()`, and `LISTAGG(x)`'s default separator (`,`; the
//! two-argument form is DataFusion's `STRING_AGG` under Flink's name). (`CHAR_LENGTH`, `LOWER`,
//! `UPPER`, `CONCAT`, `ROUND`, `ABS`, ... come from DataFusion under the same names.)

use std::sync::Arc;

use chrono::DateTime;
use datafusion::arrow::array::{Array, ArrayRef, Int64Array, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// `LISTAGG(x)` written as `LISTAGG(x, ',')`, Flink's default separator, in a query's tokens.
pub fn listagg_separator(
    mut tokens: Vec<datafusion::sql::sqlparser::tokenizer::TokenWithSpan>,
) -> Vec<datafusion::sql::sqlparser::tokenizer::TokenWithSpan> {
    use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};
    let mut i = 0;
    while i + 1 < tokens.len() {
        let listagg = matches!(&tokens[i].token, Token::Word(w) if w.quote_style.is_none()
            && w.value.eq_ignore_ascii_case("LISTAGG"));
        if !listagg || tokens[i + 1].token != Token::LParen {
            i += 1;
            continue;
        }
        let (mut depth, mut j, mut comma) = (0usize, i + 1, false);
        while j < tokens.len() {
            match tokens[j].token {
                Token::LParen => depth += 1,
                Token::RParen if depth == 1 => break,
                Token::RParen => depth -= 1,
                Token::Comma if depth == 1 => comma = true,
                _ => {}
            }
            j += 1;
        }
        if !comma && j < tokens.len() {
            let at = tokens[j].span;
            let sep = [Token::Comma, Token::SingleQuotedString(",".into())];
            let sep = sep.map(|token| TokenWithSpan { token, span: at });
            tokens.splice(j..j, sep);
        }
        i += 2;
    }
    tokens
}

/// Scalar functions added to every planner.
pub fn flink_functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::new_from_impl(ToTimestampLtz::new())),
        Arc::new(ScalarUDF::new_from_impl(DateFormat::new())),
        Arc::new(ScalarUDF::new_from_impl(Proctime::new())),
    ]
}

/// `PROCTIME()`: the processing time, a TIMESTAMP_LTZ(3) read from the clock for each batch
/// (volatile, so it is never folded into a constant at planning). In a table's DDL,
/// `proc_time AS PROCTIME()` gives the rows a processing-time attribute, which a lookup join's
/// `FOR SYSTEM_TIME AS OF` names.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Proctime {
    signature: Signature,
}

impl Proctime {
    fn new() -> Self {
        Self {
            signature: Signature::exact(vec![], Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for Proctime {
    fn name(&self) -> &str {
        "proctime"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(ltz_millis())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let now = chrono::Utc::now().timestamp_millis();
        let values = vec![now; args.number_rows];
        let out =
            datafusion::arrow::array::TimestampMillisecondArray::from(values).with_timezone("UTC");
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// TIMESTAMP_LTZ(3).
fn ltz_millis() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// `TO_TIMESTAMP_LTZ(epoch, precision)`: epoch seconds (0), milliseconds (3), micro- (6) or
/// nanoseconds (9) to a TIMESTAMP_LTZ.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ToTimestampLtz {
    signature: Signature,
}

impl ToTimestampLtz {
    fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

fn precision_unit(p: i64) -> Option<(TimeUnit, i64)> {
    match p {
        0 => Some((TimeUnit::Millisecond, 1000)),
        3 => Some((TimeUnit::Millisecond, 1)),
        6 => Some((TimeUnit::Microsecond, 1)),
        9 => Some((TimeUnit::Nanosecond, 1)),
        _ => None,
    }
}

fn literal_precision(v: Option<&ScalarValue>) -> Option<i64> {
    match v? {
        ScalarValue::Int64(Some(p)) => Some(*p),
        ScalarValue::Int32(Some(p)) => Some(*p as i64),
        ScalarValue::Int8(Some(p)) => Some(*p as i64),
        ScalarValue::Int16(Some(p)) => Some(*p as i64),
        _ => None,
    }
}

impl ScalarUDFImpl for ToTimestampLtz {
    fn name(&self) -> &str {
        "to_timestamp_ltz"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(ltz_millis())
    }

    fn return_field_from_args(
        &self,
        args: ReturnFieldArgs,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        let p = literal_precision(args.scalar_arguments.get(1).copied().flatten());
        let Some((unit, _)) = p.and_then(precision_unit) else {
            return plan_err!("TO_TIMESTAMP_LTZ(epoch, precision): precision must be 0, 3, 6 or 9");
        };
        let dt = DataType::Timestamp(unit, Some("UTC".into()));
        Ok(Arc::new(datafusion::arrow::datatypes::Field::new(
            self.name(),
            dt,
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let p = match &args.args[1] {
            ColumnarValue::Scalar(s) => literal_precision(Some(s)),
            _ => None,
        };
        let Some((unit, factor)) = p.and_then(precision_unit) else {
            return exec_err!("TO_TIMESTAMP_LTZ precision must be a literal 0, 3, 6 or 9");
        };
        let input = args.args[0].to_array(args.number_rows)?;
        let ints = cast(&input, &DataType::Int64)?;
        let ints = ints.as_any().downcast_ref::<Int64Array>().expect("int64");
        let scaled: Int64Array = ints
            .iter()
            .map(|v| v.and_then(|v| v.checked_mul(factor)))
            .collect();
        let out = cast(
            &(Arc::new(scaled) as ArrayRef),
            &DataType::Timestamp(unit, Some("UTC".into())),
        )?;
        Ok(ColumnarValue::Array(out))
    }
}

/// `DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm:ss')` with Java/Flink pattern letters.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DateFormat {
    signature: Signature,
}

impl DateFormat {
    fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// Java `SimpleDateFormat` letters to chrono's strftime.
pub fn java_to_strftime(p: &str) -> String {
    const MAP: [(&str, &str); 14] = [
        ("yyyy", "%Y"),
        ("yy", "%y"),
        ("MMMM", "%B"),
        ("MMM", "%b"),
        ("MM", "%m"),
        ("dd", "%d"),
        ("HH", "%H"),
        ("hh", "%I"),
        ("mm", "%M"),
        ("ss", "%S"),
        ("SSS", "%3f"),
        ("EEEE", "%A"),
        ("EEE", "%a"),
        ("a", "%p"),
    ];
    let mut out = String::new();
    let mut rest = p;
    'outer: while !rest.is_empty() {
        for (java, fmt) in MAP {
            if let Some(r) = rest.strip_prefix(java) {
                out.push_str(fmt);
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("non-empty");
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

impl ScalarUDFImpl for DateFormat {
    fn name(&self) -> &str {
        "date_format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let ColumnarValue::Scalar(ScalarValue::Utf8(Some(pattern))) = &args.args[1] else {
            return exec_err!("DATE_FORMAT needs a literal pattern such as 'yyyy-MM-dd HH:mm'");
        };
        let fmt = java_to_strftime(pattern);
        let input = args.args[0].to_array(args.number_rows)?;
        let ns = cast(
            &cast(&input, &DataType::Timestamp(TimeUnit::Nanosecond, None))?,
            &DataType::Int64,
        )?;
        let ns = ns.as_any().downcast_ref::<Int64Array>().expect("int64");
        let mut b = StringBuilder::with_capacity(ns.len(), ns.len() * fmt.len());
        for v in ns.iter() {
            match v {
                Some(v) => b.append_value(
                    DateTime::from_timestamp_nanos(v)
                        .naive_utc()
                        .format(&fmt)
                        .to_string(),
                ),
                None => b.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listagg_without_a_separator_gets_flinks_comma() {
        let text = |sql: &str| {
            let tokens = listagg_separator(crate::tokens::tokenize(sql).unwrap());
            tokens
                .iter()
                .map(|t| t.token.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            text("SELECT LISTAGG(UPPER(k)), listagg(k, ';') FROM t"),
            "SELECT LISTAGG ( UPPER ( k ) , ',' ) , listagg ( k , ';' ) FROM t"
        );
    }

    #[test]
    fn java_patterns() {
        assert_eq!(
            java_to_strftime("yyyy-MM-dd HH:mm:ss.SSS"),
            "%Y-%m-%d %H:%M:%S.%3f"
        );
        assert_eq!(java_to_strftime("dd/MM/yy"), "%d/%m/%y");
    }
}
