//! The `filesystem` connector: bounded JSON-lines, CSV and Parquet files as a source, and a
//! file sink.
//!
//! This module owns what source and sink share: the option list (a table may be read and
//! written with the same `WITH` clause), the `format` value and path handling. Reading lives in
//! [`source`] (with chunked, line-exact decoding in `decode`) and `parquet_source`, writing in
//! [`sink`], `committing` and `parquet_sink`.

pub(crate) mod committing;
pub(crate) mod decode;
pub(crate) mod parquet_conform;
pub(crate) mod parquet_sink;
pub(crate) mod parquet_source;
pub mod sink;
pub mod source;
pub(crate) mod split;
pub(crate) mod split_source;
pub(crate) mod units;

use std::path::PathBuf;

use weir_engine::connector::{check_known_options, required_option};
use weir_engine::observe::dead_letter::OnError;
use weir_planner::TableDef;

use crate::options::{bool_option, char_option};

pub use sink::FilesystemSinkFactory;
pub use source::FilesystemSourceFactory;

/// The connector name in `'connector' = 'filesystem'`.
pub const NAME: &str = "filesystem";

/// Options the filesystem connector understands.
pub(crate) const KNOWN_OPTIONS: &[&str] = &[
    "connector",
    "path",
    "format",
    "format.on-error",
    "csv.field-delimiter",
    "csv.quote-character",
    "csv.allow-comments",
    "csv.ignore-first-line",
    "json.timestamp-format.standard",
    "scan.records-per-second",
    "source.split-size",
    "parquet.compression",
    "sink.rolling-policy.file-size",
    "sink.rolling-policy.rollover-interval",
];

/// The record format of the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Csv,
    /// Columnar files (`parquet_source.rs`, `parquet_sink.rs`).
    Parquet,
}

/// CSV settings (Flink's `csv.*` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CsvOptions {
    pub delimiter: u8,
    pub quote: u8,
    /// `#` starts a comment line.
    pub allow_comments: bool,
    /// The first line of each file is a header: skipped when reading, written by the sink.
    pub ignore_first_line: bool,
}

/// Everything the options of a filesystem table say.
#[derive(Debug, Clone)]
pub(crate) struct FileOptions {
    pub path: String,
    pub format: Format,
    pub csv: CsvOptions,
    pub on_error: OnError,
    /// `scan.records-per-second`: replay a file at a fixed pace.
    pub rate: Option<f64>,
    /// `source.split-size`: the bytes per segment when several subtasks share the files.
    pub split_bytes: u64,
}

impl FileOptions {
    /// Parse and check the table's options; the error names the offending option.
    pub(crate) fn parse(table: &TableDef) -> Result<FileOptions, String> {
        if table.option("source.monitor-interval").is_some() {
            return Err(
                "option 'source.monitor-interval' is not supported: the filesystem \
                        source reads the files present when the job starts and then ends"
                    .to_string(),
            );
        }
        check_known_options(table, KNOWN_OPTIONS, &[])?;
        let path = required_option(table, "path")?.to_string();
        if path.trim().is_empty() {
            return Err("option 'path' must not be empty".to_string());
        }
        let format = parse_format(table)?;
        let csv = CsvOptions {
            delimiter: char_option(table, "csv.field-delimiter", b',')?,
            quote: char_option(table, "csv.quote-character", b'"')?,
            allow_comments: bool_option(table, "csv.allow-comments", false)?,
            ignore_first_line: bool_option(table, "csv.ignore-first-line", false)?,
        };
        let on_error = OnError::parse(table.option("format.on-error"))?;
        let rate = crate::options::number_option::<f64>(table, "scan.records-per-second")?
            .filter(|r| *r > 0.0);
        let split_bytes = split::split_bytes(table)?;
        Ok(FileOptions {
            path,
            format,
            csv,
            on_error,
            rate,
            split_bytes,
        })
    }

    /// The path as a local file name: a `file://` prefix is dropped; relative paths are taken
    /// against the current working directory.
    pub(crate) fn local_path(&self) -> PathBuf {
        let p = self.path.strip_prefix("file://").unwrap_or(&self.path);
        let p = PathBuf::from(p);
        if p.is_absolute() {
            return p;
        }
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(p),
            Err(_) => p,
        }
    }
}

/// `'format'` (`json` or `csv`) and the options of that format that need checking.
fn parse_format(table: &TableDef) -> Result<Format, String> {
    let format = match required_option(table, "format")?
        .to_ascii_lowercase()
        .as_str()
    {
        "json" => Format::Json,
        "csv" => Format::Csv,
        "parquet" => Format::Parquet,
        other => {
            return Err(format!(
                "option 'format' must be 'json', 'csv' or 'parquet' for connector 'filesystem', \
                 not '{other}'"
            ))
        }
    };
    if format == Format::Parquet {
        parquet_sink::writer_options(table)?;
    }
    if let Some(v) = table.option("json.timestamp-format.standard") {
        if !matches!(v.to_ascii_uppercase().as_str(), "SQL" | "ISO-8601") {
            return Err(format!(
                "option 'json.timestamp-format.standard' must be 'SQL' or 'ISO-8601', not '{v}'"
            ));
        }
    }
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::table;

    #[test]
    fn parses_options() {
        let t = table(
            &[
                ("connector", "filesystem"),
                ("path", "file:///tmp/x"),
                ("format", "CSV"),
                ("csv.field-delimiter", ";"),
                ("csv.ignore-first-line", "true"),
                ("format.on-error", "fail"),
            ],
            &[],
        );
        let o = FileOptions::parse(&t).unwrap();
        assert_eq!(o.format, Format::Csv);
        assert_eq!(o.csv.delimiter, b';');
        assert!(o.csv.ignore_first_line);
        assert_eq!(o.on_error, OnError::Fail);
        assert_eq!(o.local_path(), PathBuf::from("/tmp/x"));
    }

    #[test]
    fn relative_path_resolves_against_cwd() {
        let t = table(&[("path", "data/in.jsonl"), ("format", "json")], &[]);
        let o = FileOptions::parse(&t).unwrap();
        assert_eq!(
            o.local_path(),
            std::env::current_dir().unwrap().join("data/in.jsonl")
        );
    }

    #[test]
    fn rejects_bad_options() {
        let err = |opts: &[(&str, &str)]| FileOptions::parse(&table(opts, &[])).unwrap_err();
        let e = err(&[("connector", "filesystem"), ("format", "json")]);
        assert!(e.contains("'path'"), "{e}");
        let e = err(&[
            ("connector", "filesystem"),
            ("path", "x"),
            ("format", "json"),
            ("pth", "y"),
        ]);
        assert!(e.contains("unknown option 'pth'"), "{e}");
        let e = err(&[("path", "x"), ("format", "avro")]);
        assert!(e.contains("'format'") && e.contains("avro"), "{e}");
        let e = err(&[
            ("path", "x"),
            ("format", "json"),
            ("source.monitor-interval", "1s"),
        ]);
        assert!(
            e.contains("'source.monitor-interval' is not supported"),
            "{e}"
        );
        let e = err(&[
            ("path", "x"),
            ("format", "json"),
            ("format.on-error", "ignore"),
        ]);
        assert!(e.contains("'format.on-error'"), "{e}");
        let e = err(&[
            ("path", "x"),
            ("format", "csv"),
            ("csv.field-delimiter", ";;"),
        ]);
        assert!(e.contains("'csv.field-delimiter'"), "{e}");
    }
}
