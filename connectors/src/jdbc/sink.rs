//! The `jdbc` sink: rows into a PostgreSQL table.
//!
//! Without a primary key rows are appended (`INSERT`); with `PRIMARY KEY (k) NOT ENFORCED` they
//! are upserted (`INSERT … ON CONFLICT (k) DO UPDATE`, a `-D` deletes), so an updating result
//! keeps a live table current. Writes are batched ([`super::statements`]).
//!
//! In a checkpointing job the sink is exactly-once ([`super::commits`]): each checkpoint's rows
//! are written in one transaction with the checkpoint's id. Otherwise (or with
//! `'sink.delivery-guarantee' = 'at-least-once'`) rows are flushed every
//! `'sink.buffer-flush.max-rows'` rows or `'sink.buffer-flush.interval'` ([`super::flush`]).
//! Either way a failed write is retried `'sink.max-retries'` times on a fresh connection.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use tokio_postgres::Client;
use weir_engine::changelog::has_op;
use weir_engine::connector::{Sink, SinkContext, SinkFactory};
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::changes::reduce;
use super::commits::{CommitMark, CommittingSink};
use super::connect::Connections;
use super::flush::FlushingSink;
use super::statements::{pg_error, Target};
use super::{duration_option, JdbcOptions, NAME};
use crate::options::number_option;

/// The sink's options.
#[derive(Debug, Clone)]
pub(crate) struct SinkOptions {
    pub jdbc: JdbcOptions,
    pub table_name: String,
    /// `'sink.max-retries'`: how often a failed write is tried again.
    pub max_retries: u32,
    /// `'sink.buffer-flush.max-rows'` (0: no row limit).
    pub max_rows: usize,
    /// `'sink.buffer-flush.interval'` (zero: no time limit).
    pub interval: Duration,
    /// False with `'sink.delivery-guarantee' = 'at-least-once'`.
    pub exactly_once: bool,
}

impl SinkOptions {
    pub(crate) fn parse(table: &TableDef) -> Result<Self, String> {
        let jdbc = JdbcOptions::parse(table)?;
        let table_name = jdbc.require_table()?.to_string();
        let exactly_once = match table.option("sink.delivery-guarantee").map(str::to_ascii_lowercase).as_deref() {
            None | Some("exactly-once") => true,
            Some("at-least-once") | Some("none") => false,
            Some(other) => {
                return Err(format!(
                    "option 'sink.delivery-guarantee' must be exactly-once or at-least-once, not '{other}'"
                ))
            }
        };
        Ok(Self {
            jdbc,
            table_name,
            max_retries: number_option(table, "sink.max-retries")?.unwrap_or(3),
            max_rows: number_option(table, "sink.buffer-flush.max-rows")?.unwrap_or(100),
            interval: duration_option(table, "sink.buffer-flush.interval", Duration::from_secs(1))?,
            exactly_once,
        })
    }
}

/// Creates `jdbc` sinks.
pub struct JdbcSinkFactory;

impl SinkFactory for JdbcSinkFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        SinkOptions::parse(table).map(|_| ())
    }

    fn guarantee(&self, table: &TableDef, checkpointing: bool) -> &'static str {
        let eo = SinkOptions::parse(table).is_ok_and(|o| o.exactly_once);
        match checkpointing && eo {
            true => "exactly-once",
            false => "at-least-once",
        }
    }

    /// An updating result needs a primary key to upsert by.
    fn accepts_updates(&self, table: &TableDef) -> bool {
        !table.primary_key.is_empty()
    }

    fn create(&self, ctx: SinkContext) -> Result<Box<dyn Sink>> {
        let options =
            SinkOptions::parse(&ctx.table).map_err(|e| EngineError::connector(NAME, e))?;
        let writer = Writer::new(&ctx, &options);
        if ctx.checkpointing && options.exactly_once {
            return Ok(Box::new(CommittingSink::new(ctx, writer)?));
        }
        Ok(Box::new(FlushingSink::start(ctx, writer, &options)))
    }
}

/// Writes reduced buffers of rows to the target in transactions, with retries.
pub(crate) struct Writer {
    conns: Connections,
    table_name: String,
    data_schema: SchemaRef,
    key_names: Vec<String>,
    key: Vec<usize>,
    target: Option<Target>,
    max_retries: u32,
    /// Every `-U` has its `+U` (the planner derived an upsert key).
    paired_update_befores: bool,
}

impl Writer {
    fn new(ctx: &SinkContext, options: &SinkOptions) -> Self {
        let data_schema = match has_op(&ctx.schema) {
            true => Arc::new(Schema::new(ctx.schema.fields()[1..].to_vec())),
            false => ctx.schema.clone(),
        };
        let key_names = ctx.table.primary_key.clone();
        let key = key_names
            .iter()
            .filter_map(|k| data_schema.index_of(k).ok())
            .collect();
        Self {
            conns: Connections::new(options.jdbc.connect.clone(), 1),
            table_name: options.table_name.clone(),
            data_schema,
            key_names,
            key,
            target: None,
            max_retries: options.max_retries,
            paired_update_befores: ctx.upsert_key.is_some(),
        }
    }

    /// A live connection (reconnected if the server dropped it).
    pub(crate) async fn client(&mut self) -> Result<Arc<Client>> {
        self.conns.get().await
    }

    /// Write `batches` in one transaction, with the commit mark when given; returns the rows
    /// written, or `None` when the mark shows the checkpoint committed already.
    pub(crate) async fn write(
        &mut self,
        batches: &[RecordBatch],
        mark: Option<&CommitMark>,
    ) -> Result<Option<usize>> {
        let changes = reduce(
            batches,
            &self.data_schema,
            &self.key,
            self.paired_update_befores,
        )?;
        let mut attempt = 0;
        loop {
            match self.try_write(&changes, mark).await {
                Ok(r) => return Ok(r),
                Err(e) if attempt < self.max_retries => {
                    attempt += 1;
                    tracing::warn!(target: "weir::jdbc", "{e}; retry {attempt} of {}", self.max_retries);
                    tokio::time::sleep(Duration::from_millis(500) * attempt).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_write(
        &mut self,
        changes: &super::changes::Changes,
        mark: Option<&CommitMark>,
    ) -> Result<Option<usize>> {
        let client = self.client().await?;
        if self.target.is_none() {
            let t = Target::describe(
                &client,
                &self.table_name,
                &self.data_schema,
                &self.key_names,
            )
            .await?;
            self.target = Some(t);
        }
        let target = self.target.as_ref().expect("described");
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| pg_error("cannot begin", e))?;
        let r = in_transaction(&client, target, changes, mark).await;
        let end = if matches!(r, Ok(Some(_))) {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let ended = client.batch_execute(end).await;
        let n = r?;
        ended.map_err(|e| pg_error("cannot commit", e))?;
        Ok(n)
    }
}

async fn in_transaction(
    client: &Client,
    target: &Target,
    changes: &super::changes::Changes,
    mark: Option<&CommitMark>,
) -> Result<Option<usize>> {
    if let Some(m) = mark {
        if m.is_done(client).await? {
            return Ok(None);
        }
    }
    target.apply(client, changes).await?;
    if let Some(m) = mark {
        m.record(client).await?;
    }
    Ok(Some(changes.rows.num_rows()))
}
