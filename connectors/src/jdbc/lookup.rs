//! The `jdbc` table as the lookup side of a lookup join: all the keys the engine asks for at
//! once go to PostgreSQL in one query, `WHERE k = ANY($1)` (several key columns:
//! `WHERE (a, b) IN (SELECT * FROM unnest($1, $2))`), the keys sent as typed arrays. Caching,
//! retries and metrics are the engine's ([`weir_engine::operators::lookup_join`]); a
//! connection the server dropped is replaced on the next lookup.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use tokio_postgres::types::ToSql;
use weir_engine::connector::{LookupContext, LookupFactory, LookupSource};
use weir_engine::operators::lookup_cache::CacheConfig;
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::cells::{Cell, PgKind};
use super::connect::Connections;
use super::read::{select_list, to_batch};
use super::statements::pg_error;
use super::{quote_ident, quote_path, JdbcOptions, NAME};

/// Creates `jdbc` lookup sources.
pub struct JdbcLookupFactory;

impl LookupFactory for JdbcLookupFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        JdbcOptions::parse(table)?.require_table()?;
        CacheConfig::parse(table).map(|_| ())
    }

    fn create(&self, ctx: LookupContext) -> Result<Box<dyn LookupSource>> {
        let o = JdbcOptions::parse(&ctx.table).map_err(|e| EngineError::connector(NAME, e))?;
        let table = o
            .require_table()
            .map_err(|e| EngineError::connector(NAME, e))?;
        let kinds = ctx
            .key_columns
            .iter()
            .map(|k| Ok(PgKind::of(ctx.schema.field_with_name(k)?.data_type())))
            .collect::<Result<Vec<_>>>()?;
        let sql = lookup_sql(&ctx.schema, &quote_path(table), &ctx.key_columns, &kinds);
        Ok(Box::new(JdbcLookup {
            conns: Connections::new(o.connect, 2),
            sql,
            schema: ctx.schema,
        }))
    }
}

/// The lookup statement: the table's columns of the rows whose key is one of the arrays'.
fn lookup_sql(schema: &SchemaRef, table: &str, keys: &[String], kinds: &[PgKind]) -> String {
    let param = |i: usize| format!("CAST(${} AS {}[])", i + 1, kinds[i].sql());
    // A key that travels as text (a DECIMAL) is compared as text.
    let col = |i: usize| match kinds[i] {
        PgKind::AsText => format!("CAST(q.{} AS text)", quote_ident(&keys[i])),
        _ => format!("q.{}", quote_ident(&keys[i])),
    };
    let cond = match keys {
        [_] => format!("{} = ANY({})", col(0), param(0)),
        _ => {
            let cols: Vec<String> = (0..keys.len()).map(col).collect();
            let arrays: Vec<String> = (0..keys.len()).map(param).collect();
            format!(
                "({}) IN (SELECT * FROM unnest({}))",
                cols.join(", "),
                arrays.join(", ")
            )
        }
    };
    format!(
        "SELECT {} FROM {table} AS q WHERE {cond}",
        select_list(schema)
    )
}

struct JdbcLookup {
    conns: Connections,
    sql: String,
    schema: SchemaRef,
}

impl LookupSource for JdbcLookup {
    fn lookup(&mut self, keys: RecordBatch) -> BoxFuture<'_, Result<RecordBatch>> {
        Box::pin(async move {
            let arrays: Vec<Vec<Cell>> = keys
                .columns()
                .iter()
                .map(|a| {
                    (0..a.len())
                        .map(|row| Cell {
                            array: a.as_ref(),
                            row,
                        })
                        .collect()
                })
                .collect();
            let params: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|a| a as _).collect();
            let client = self.conns.get().await?;
            let rows = client.query(&self.sql, &params).await.map_err(|e| {
                pg_error(&format!("lookup failed on {}", self.conns.spec().shown), e)
            })?;
            to_batch(&rows, &self.schema)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn one_key_uses_any_and_several_unnest() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("site", DataType::Utf8, true),
        ]));
        assert_eq!(
            lookup_sql(&schema, "\"sensors\"", &["id".into()], &[PgKind::Int8]),
            "SELECT CAST(q.\"id\" AS bigint), CAST(q.\"site\" AS text) FROM \"sensors\" AS q \
             WHERE q.\"id\" = ANY(CAST($1 AS bigint[]))"
        );
        let two = lookup_sql(
            &schema,
            "\"s\"",
            &["id".into(), "site".into()],
            &[PgKind::Int8, PgKind::Text],
        );
        assert!(
            two.ends_with("WHERE (q.\"id\", q.\"site\") IN (SELECT * FROM unnest(CAST($1 AS bigint[]), CAST($2 AS text[])))"),
            "{two}"
        );
    }
}
