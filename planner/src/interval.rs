//! Interval literals (`INTERVAL '5' SECOND`, `INTERVAL '1:30' MINUTE TO SECOND`,
//! `INTERVAL '10 s'`) to nanoseconds, for windows, watermarks and options like `'5 s'`.

use datafusion::sql::sqlparser::ast::{DateTimeField, Expr, Interval, UnaryOperator, Value};

const NS_PER: [(&str, i64); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("min", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

fn field_ns(field: &DateTimeField) -> Option<i64> {
    Some(match field {
        DateTimeField::Nanosecond | DateTimeField::Nanoseconds => 1,
        DateTimeField::Microsecond | DateTimeField::Microseconds => 1_000,
        DateTimeField::Millisecond | DateTimeField::Milliseconds => 1_000_000,
        DateTimeField::Second | DateTimeField::Seconds => 1_000_000_000,
        DateTimeField::Minute | DateTimeField::Minutes => 60_000_000_000,
        DateTimeField::Hour | DateTimeField::Hours => 3_600_000_000_000,
        DateTimeField::Day | DateTimeField::Days => 86_400_000_000_000,
        DateTimeField::Week(_) | DateTimeField::Weeks => 7 * 86_400_000_000_000,
        _ => return None,
    })
}

/// Nanoseconds of an interval expression; `Err` says why it is not a fixed duration.
pub fn interval_to_ns(expr: &Expr) -> Result<i64, String> {
    match expr {
        Expr::Interval(iv) => interval_ns(iv),
        Expr::Nested(e) => interval_to_ns(e),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => interval_to_ns(expr).map(|v| -v),
        other => Err(format!("expected an INTERVAL literal, found `{other}`")),
    }
}

fn literal_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn interval_ns(iv: &Interval) -> Result<i64, String> {
    let text = literal_text(&iv.value)
        .ok_or_else(|| format!("unsupported interval value `{}`", iv.value))?;
    let Some(lead) = &iv.leading_field else {
        return parse_duration(&text);
    };
    let lead_ns = field_ns(lead)
        .ok_or_else(|| format!("INTERVAL {lead} is not a fixed duration; use DAY or smaller"))?;
    match &iv.last_field {
        None => parse_scaled(&text, lead_ns),
        Some(last) => parse_compound(&text, lead_ns, field_ns(last).unwrap_or(1)),
    }
}

/// `'1.5'` with a unit of `unit_ns`.
fn parse_scaled(text: &str, unit_ns: i64) -> Result<i64, String> {
    let t = text.trim();
    if let Ok(v) = t.parse::<i64>() {
        return v
            .checked_mul(unit_ns)
            .ok_or_else(|| format!("interval '{t}' is too large"));
    }
    let v: f64 = t.parse().map_err(|_| format!("'{t}' is not a number"))?;
    Ok((v * unit_ns as f64).round() as i64)
}

/// `'1:30'` MINUTE TO SECOND, `'2 03:00:00'` DAY TO SECOND.
fn parse_compound(text: &str, lead_ns: i64, last_ns: i64) -> Result<i64, String> {
    let t = text.trim();
    let (neg, t) = t.strip_prefix('-').map(|r| (true, r)).unwrap_or((false, t));
    let mut parts: Vec<&str> = Vec::new();
    for (i, chunk) in t.split(' ').enumerate() {
        if i == 0 && t.contains(' ') {
            parts.push(chunk);
        } else {
            parts.extend(chunk.split(':'));
        }
    }
    let units = [
        86_400_000_000_000,
        3_600_000_000_000,
        60_000_000_000,
        1_000_000_000,
    ];
    let start = units.iter().position(|u| *u == lead_ns).unwrap_or(0);
    let mut total = 0i64;
    for (i, p) in parts.iter().enumerate() {
        let unit = *units.get(start + i).unwrap_or(&last_ns);
        total += parse_scaled(p, unit)?;
    }
    Ok(if neg { -total } else { total })
}

/// `'5 s'`, `'10 seconds'`, `'1 min'`, `'250ms'`, `'2 h'` (Flink duration option syntax).
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(t.len());
    let (num, unit) = (t[..split].trim(), t[split..].trim());
    if num.is_empty() {
        return Err(format!("'{text}' is not a duration (e.g. '5 s', '1 min')"));
    }
    let unit_ns = match unit {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => NS_PER[2].1,
        "ns" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => NS_PER[0].1,
        "us" | "micro" | "micros" | "microsecond" | "microseconds" => NS_PER[1].1,
        "s" | "sec" | "secs" | "second" | "seconds" => NS_PER[3].1,
        "m" | "min" | "mins" | "minute" | "minutes" => NS_PER[4].1,
        "h" | "hour" | "hours" => NS_PER[5].1,
        "d" | "day" | "days" => NS_PER[6].1,
        other => return Err(format!("unknown time unit '{other}' in '{text}'")),
    };
    parse_scaled(num, unit_ns)
}

/// A day-time interval or duration value in nanoseconds (`None` for other values, and for
/// intervals with months, whose length varies).
pub fn scalar_ns(v: &datafusion::common::ScalarValue) -> Option<i64> {
    use datafusion::common::ScalarValue;
    const DAY: i64 = 86_400_000_000_000;
    match v {
        ScalarValue::IntervalDayTime(Some(d)) => {
            Some(i64::from(d.days) * DAY + i64::from(d.milliseconds) * 1_000_000)
        }
        ScalarValue::IntervalMonthDayNano(Some(m)) if m.months == 0 => {
            Some(i64::from(m.days) * DAY + m.nanoseconds)
        }
        ScalarValue::DurationSecond(Some(s)) => Some(s * 1_000_000_000),
        ScalarValue::DurationMillisecond(Some(s)) => Some(s * 1_000_000),
        ScalarValue::DurationMicrosecond(Some(s)) => Some(s * 1_000),
        ScalarValue::DurationNanosecond(Some(s)) => Some(*s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{parser_for, tokenize};

    fn ns(sql: &str) -> i64 {
        let expr = parser_for(tokenize(sql).unwrap()).parse_expr().unwrap();
        interval_to_ns(&expr).unwrap()
    }

    #[test]
    fn interval_literals() {
        assert_eq!(ns("INTERVAL '5' SECOND"), 5_000_000_000);
        assert_eq!(ns("INTERVAL '1' MINUTE"), 60_000_000_000);
        assert_eq!(ns("INTERVAL '2' HOUR"), 7_200_000_000_000);
        assert_eq!(ns("INTERVAL '1' DAY"), 86_400_000_000_000);
        assert_eq!(ns("INTERVAL '0.5' SECOND"), 500_000_000);
        assert_eq!(ns("INTERVAL '1:30' MINUTE TO SECOND"), 90_000_000_000);
        assert_eq!(ns("INTERVAL '10 seconds'"), 10_000_000_000);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5 s").unwrap(), 5_000_000_000);
        assert_eq!(parse_duration("250ms").unwrap(), 250_000_000);
        assert_eq!(parse_duration("1 min").unwrap(), 60_000_000_000);
        assert!(parse_duration("five").is_err());
        assert!(parse_duration("5 fortnights").is_err());
    }
}
