//! The sink's target table and the statements that write to it.
//!
//! [`Target::describe`] reads the target's column types from the catalog once, so a missing
//! table or column stops the job at start with the statement that would create it. A write
//! ([`Target::apply`]) is one binary COPY into a staging table (a temporary table of the
//! connection, emptied at commit) followed by one `INSERT … SELECT` (with `ON CONFLICT (key)
//! DO UPDATE` for an upsert sink) and, when rows leave, one `DELETE … USING`: three statements
//! however many rows, all in the caller's transaction.

use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::Schema;
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;
use weir_engine::{EngineError, Result};

use super::cells::{Cell, PgKind};
use super::changes::Changes;
use super::{quote_ident, quote_path, NAME};

/// One column of the sink, as the target table declares it.
#[derive(Debug, Clone)]
struct TargetColumn {
    /// The target's column name, quoted.
    quoted: String,
    /// The target's type (`numeric(10,2)`), what staged values are cast to.
    pg_type: String,
    /// How the sink's values travel.
    kind: PgKind,
}

/// The target table of a sink.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    table: String,
    columns: Vec<TargetColumn>,
    /// Positions (in `columns`) of the primary key; empty for an append sink.
    key: Vec<usize>,
    stage: String,
}

impl Target {
    /// Look up `table_name` for rows of `schema`, with the primary key `key` (sink column
    /// names) for an upsert sink.
    pub(crate) async fn describe(
        client: &Client,
        table_name: &str,
        schema: &Schema,
        key: &[String],
    ) -> Result<Self> {
        let found = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
                 FROM pg_attribute a WHERE a.attrelid = to_regclass($1) \
                 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&quote_path(table_name)],
            )
            .await
            .map_err(|e| pg_error("cannot read the table's columns", e))?;
        let found: Vec<(String, String)> = found.iter().map(|r| (r.get(0), r.get(1))).collect();
        if found.is_empty() {
            return Err(EngineError::connector(
                NAME,
                format!(
                    "table '{table_name}' does not exist; create it first, e.g.: {}",
                    create_statement(table_name, schema, key)
                ),
            ));
        }
        let columns = schema
            .fields()
            .iter()
            .map(|f| target_column(table_name, &found, f.name(), f.data_type()))
            .collect::<Result<Vec<_>>>()?;
        let key = key
            .iter()
            .map(|k| {
                schema
                    .index_of(k)
                    .map_err(|e| EngineError::connector(NAME, e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let stage = format!("weir_stage_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        Ok(Self {
            table: quote_path(table_name),
            columns,
            key,
            stage,
        })
    }

    /// Whether rows are upserted by a primary key.
    pub(crate) fn is_upsert(&self) -> bool {
        !self.key.is_empty()
    }

    /// Stage `staged` and apply it to the target, in `client`'s current transaction.
    pub(crate) async fn apply(&self, client: &Client, changes: &Changes) -> Result<()> {
        let op = if self.is_upsert() {
            ", weir_delete boolean"
        } else {
            ""
        };
        let ddl = format!(
            "CREATE TEMP TABLE IF NOT EXISTS {} ({}{op}) ON COMMIT DELETE ROWS",
            self.stage,
            self.columns
                .iter()
                .map(|c| format!("{} {}", c.quoted, c.kind.sql()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        client
            .batch_execute(&ddl)
            .await
            .map_err(|e| pg_error("cannot create the staging table", e))?;
        self.copy(client, changes).await?;
        client
            .batch_execute(&self.insert_sql())
            .await
            .map_err(|e| pg_error(&self.write_failed(), e))?;
        if changes.deletes.as_ref().is_some_and(|d| d.contains(&true)) {
            client
                .batch_execute(&self.delete_sql())
                .await
                .map_err(|e| pg_error("cannot delete rows", e))?;
        }
        Ok(())
    }

    async fn copy(&self, client: &Client, changes: &Changes) -> Result<()> {
        let names: Vec<&str> = self.columns.iter().map(|c| c.quoted.as_str()).collect();
        let mut types: Vec<Type> = self.columns.iter().map(|c| c.kind.pg_type()).collect();
        let mut copy = format!("COPY {} ({}", self.stage, names.join(", "));
        if self.is_upsert() {
            types.push(Type::BOOL);
            copy.push_str(", weir_delete");
        }
        copy.push_str(") FROM STDIN (FORMAT binary)");
        let sink = client
            .copy_in(&copy)
            .await
            .map_err(|e| pg_error("cannot start COPY", e))?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        let row = AtomicUsize::new(0);
        let mut cells: Vec<RowCell> = changes
            .rows
            .columns()
            .iter()
            .map(|a| RowCell::Value(a.as_ref(), &row))
            .collect();
        if self.is_upsert() {
            cells.push(RowCell::Delete(changes.deletes.as_deref(), &row));
        }
        let values: Vec<&(dyn ToSql + Sync)> = cells.iter().map(|c| c as _).collect();
        for r in 0..changes.rows.num_rows() {
            row.store(r, Ordering::Relaxed);
            writer
                .as_mut()
                .write(&values)
                .await
                .map_err(|e| pg_error("COPY failed", e))?;
        }
        writer
            .finish()
            .await
            .map_err(|e| pg_error("COPY failed", e))?;
        Ok(())
    }

    fn insert_sql(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.quoted.as_str()).collect();
        let values: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("CAST(s.{} AS {})", c.quoted, c.pg_type))
            .collect();
        let mut sql = format!(
            "INSERT INTO {} ({}) SELECT {} FROM {} s",
            self.table,
            names.join(", "),
            values.join(", "),
            self.stage
        );
        if self.is_upsert() {
            let key: Vec<&str> = self.key.iter().map(|&k| names[k]).collect();
            let set: Vec<String> = (0..names.len())
                .filter(|i| !self.key.contains(i))
                .map(|i| format!("{0} = EXCLUDED.{0}", names[i]))
                .collect();
            sql.push_str(&format!(
                " WHERE NOT s.weir_delete ON CONFLICT ({}) DO ",
                key.join(", ")
            ));
            match set.is_empty() {
                true => sql.push_str("NOTHING"),
                false => sql.push_str(&format!("UPDATE SET {}", set.join(", "))),
            }
        }
        sql
    }

    fn delete_sql(&self) -> String {
        let cond: Vec<String> = self
            .key
            .iter()
            .map(|&k| {
                let c = &self.columns[k];
                format!("t.{0} = CAST(s.{0} AS {1})", c.quoted, c.pg_type)
            })
            .collect();
        format!(
            "DELETE FROM {} t USING {} s WHERE s.weir_delete AND {}",
            self.table,
            self.stage,
            cond.join(" AND ")
        )
    }

    fn write_failed(&self) -> String {
        match self.is_upsert() {
            true => format!(
                "cannot upsert into {} (it needs a PRIMARY KEY or UNIQUE constraint on the sink's primary key)",
                self.table
            ),
            false => format!("cannot insert into {}", self.table),
        }
    }
}

fn target_column(
    table: &str,
    found: &[(String, String)],
    name: &str,
    dt: &datafusion::arrow::datatypes::DataType,
) -> Result<TargetColumn> {
    let hit = found
        .iter()
        .find(|(n, _)| n == name)
        .or_else(|| found.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)));
    let Some((n, ty)) = hit else {
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        return Err(EngineError::connector(
            NAME,
            format!(
                "column '{name}' is not a column of table '{table}' (it has: {})",
                names.join(", ")
            ),
        ));
    };
    Ok(TargetColumn {
        quoted: quote_ident(n),
        pg_type: ty.clone(),
        kind: PgKind::of(dt),
    })
}

/// A CREATE TABLE for rows of `schema`, shown when the target is missing.
fn create_statement(table: &str, schema: &Schema, key: &[String]) -> String {
    let mut cols: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                quote_ident(f.name()),
                PgKind::of(f.data_type()).sql()
            )
        })
        .collect();
    if !key.is_empty() {
        let k: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
        cols.push(format!("PRIMARY KEY ({})", k.join(", ")));
    }
    format!("CREATE TABLE {} ({})", quote_path(table), cols.join(", "))
}

/// A PostgreSQL error with what was being done, and the server's message and detail.
pub(crate) fn pg_error(doing: &str, e: tokio_postgres::Error) -> EngineError {
    let msg = match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{doing}: {} ({d})", db.message()),
            None => format!("{doing}: {}", db.message()),
        },
        None => format!("{doing}: {e}"),
    };
    EngineError::connector(NAME, msg)
}

/// A staged row's value at the row the shared counter points to: a column's, or whether the
/// row leaves.
#[derive(Debug)]
enum RowCell<'a> {
    Value(&'a dyn Array, &'a AtomicUsize),
    Delete(Option<&'a [bool]>, &'a AtomicUsize),
}

impl ToSql for RowCell<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        match self {
            RowCell::Value(array, row) => {
                let row = row.load(Ordering::Relaxed);
                Cell { array: *array, row }.to_sql(ty, out)
            }
            RowCell::Delete(flags, row) => {
                let row = row.load(Ordering::Relaxed);
                let flag = flags.is_some_and(|f| f.get(row).copied().unwrap_or(false));
                flag.to_sql(ty, out)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field};

    use super::*;

    fn target(key: Vec<usize>) -> Target {
        let col = |n: &str, t: &str, kind| TargetColumn {
            quoted: quote_ident(n),
            pg_type: t.to_string(),
            kind,
        };
        Target {
            table: quote_path("public.totals"),
            columns: vec![
                col("sensor", "text", PgKind::Text),
                col("total", "numeric(12,2)", PgKind::AsText),
            ],
            key,
            stage: "weir_stage_0".to_string(),
        }
    }

    #[test]
    fn upserts_cast_to_the_targets_types_and_deletes_match_the_key() {
        let t = target(vec![0]);
        assert_eq!(
            t.insert_sql(),
            "INSERT INTO \"public\".\"totals\" (\"sensor\", \"total\") SELECT CAST(s.\"sensor\" AS text), \
             CAST(s.\"total\" AS numeric(12,2)) FROM weir_stage_0 s WHERE NOT s.weir_delete \
             ON CONFLICT (\"sensor\") DO UPDATE SET \"total\" = EXCLUDED.\"total\""
        );
        assert_eq!(
            t.delete_sql(),
            "DELETE FROM \"public\".\"totals\" t USING weir_stage_0 s WHERE s.weir_delete AND \
             t.\"sensor\" = CAST(s.\"sensor\" AS text)"
        );
        let append = target(vec![]);
        assert!(!append.insert_sql().contains("ON CONFLICT"));
    }

    #[test]
    fn a_missing_table_is_shown_with_its_create_statement() {
        let schema = Schema::new(vec![
            Field::new("sensor", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]);
        assert_eq!(
            create_statement("totals", &schema, &["sensor".to_string()]),
            "CREATE TABLE \"totals\" (\"sensor\" text, \"n\" bigint, PRIMARY KEY (\"sensor\"))"
        );
    }
}
