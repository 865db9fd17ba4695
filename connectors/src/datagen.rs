//! The `datagen` source: Flink's generator of random and sequence rows, for demos and tests.
//!
//! Options (as in Flink): `rows-per-second` (default 10000), `number-of-rows` (bounded when
//! set), and per column `fields.<col>.kind` = `random` | `sequence`, `.min`/`.max`, `.length`,
//! `.max-past`, `.start`/`.end`, `.null-rate`. A sequence column makes the source bounded at
//! `end - start + 1` rows. This module owns the factory and the pacing; option checking is in
//! `spec`, value generation in `generate`.

mod generate;
pub(crate) mod spec;

use std::time::Duration;

use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::time::Instant;
use weir_engine::connector::{Source, SourceContext, SourceEvent, SourceFactory};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use generate::FieldGen;
use spec::DatagenSpec;

/// The connector name in `'connector' = 'datagen'`.
pub const NAME: &str = "datagen";

/// Creates `datagen` sources.
#[derive(Debug, Default, Clone, Copy)]
pub struct DatagenSourceFactory;

impl SourceFactory for DatagenSourceFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        DatagenSpec::parse(table).map(|_| ())
    }

    fn is_bounded(&self, table: &TableDef) -> bool {
        DatagenSpec::parse(table).is_ok_and(|s| s.total_rows.is_some())
    }

    /// Any number of subtasks: each generates its share of the rows, at its share of the rate.
    fn max_splits(&self, _table: &TableDef) -> usize {
        usize::MAX
    }

    fn create(&self, ctx: SourceContext) -> Result<Box<dyn Source>> {
        let spec = DatagenSpec::parse(&ctx.table).map_err(|m| EngineError::connector(NAME, m))?;
        let share = Share::of(spec.total_rows, ctx.split);
        let rate = spec.rows_per_second / ctx.split.count as f64;
        let mut gens = Vec::new();
        for (i, field) in ctx.schema.fields().iter().enumerate() {
            let mut f = spec.field(field.name()).cloned().ok_or_else(|| {
                EngineError::connector(NAME, format!("no generator for column '{}'", field.name()))
            })?;
            f.data_type = field.data_type().clone();
            gens.push(FieldGen::new(f, i));
        }
        // At least ~10 batches a second at low rates, so rows trickle in rather than burst.
        let per_tenth = (rate / 10.0).ceil() as usize;
        let batch_rows = ctx.batch_size.max(1).min(per_tenth.max(1));
        // A restarted generator continues with the row after the last one checkpointed.
        let ctx_restore = match &ctx.restore {
            Some(p) => p
                .trim()
                .parse::<u64>()
                .map_err(|_| EngineError::State(format!("unreadable datagen position '{p}'")))?,
            None => 0,
        };
        Ok(Box::new(DatagenSource {
            ctx,
            gens,
            total: share.rows,
            first_row: share.first_row,
            rate,
            batch_rows,
            emitted: ctx_restore,
            started: None,
        }))
    }
}

/// The rows one subtask generates: a contiguous part of the sequence, so the rows of all
/// subtasks together are the rows one source would generate.
struct Share {
    rows: Option<u64>,
    first_row: u64,
}

impl Share {
    fn of(total: Option<u64>, split: weir_engine::connector::Split) -> Self {
        let (i, n) = (split.index as u128, split.count.max(1) as u128);
        match total {
            Some(t) => {
                let at = |k: u128| (u128::from(t) * k / n) as u64;
                Share {
                    rows: Some(at(i + 1) - at(i)),
                    first_row: at(i),
                }
            }
            // Endless: each subtask numbers its rows in a range of its own.
            None => Share {
                rows: None,
                first_row: (i as u64) << 48,
            },
        }
    }
}

/// A running datagen source.
struct DatagenSource {
    ctx: SourceContext,
    gens: Vec<FieldGen>,
    /// Rows this subtask produces in all; `None`: unbounded.
    total: Option<u64>,
    /// The number of this subtask's first row in the whole sequence.
    first_row: u64,
    rate: f64,
    batch_rows: usize,
    emitted: u64,
    /// When the first batch was produced; batch `k` is due at `started + rows_before_k / rate`.
    started: Option<Instant>,
}

impl DatagenSource {
    fn generate(&mut self, n: usize) -> Result<RecordBatch, ArrowError> {
        let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let first = self.first_row + self.emitted;
        let columns = self
            .gens
            .iter_mut()
            .map(|g| g.column(first, n, now_ns))
            .collect::<Result<Vec<_>, _>>()?;
        let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(n));
        RecordBatch::try_new_with_options(self.ctx.schema.clone(), columns, &options)
    }

    async fn next_batch(&mut self) -> Result<SourceEvent> {
        let remaining = self
            .total
            .map_or(u64::MAX, |t| t.saturating_sub(self.emitted));
        if remaining == 0 {
            return Ok(SourceEvent::End);
        }
        let n = (self.batch_rows as u64).min(remaining) as usize;
        let first = self.emitted;
        let started = *self.started.get_or_insert_with(|| {
            // Pace from this run's start, as if the rows before it had been produced at the rate.
            let ahead = Duration::try_from_secs_f64(first as f64 / self.rate).unwrap_or_default();
            Instant::now()
                .checked_sub(ahead)
                .unwrap_or_else(Instant::now)
        });
        let offset = Duration::try_from_secs_f64(self.emitted as f64 / self.rate).ok();
        if let Some(due) = offset.and_then(|d| started.checked_add(d)) {
            tokio::time::sleep_until(due).await;
        }
        let batch = self
            .generate(n)
            .map_err(|e| EngineError::connector(NAME, e.to_string()))?;
        self.emitted += n as u64;
        JobMetrics::add(&self.ctx.metrics.rows_in, n);
        Ok(SourceEvent::Batch(batch))
    }
}

impl Source for DatagenSource {
    fn next(&mut self) -> BoxFuture<'_, Result<SourceEvent>> {
        self.next_batch().boxed()
    }

    /// Rows produced so far (values are a function of the row number, except timestamps
    /// taken from the clock).
    fn snapshot(&mut self) -> Result<Option<String>> {
        Ok(Some(self.emitted.to_string()))
    }
}

#[cfg(test)]
mod tests;
