//! The `jdbc` connector for PostgreSQL, with the option names of Flink's JDBC connector, over
//! `tokio-postgres`.
//!
//! This module owns the options and the connection settings shared by the parts:
//! [`sink`] (append or upsert, batched through binary COPY, exactly-once in a checkpointing
//! job through [`commits`]), [`scan`] (a bounded read of a table or a query, split by a
//! numeric column) and [`lookup`] (the table side of a lookup join).

mod cells;
mod changes;
pub(crate) mod commits;
mod connect;
mod flush;
pub mod lookup;
mod read;
pub mod scan;
pub mod sink;
mod statements;
mod tls;

use std::time::Duration;

use weir_engine::connector::{check_known_options, required_option};
use weir_planner::interval::parse_duration;
use weir_planner::TableDef;

pub use connect::{ConnectSpec, Connections};
pub use lookup::JdbcLookupFactory;
pub use scan::JdbcSourceFactory;
pub use sink::JdbcSinkFactory;

/// The connector name in `'connector' = 'jdbc'`.
pub const NAME: &str = "jdbc";

/// Every option the connector knows.
pub(crate) const KNOWN: &[&str] = &[
    "connector",
    "url",
    "table-name",
    "username",
    "password",
    "driver",
    "connection.max-retry-timeout",
    "sink.buffer-flush.max-rows",
    "sink.buffer-flush.interval",
    "sink.max-retries",
    "sink.delivery-guarantee",
    "scan.query",
    "scan.fetch-size",
    "scan.partition.column",
    "scan.partition.num",
    "scan.partition.lower-bound",
    "scan.partition.upper-bound",
    "lookup.cache",
    "lookup.partial-cache.max-rows",
    "lookup.partial-cache.expire-after-write",
    "lookup.partial-cache.expire-after-access",
    "lookup.partial-cache.cache-missing-key",
    "lookup.max-retries",
];

/// Options every part shares: where the database is and which table.
#[derive(Debug, Clone)]
pub struct JdbcOptions {
    /// How to connect (host, port, database, user, password).
    pub connect: ConnectSpec,
    /// `'table-name'`, possibly schema-qualified (`public.readings`).
    pub table_name: Option<String>,
}

impl JdbcOptions {
    /// Parse and check the shared options.
    pub fn parse(table: &TableDef) -> Result<Self, String> {
        check_known_options(table, KNOWN, &[])?;
        if let Some(d) = table.option("driver") {
            if !d.to_ascii_lowercase().contains("postgres") {
                return Err(format!(
                    "option 'driver' = '{d}': Weir's jdbc connector speaks PostgreSQL only"
                ));
            }
        }
        let url = required_option(table, "url")?;
        let mut connect = ConnectSpec::parse(
            url,
            table.option("username"),
            table.option("password"),
            &table.name,
        )?;
        connect.retry_timeout =
            duration_option(table, "connection.max-retry-timeout", connect.retry_timeout)?;
        Ok(Self {
            connect,
            table_name: table.option("table-name").map(str::to_string),
        })
    }

    /// The `'table-name'`, required by the sink and the lookup.
    pub fn require_table(&self) -> Result<&str, String> {
        self.table_name
            .as_deref()
            .ok_or_else(|| "connector 'jdbc' needs the option 'table-name'".to_string())
    }
}

/// A duration option (`'1 s'`, `'500 ms'`), or `default` when absent.
pub(crate) fn duration_option(
    table: &TableDef,
    key: &str,
    default: Duration,
) -> Result<Duration, String> {
    match table.option(key) {
        None => Ok(default),
        Some(v) => {
            let ns = parse_duration(v).map_err(|e| format!("option '{key}': {e}"))?;
            if ns < 0 {
                return Err(format!("option '{key}' must not be negative, not '{v}'"));
            }
            Ok(Duration::from_nanos(ns as u64))
        }
    }
}

/// `name` quoted as a PostgreSQL identifier; a dotted name is quoted part by part
/// (`public.readings` -> `"public"."readings"`).
pub(crate) fn quote_path(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// One identifier in double quotes, inner quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.trim_matches('"').replace('"', "\"\""))
}

/// The option keys of the connector (shell completion).
pub fn option_keys() -> Vec<&'static str> {
    KNOWN.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::table;

    #[test]
    fn identifiers_are_quoted_part_by_part() {
        assert_eq!(quote_path("public.readings"), "\"public\".\"readings\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_path("\"Mixed\""), "\"Mixed\"");
    }

    #[test]
    fn options_are_checked_with_their_names() {
        let t = table(&[("connector", "jdbc")], &[]);
        let err = JdbcOptions::parse(&t).unwrap_err();
        assert_eq!(err, "connector 'jdbc' needs the option 'url'");
        let t = table(
            &[
                ("connector", "jdbc"),
                ("url", "jdbc:mysql://h/db"),
                ("table-name", "t"),
            ],
            &[],
        );
        let err = JdbcOptions::parse(&t).unwrap_err();
        assert!(err.contains("expected jdbc:postgresql://"), "{err}");
        let t = table(
            &[
                ("connector", "jdbc"),
                ("url", "jdbc:postgresql://h/db"),
                ("driver", "com.mysql.cj.jdbc.Driver"),
            ],
            &[],
        );
        let err = JdbcOptions::parse(&t).unwrap_err();
        assert!(err.contains("PostgreSQL only"), "{err}");
        let t = table(
            &[
                ("connector", "jdbc"),
                ("url", "jdbc:postgresql://h/db"),
                ("table-name", "t"),
                ("sink.max-retries", "x"),
            ],
            &[],
        );
        let err = sink::SinkOptions::parse(&t).unwrap_err();
        assert_eq!(err, "option 'sink.max-retries' must be a number, not 'x'");
        let t = table(
            &[("connector", "jdbc"), ("url", "x"), ("lookup.typo", "1")],
            &[],
        );
        let err = JdbcOptions::parse(&t).unwrap_err();
        assert!(err.starts_with("unknown option 'lookup.typo'"), "{err}");
        let t = table(
            &[
                ("connector", "jdbc"),
                ("url", "postgres://h/db"),
                ("connection.max-retry-timeout", "5 s"),
            ],
            &[],
        );
        let o = JdbcOptions::parse(&t).unwrap();
        assert_eq!(o.connect.retry_timeout, Duration::from_secs(5));
    }
}
