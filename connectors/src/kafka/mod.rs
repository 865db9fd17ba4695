//! The `kafka` connector over rdkafka (librdkafka), with Flink's option names.
//!
//! This module owns the options shared by source and sink (`topic`, `properties.*`, `format`);
//! reading lives in [`source`] (manual partition assignment, bounded reads, per-partition
//! watermarks, dead letters with topic/partition/offset) and writing in [`sink`].

mod dead_letter;
mod handover;
mod key;
mod lag;
pub(crate) mod metadata;
mod offsets;
pub(crate) mod recovery_scan;
mod scan;
pub mod sink;
pub mod source;
pub(crate) mod transactional;
mod upsert;
mod upsert_state;
mod upsert_store;
pub(crate) mod writer;

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use weir_engine::connector::{check_known_options, required_option};
use weir_engine::observe::dead_letter::OnError;
use weir_planner::TableDef;

use crate::filesystem::{CsvOptions, Format};
use crate::options::{bool_option, char_option};

pub use sink::KafkaSinkFactory;
pub use source::KafkaSourceFactory;
pub use upsert::{UpsertKafkaSinkFactory, UPSERT_NAME};

/// The connector name in `'connector' = 'kafka'`.
pub const NAME: &str = "kafka";

pub(crate) const KNOWN: &[&str] = &[
    "connector",
    "topic",
    "format",
    "format.on-error",
    "key.format",
    "key.fields",
    "value.fields-include",
    "scan.startup.mode",
    "scan.startup.timestamp-millis",
    "scan.startup.specific-offsets",
    "scan.bounded.mode",
    "scan.bounded.timestamp-millis",
    "scan.bounded.specific-offsets",
    "scan.watermark.idle-timeout",
    "scan.records-per-second",
    "sink.partitioner",
    "sink.delivery-guarantee",
    "sink.transactional-id-prefix",
    "csv.field-delimiter",
    "csv.quote-character",
    "json.timestamp-format.standard",
    "json.ignore-parse-errors",
    "timestamp.unit",
    "dead-letter.topic",
    "late-data.topic",
    "timestamp.max-future",
    "timestamp.min",
];

/// What source and sink share.
#[derive(Debug, Clone)]
pub(crate) struct KafkaOptions {
    pub topics: Vec<String>,
    pub properties: BTreeMap<String, String>,
    pub format: Format,
    /// `'format' = 'raw'`: the whole value is the table's one STRING or BYTES column.
    pub raw: bool,
    pub csv: CsvOptions,
    pub on_error: OnError,
}

impl KafkaOptions {
    pub(crate) fn parse(table: &TableDef) -> Result<KafkaOptions, String> {
        check_known_options(table, KNOWN, &["properties."])?;
        let topics: Vec<String> = required_option(table, "topic")?
            .split(';')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if topics.is_empty() {
            return Err("option 'topic' must name at least one topic".into());
        }
        let properties: BTreeMap<String, String> = table
            .options
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("properties.")
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect();
        if !properties.contains_key("bootstrap.servers") {
            return Err(format!(
                "connector '{}' needs the option 'properties.bootstrap.servers'",
                table.connector().unwrap_or(NAME)
            ));
        }
        let format = match required_option(table, "format")?
            .to_ascii_lowercase()
            .as_str()
        {
            "json" | "raw" => Format::Json,
            "csv" => Format::Csv,
            other => {
                return Err(format!(
                    "option 'format' must be 'json', 'csv' or 'raw' for kafka, not '{other}'"
                ))
            }
        };
        let csv = CsvOptions {
            delimiter: char_option(table, "csv.field-delimiter", b',')?,
            quote: char_option(table, "csv.quote-character", b'"')?,
            allow_comments: false,
            ignore_first_line: false,
        };
        let raw = table
            .option("format")
            .is_some_and(|f| f.eq_ignore_ascii_case("raw"));
        if raw {
            check_raw(table)?;
        }
        let has_topic = table.option("dead-letter.topic").is_some();
        let mut on_error = OnError::parse_with_default(table.option("format.on-error"), has_topic)?;
        if on_error == OnError::DeadLetter && !has_topic {
            return Err("'format.on-error' = 'dead-letter' needs a 'dead-letter.topic'".into());
        }
        if bool_option(table, "json.ignore-parse-errors", false)? {
            on_error = OnError::Skip;
        }
        Ok(KafkaOptions {
            topics,
            properties,
            format,
            raw,
            csv,
            on_error,
        })
    }
}

/// The raw format needs exactly one value column (physical, less the key's with `EXCEPT_KEY`)
/// of type STRING or BYTES.
fn check_raw(table: &TableDef) -> Result<(), String> {
    use datafusion::arrow::datatypes::DataType;
    let keys = key::KeyOptions::parse(table)?;
    let schema = table.physical_schema();
    let value: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| !(keys.except_key && keys.fields.contains(f.name())))
        .collect();
    let ok = value.len() == 1 && matches!(value[0].data_type(), DataType::Utf8 | DataType::Binary);
    if ok {
        Ok(())
    } else {
        Err("'format' = 'raw' needs exactly one value column of type STRING or BYTES".into())
    }
}

/// Set `key` unless the user already did through `properties.*`.
pub(crate) fn set_default(c: &mut ClientConfig, key: &str, value: &str) {
    if c.get(key).is_none() {
        c.set(key, value);
    }
}

impl KafkaOptions {
    /// A librdkafka configuration with every `properties.*` option.
    /// A sink writes one topic: a list (`'a;b'`) is refused rather than written to its first.
    pub(crate) fn check_one_topic(&self) -> Result<(), String> {
        match self.topics.len() {
            1 => Ok(()),
            n => Err(format!(
                "option 'topic': a kafka sink writes to one topic, and '{}' names {n}",
                self.topics.join(";")
            )),
        }
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}
