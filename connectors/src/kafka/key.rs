//! Message keys as Flink has them: `key.format`, `key.fields` and `value.fields-include`.
//!
//! With `value.fields-include = 'ALL'` (the default) the value holds every column and the key
//! is only written (the sink serialises `key.fields` into it). With `'EXCEPT_KEY'` the key
//! columns live only in the key: the sink leaves them out of the value and the source reads
//! them back from the key. The source does that without a second decoder: the key's fields are
//! spliced into the JSON value line before it is decoded (`{"t":1}` + key `{"id":"a"}` becomes
//! `{"t":1,"id":"a"}`), so keyed records cost one copy of the key and nothing per column.

use datafusion::arrow::datatypes::DataType;
use weir_planner::TableDef;

use crate::filesystem::Format;

/// How a key is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFormat {
    Json,
    Csv,
    /// The one key field's bytes.
    Raw,
}

/// The parsed key options of a table.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyOptions {
    pub format: Option<KeyFormat>,
    pub fields: Vec<String>,
    /// `value.fields-include = 'EXCEPT_KEY'`.
    pub except_key: bool,
}

impl KeyOptions {
    pub(crate) fn parse(table: &TableDef) -> Result<KeyOptions, String> {
        let fields = key_fields(table)?;
        let format = match table.option("key.format").map(|f| f.to_ascii_lowercase()) {
            None => None,
            Some(f) => Some(match f.as_str() {
                "json" => KeyFormat::Json,
                "csv" => KeyFormat::Csv,
                "raw" => KeyFormat::Raw,
                other => {
                    return Err(format!(
                        "option 'key.format' must be 'json', 'csv' or 'raw', not '{other}'"
                    ))
                }
            }),
        };
        let except_key = match table
            .option("value.fields-include")
            .map(|v| v.to_ascii_uppercase())
        {
            None => false,
            Some(v) if v == "ALL" => false,
            Some(v) if v == "EXCEPT_KEY" => true,
            Some(v) => {
                return Err(format!(
                    "option 'value.fields-include' must be 'ALL' or 'EXCEPT_KEY', not '{v}'"
                ))
            }
        };
        let k = KeyOptions {
            format,
            fields,
            except_key,
        };
        k.check(table)?;
        Ok(k)
    }

    fn check(&self, table: &TableDef) -> Result<(), String> {
        match (&self.format, self.fields.is_empty()) {
            (Some(_), true) => {
                return Err("option 'key.format' needs the key columns in 'key.fields'".into())
            }
            (None, false) => {
                return Err("option 'key.fields' needs 'key.format' (json, csv or raw)".into())
            }
            _ => {}
        }
        if self.except_key && self.fields.is_empty() {
            return Err("'value.fields-include' = 'EXCEPT_KEY' needs 'key.fields'".into());
        }
        if self.format == Some(KeyFormat::Raw) {
            let ok = self.fields.len() == 1
                && table
                    .column(&self.fields[0])
                    .is_some_and(|c| matches!(c.data_type, DataType::Utf8 | DataType::Binary));
            if !ok {
                return Err(
                    "'key.format' = 'raw' needs exactly one key field of type STRING or BYTES"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// Checks for reading: splicing the key into the value works for JSON values with a JSON
    /// or raw (STRING) key.
    pub(crate) fn check_source(
        &self,
        table: &TableDef,
        value: Format,
        raw: bool,
    ) -> Result<(), String> {
        if !self.except_key {
            return Ok(());
        }
        if raw || value != Format::Json || self.format == Some(KeyFormat::Csv) {
            return Err(
                "reading key fields from the key ('value.fields-include' = 'EXCEPT_KEY') \
                        needs 'format' = 'json' and 'key.format' = 'json' or 'raw'"
                    .into(),
            );
        }
        if self.format == Some(KeyFormat::Raw)
            && table.column(&self.fields[0]).map(|c| &c.data_type) != Some(&DataType::Utf8)
        {
            return Err("a raw key read into a column needs that column to be STRING".into());
        }
        Ok(())
    }

    /// What the source must do with each record's key, if anything.
    pub(crate) fn splice(&self) -> Option<KeySplice> {
        if !self.except_key {
            return None;
        }
        Some(match self.format {
            Some(KeyFormat::Raw) => KeySplice::RawAs(self.fields[0].clone()),
            _ => KeySplice::JsonObject,
        })
    }
}

fn key_fields(table: &TableDef) -> Result<Vec<String>, String> {
    let Some(v) = table.option("key.fields") else {
        return Ok(vec![]);
    };
    let fields: Vec<String> = v
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for f in &fields {
        match table.column(f) {
            None => {
                return Err(format!(
                    "option 'key.fields' names '{f}', which is not a column"
                ))
            }
            Some(c) if !matches!(c.kind, weir_planner::ColumnKind::Physical) => {
                return Err(format!(
                    "option 'key.fields' names '{f}', which is not a physical column"
                ))
            }
            Some(_) => {}
        }
    }
    Ok(fields)
}

/// How a key joins its value line before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySplice {
    /// The key is a JSON object whose members join the value's.
    JsonObject,
    /// The key's bytes are the string value of this field.
    RawAs(String),
}

/// Splice `key` into the JSON value line at `line_start..` of `region` (the line is the last
/// thing in `region`, without its newline). A value that is not an object is left alone (it
/// goes to the dead letters when decoded); a key that is not an object adds nothing.
pub(crate) fn splice_key(region: &mut Vec<u8>, line_start: usize, key: &[u8], how: &KeySplice) {
    let members: Vec<u8> = match how {
        KeySplice::JsonObject => match json_members(key) {
            Some(m) if !m.is_empty() => m.to_vec(),
            _ => return,
        },
        KeySplice::RawAs(field) => {
            let mut m = Vec::with_capacity(field.len() + key.len() + 8);
            json_string(&mut m, field.as_bytes());
            m.push(b':');
            json_string(&mut m, key);
            m
        }
    };
    let line = &region[line_start..];
    let Some(close) = line.iter().rposition(|b| !b.is_ascii_whitespace()) else {
        return;
    };
    if line[close] != b'}' || line.first().is_none_or(|b| *b != b'{') {
        return;
    }
    let empty = line[..close]
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .is_some_and(|i| line[i] == b'{');
    region.truncate(line_start + close);
    if !empty {
        region.push(b',');
    }
    region.extend_from_slice(&members);
    region.push(b'}');
}

/// The text between a JSON object's braces, or None when `key` is not an object.
fn json_members(key: &[u8]) -> Option<&[u8]> {
    let s = key.trim_ascii();
    if s.len() >= 2 && s[0] == b'{' && s[s.len() - 1] == b'}' {
        Some(s[1..s.len() - 1].trim_ascii())
    } else {
        None
    }
}

/// Append `bytes` as a JSON string (invalid UTF-8 replaced).
fn json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let s = String::from_utf8_lossy(bytes);
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spliced(value: &str, key: &str, how: &KeySplice) -> String {
        let mut region = b"prev\n".to_vec();
        region.extend_from_slice(value.as_bytes());
        splice_key(&mut region, 5, key.as_bytes(), how);
        String::from_utf8(region[5..].to_vec()).unwrap()
    }

    #[test]
    fn json_keys_join_the_value_object() {
        let j = KeySplice::JsonObject;
        assert_eq!(
            spliced(r#"{"t":1}"#, r#"{"id":"a"}"#, &j),
            r#"{"t":1,"id":"a"}"#
        );
        assert_eq!(spliced(r#"{ }  "#, r#" {"id":"a"} "#, &j), r#"{ "id":"a"}"#);
        assert_eq!(spliced(r#"{"t":1}"#, "{}", &j), r#"{"t":1}"#);
        assert_eq!(spliced(r#"{"t":1}"#, "not json", &j), r#"{"t":1}"#);
        assert_eq!(spliced("[1,2]", r#"{"id":"a"}"#, &j), "[1,2]");
    }

    #[test]
    fn raw_keys_become_an_escaped_string_field() {
        let r = KeySplice::RawAs("sensor_id".into());
        assert_eq!(
            spliced(r#"{"t":1}"#, "s-\"1\"\n", &r),
            r#"{"t":1,"sensor_id":"s-\"1\"\u000a"}"#
        );
    }
}
