//! Where a Kafka read starts and ends: Flink's `scan.startup.*` and `scan.bounded.*` options.

use std::collections::BTreeMap;

use weir_planner::TableDef;

use crate::options::number_option;

/// `scan.startup.mode`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Startup {
    Earliest,
    Latest,
    GroupOffsets,
    Timestamp(i64),
    /// Partition -> first offset; partitions not named start at the earliest offset.
    Specific(BTreeMap<i32, i64>),
}

/// `scan.bounded.mode` (end offsets are exclusive, as in Flink).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bounded {
    Unbounded,
    Latest,
    Timestamp(i64),
    Specific(BTreeMap<i32, i64>),
}

/// `'partition:0,offset:42;partition:1,offset:17'`.
pub(crate) fn parse_specific(key: &str, v: &str) -> Result<BTreeMap<i32, i64>, String> {
    let bad = || {
        format!("option '{key}' must look like 'partition:0,offset:42;partition:1,offset:17', not '{v}'")
    };
    let mut out = BTreeMap::new();
    for part in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let mut p = None;
        let mut o = None;
        for kv in part.split(',') {
            let (k, val) = kv.split_once(':').ok_or_else(bad)?;
            match k.trim() {
                "partition" => p = Some(val.trim().parse::<i32>().map_err(|_| bad())?),
                "offset" => o = Some(val.trim().parse::<i64>().map_err(|_| bad())?),
                _ => return Err(bad()),
            }
        }
        out.insert(p.ok_or_else(bad)?, o.ok_or_else(bad)?);
    }
    Ok(out)
}

fn millis(table: &TableDef, key: &str, mode: &str) -> Result<i64, String> {
    number_option::<i64>(table, key)?
        .ok_or_else(|| format!("'{mode}' mode needs the option '{key}'"))
}

pub(crate) fn startup(table: &TableDef) -> Result<Startup, String> {
    let mode = table
        .option("scan.startup.mode")
        .unwrap_or("group-offsets")
        .to_ascii_lowercase();
    Ok(match mode.as_str() {
        "earliest-offset" => Startup::Earliest,
        "latest-offset" => Startup::Latest,
        "group-offsets" => Startup::GroupOffsets,
        "timestamp" => {
            Startup::Timestamp(millis(table, "scan.startup.timestamp-millis", "timestamp")?)
        }
        "specific-offsets" => {
            let key = "scan.startup.specific-offsets";
            let v = table
                .option(key)
                .ok_or_else(|| format!("'specific-offsets' mode needs the option '{key}'"))?;
            Startup::Specific(parse_specific(key, v)?)
        }
        other => {
            return Err(format!(
                "option 'scan.startup.mode' must be earliest-offset, latest-offset, group-offsets, \
                 timestamp or specific-offsets, not '{other}'"
            ))
        }
    })
}

pub(crate) fn bounded(table: &TableDef) -> Result<Bounded, String> {
    let Some(mode) = table.option("scan.bounded.mode") else {
        return Ok(Bounded::Unbounded);
    };
    Ok(match mode.to_ascii_lowercase().as_str() {
        "unbounded" => Bounded::Unbounded,
        "latest-offset" => Bounded::Latest,
        "timestamp" => Bounded::Timestamp(millis(table, "scan.bounded.timestamp-millis", "timestamp")?),
        "specific-offsets" => {
            let key = "scan.bounded.specific-offsets";
            let v = table.option(key).ok_or_else(|| format!("'specific-offsets' mode needs the option '{key}'"))?;
            Bounded::Specific(parse_specific(key, v)?)
        }
        other => {
            return Err(format!(
                "option 'scan.bounded.mode' must be latest-offset, timestamp or specific-offsets, not '{other}'"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_offsets() {
        let m = parse_specific("k", "partition:0,offset:42;partition:1,offset:17").unwrap();
        assert_eq!(m, BTreeMap::from([(0, 42), (1, 17)]));
        assert!(parse_specific("k", "0:42").unwrap_err().contains("'k'"));
    }
}
