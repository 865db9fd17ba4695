//! Table and view definitions: what `CREATE TABLE` / `CREATE VIEW` leave behind.
//!
//! The catalog owns the declared shape of every table (columns, computed columns, watermark,
//! connector options) so that the planner can resolve names and connectors can decode records.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::Location;

/// How a column gets its value.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnKind {
    /// Decoded from the record by the format.
    Physical,
    /// `name AS expr`, evaluated after decoding.
    Computed { expr_sql: String },
    /// `name TYPE METADATA [FROM 'key'] [VIRTUAL]`, supplied by the connector.
    Metadata { key: String, is_virtual: bool },
}

/// One declared column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    /// The Arrow type the column is held in.
    pub data_type: DataType,
    pub nullable: bool,
    /// The type as the user wrote it, normalised (`TIMESTAMP(3)`), for DESCRIBE.
    pub sql_type: String,
    pub kind: ColumnKind,
}

/// `WATERMARK FOR column AS expr`.
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkDef {
    /// The event-time (rowtime) column.
    pub column: String,
    /// The watermark expression as SQL text, e.g. `ts - INTERVAL '5' SECOND`.
    pub expr_sql: String,
}

/// A table declared with `CREATE TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<WatermarkDef>,
    pub primary_key: Vec<String>,
    /// `PARTITIONED BY (a, b)`: a file sink writes `a=..`/`b=..` directories, a file source
    /// reads those columns from them.
    pub partition_by: Vec<String>,
    /// `WITH (...)` options, keys as written.
    pub options: BTreeMap<String, String>,
    /// Where each option key was written, for error messages.
    pub option_locations: HashMap<String, Location>,
    /// Where the statement starts.
    pub location: Location,
}

impl TableDef {
    /// The `'connector'` option, if any.
    pub fn connector(&self) -> Option<&str> {
        self.option("connector")
    }

    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(|s| s.as_str())
    }

    /// Whether reading the table ends: a file, a Kafka topic read up to `scan.bounded.mode`, a
    /// `datagen` with `number-of-rows`. Other connectors are taken to be unbounded.
    pub fn is_bounded(&self) -> bool {
        match self.connector() {
            Some("filesystem") | Some("jdbc") => true,
            Some("kafka") => self
                .option("scan.bounded.mode")
                .is_some_and(|m| m != "unbounded"),
            Some("datagen") => self.option("number-of-rows").is_some(),
            _ => false,
        }
    }

    /// Location of an option key, falling back to the statement.
    pub fn option_location(&self, key: &str) -> Location {
        self.option_locations
            .get(key)
            .copied()
            .unwrap_or(self.location)
    }

    /// Columns a format decodes from each record (physical columns only, declaration order).
    pub fn physical_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Physical)
            .map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// The table's full schema as queries see it (all columns, declaration order).
    pub fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// `METADATA` columns in declaration order: a source appends them to each decoded batch,
    /// after the physical columns.
    pub fn metadata_columns(&self) -> Vec<&ColumnDef> {
        self.columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Metadata { .. }))
            .collect()
    }

    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// A view: a named query, planned again each time it is used.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewDef {
    pub name: String,
    pub query_sql: String,
    pub location: Location,
}

/// Tables and views by name (case-sensitive, as in Flink).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: BTreeMap<String, Arc<TableDef>>,
    pub views: BTreeMap<String, Arc<ViewDef>>,
}

impl Catalog {
    pub fn table(&self, name: &str) -> Option<&Arc<TableDef>> {
        self.tables.get(name)
    }

    pub fn view(&self, name: &str) -> Option<&Arc<ViewDef>> {
        self.views.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tables.contains_key(name) || self.views.contains_key(name)
    }
}
