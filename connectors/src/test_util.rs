//! Helpers for the crate's unit tests: table definitions, contexts and unique temp paths.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use weir_engine::connector::{SinkContext, SourceContext};
use weir_engine::observe::dead_letter::{DeadLetters, OnError};
use weir_engine::observe::metrics::JobMetrics;
use weir_planner::{ColumnDef, ColumnKind, TableDef};

/// A table named `t` with physical, nullable columns and the given options.
pub(crate) fn table(options: &[(&str, &str)], columns: &[(&str, DataType)]) -> TableDef {
    TableDef {
        name: "t".to_string(),
        columns: columns
            .iter()
            .map(|(name, dt)| ColumnDef {
                name: name.to_string(),
                data_type: dt.clone(),
                nullable: true,
                sql_type: dt.to_string(),
                kind: ColumnKind::Physical,
            })
            .collect(),
        watermark: None,
        primary_key: Vec::new(),
        partition_by: Vec::new(),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        option_locations: Default::default(),
        location: Default::default(),
    }
}

/// A source context over `table` with quiet dead letters using `on_error`.
pub(crate) fn source_ctx(table: TableDef, on_error: OnError, batch_size: usize) -> SourceContext {
    let dead_letters = DeadLetters::new(on_error);
    dead_letters.set_quiet(true);
    let schema = table.physical_schema();
    SourceContext {
        table: Arc::new(table),
        schema,
        used_columns: None,
        batch_size,
        dead_letters,
        metrics: Arc::new(JobMetrics::default()),
        restore: None,
        checkpointing: false,
        split: Default::default(),
    }
}

/// A sink context over `table`, receiving rows of the table's schema.
pub(crate) fn sink_ctx(table: TableDef, settings: &[(&str, &str)]) -> SinkContext {
    let schema = table.schema();
    SinkContext {
        table: Arc::new(table),
        schema,
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        metrics: Arc::new(JobMetrics::default()),
        checkpointing: false,
        restore: None,
        state_dir: None,
        upsert_key: None,
        subtask: weir_engine::checkpoint::TaskSlot::SINGLE,
    }
}

/// A fresh path under the system temp dir, unique per process and call.
pub(crate) fn temp_path(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("weir-connectors-{}-{n}-{name}", std::process::id()))
}
