//! Parsing of `WITH (...)` option values shared by the connectors.
//!
//! Every helper returns an error sentence that names the option and the value, so a typo in a
//! table definition is reported at planning time in words a user can act on.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono_tz::Tz;
use weir_planner::TableDef;

/// A boolean option (`'true'` / `'false'`, any case), or `default` when absent.
pub(crate) fn bool_option(table: &TableDef, key: &str, default: bool) -> Result<bool, String> {
    match table.option(key) {
        None => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(format!(
            "option '{key}' must be 'true' or 'false', not '{v}'"
        )),
    }
}

/// A number option, or `None` when absent.
pub(crate) fn number_option<T: FromStr>(table: &TableDef, key: &str) -> Result<Option<T>, String> {
    match table.option(key) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("option '{key}' must be a number, not '{v}'")),
    }
}

/// A single ASCII character option such as a CSV delimiter; `\t` may be written as the two
/// characters backslash and `t`, as in Flink.
pub(crate) fn char_option(table: &TableDef, key: &str, default: u8) -> Result<u8, String> {
    let Some(v) = table.option(key) else {
        return Ok(default);
    };
    match v {
        "\\t" => Ok(b'\t'),
        _ if v.len() == 1 && v.is_ascii() => Ok(v.as_bytes()[0]),
        _ => Err(format!(
            "option '{key}' must be a single ASCII character, not '{v}'"
        )),
    }
}

/// The session time zone (`SET 'table.local-time-zone' = '...'`), `None` when unset (UTC).
pub(crate) fn session_time_zone(settings: &BTreeMap<String, String>) -> Result<Option<Tz>, String> {
    match settings.get("table.local-time-zone") {
        None => Ok(None),
        Some(name) => Tz::from_str(name.trim())
            .map(Some)
            .map_err(|_| format!("unknown time zone '{name}' in 'table.local-time-zone'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::table;

    #[test]
    fn parses_typed_options() {
        let t = table(
            &[("a", "TRUE"), ("n", " 42 "), ("d", "\\t"), ("bad", "maybe")],
            &[],
        );
        assert!(bool_option(&t, "a", false).unwrap());
        assert!(!bool_option(&t, "missing", false).unwrap());
        let err = bool_option(&t, "bad", false).unwrap_err();
        assert!(err.contains("'bad'") && err.contains("maybe"), "{err}");
        assert_eq!(number_option::<u64>(&t, "n").unwrap(), Some(42));
        assert!(number_option::<u64>(&t, "bad")
            .unwrap_err()
            .contains("'bad'"));
        assert_eq!(char_option(&t, "d", b',').unwrap(), b'\t');
        assert_eq!(char_option(&t, "missing", b',').unwrap(), b',');
        assert!(char_option(&t, "bad", b',').is_err());
    }

    #[test]
    fn parses_session_zone() {
        let mut s = BTreeMap::new();
        assert_eq!(session_time_zone(&s).unwrap(), None);
        s.insert(
            "table.local-time-zone".to_string(),
            "America/New_York".to_string(),
        );
        assert_eq!(
            session_time_zone(&s).unwrap(),
            Some(chrono_tz::America::New_York)
        );
        s.insert("table.local-time-zone".to_string(), "Mars/Base".to_string());
        assert!(session_time_zone(&s).unwrap_err().contains("Mars/Base"));
    }
}
