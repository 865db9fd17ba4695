//! `weir-connectors`: the built-in sources and sinks of Weir, and the value formatting they
//! share with the shell.
//!
//! Sources: `filesystem` (bounded JSON lines / CSV / Parquet files), `kafka`, `mqtt`, `jdbc` (a
//! bounded PostgreSQL read, and PostgreSQL lookups) and `datagen`. Sinks: `print`, `blackhole`,
//! `filesystem`, `kafka`, `upsert-kafka` (updating results), `mqtt` and `jdbc` (PostgreSQL,
//! appending or upserting). Each connector lives in its own module and implements the factory
//! traits of `weir_engine::connector`; [`register_defaults`] makes them known to an engine.

pub mod blackhole;
pub mod datagen;
pub mod filesystem;
pub mod format;
pub mod jdbc;
pub mod kafka;
mod lines;
pub mod mqtt;
mod options;
pub mod print;
mod timestamps;

#[cfg(test)]
mod test_util;

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;

/// Internals the integration tests drive directly (not part of the API).
#[doc(hidden)]
pub mod testing {
    pub use crate::kafka::recovery_scan::visible_seqs;
}

use std::sync::Arc;

use weir_engine::connector::ConnectorRegistry;

pub use blackhole::BlackholeSinkFactory;
pub use datagen::DatagenSourceFactory;
pub use filesystem::{FilesystemSinkFactory, FilesystemSourceFactory};
pub use jdbc::{JdbcLookupFactory, JdbcSinkFactory, JdbcSourceFactory};
pub use kafka::{KafkaSinkFactory, KafkaSourceFactory, UpsertKafkaSinkFactory};
pub use mqtt::{MqttSinkFactory, MqttSourceFactory};
pub use print::PrintSinkFactory;

/// Register every built-in connector in `registry`.
pub fn register_defaults(registry: &mut ConnectorRegistry) {
    registry.register_source(Arc::new(FilesystemSourceFactory));
    registry.register_source(Arc::new(DatagenSourceFactory));
    registry.register_source(Arc::new(KafkaSourceFactory));
    registry.register_source(Arc::new(MqttSourceFactory));
    registry.register_source(Arc::new(JdbcSourceFactory));
    registry.register_lookup(Arc::new(JdbcLookupFactory));
    registry.register_sink(Arc::new(FilesystemSinkFactory));
    registry.register_sink(Arc::new(KafkaSinkFactory));
    registry.register_sink(Arc::new(UpsertKafkaSinkFactory));
    registry.register_sink(Arc::new(MqttSinkFactory));
    registry.register_sink(Arc::new(JdbcSinkFactory));
    registry.register_sink(Arc::new(PrintSinkFactory));
    registry.register_sink(Arc::new(BlackholeSinkFactory::new()));
}

/// The `WITH` option keys a built-in connector knows (for completion in the shell); families
/// like `properties.*` are given by their prefix.
pub fn option_keys(connector: &str) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = match connector {
        "filesystem" => filesystem::KNOWN_OPTIONS.to_vec(),
        "kafka" => kafka::KNOWN
            .iter()
            .copied()
            .chain(["properties.bootstrap.servers", "properties.group.id"])
            .collect(),
        "upsert-kafka" => vec![
            "connector",
            "topic",
            "properties.bootstrap.servers",
            "key.format",
            "value.format",
            "value.fields-include",
        ],
        "mqtt" => mqtt::options::KNOWN.to_vec(),
        "datagen" => datagen::spec::KNOWN_OPTIONS.to_vec(),
        "jdbc" => jdbc::option_keys(),
        "print" => print::KNOWN_OPTIONS.to_vec(),
        "blackhole" => vec!["connector"],
        _ => vec![],
    };
    keys.push("sink.rows-per-second");
    keys
}

/// A registry holding every built-in connector.
pub fn default_registry() -> ConnectorRegistry {
    let mut registry = ConnectorRegistry::new();
    register_defaults(&mut registry);
    registry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_registry_knows_every_connector() {
        let r = default_registry();
        assert_eq!(
            r.names(),
            vec![
                "blackhole",
                "datagen",
                "filesystem",
                "jdbc",
                "kafka",
                "mqtt",
                "print",
                "upsert-kafka"
            ]
        );
        assert!(r.source("filesystem").is_some() && r.sink("filesystem").is_some());
        assert!(r.source("datagen").is_some() && r.sink("datagen").is_none());
        assert!(r.sink("print").is_some() && r.source("print").is_none());
        assert!(r.sink("blackhole").is_some());
    }
}
