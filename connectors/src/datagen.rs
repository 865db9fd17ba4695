//! The `datagen` source: Flink's generator of random and sequence rows, for demos and tests.
//!
//! Options (as in Flink): `rows-per-second` (default 10000), `number-of-rows` (bounded when
//! set), and per column `fields.<col>.kind` = `random` | `sequence`, `.min`/`.max`, `.length`,
//! `.max-past`, `.start`/`.end`, `.null-rate`. A sequence column makes the source bounded at
//! `end - start + 1` rows. This module owns the factory and the pacing; option checking is in
//! `spec`, value generation in `generate`, checkpoint positions (restorable at any
//! parallelism) in `position`.

mod generate;
mod position;
pub(crate) mod spec;

use std::collections::VecDeque;
use std::ops::Range;
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
use position::Done;
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

    /// Every old subtask's done rows in one position; each new subtask generates the rest of
    /// its share ([`position`]).
    fn merge_positions(
        &self,
        table: &TableDef,
        positions: &[Option<String>],
    ) -> Result<Option<String>, String> {
        let total = DatagenSpec::parse(table)?.total_rows;
        position::merge(positions, |index, count| {
            share(total, weir_engine::connector::Split { index, count })
        })
    }

    fn create(&self, ctx: SourceContext) -> Result<Box<dyn Source>> {
        let spec = DatagenSpec::parse(&ctx.table).map_err(|m| EngineError::connector(NAME, m))?;
        let share = share(spec.total_rows, ctx.split);
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
        // A restarted generator continues with the rows of its share not yet checkpointed.
        let done = match &ctx.restore {
            Some(p) => Done::parse(p, &share).map_err(EngineError::State)?,
            None => Done::default(),
        }
        .within(&share);
        Ok(Box::new(DatagenSource {
            ctx,
            gens,
            todo: done.todo(&share).into(),
            done,
            rate,
            batch_rows,
            started: None,
        }))
    }
}

/// The rows subtask `split` generates: a contiguous part of the sequence, so the rows of all
/// subtasks together are the rows one source would generate. Endless, each subtask numbers
/// its rows in a range of its own (2^48 rows).
fn share(total: Option<u64>, split: weir_engine::connector::Split) -> Range<u64> {
    let (i, n) = (split.index as u128, split.count.max(1) as u128);
    match total {
        Some(t) => {
            let at = |k: u128| (u128::from(t) * k / n) as u64;
            at(i)..at(i + 1)
        }
        None => (i as u64) << 48..(i as u64 + 1) << 48,
    }
}

/// A running datagen source.
struct DatagenSource {
    ctx: SourceContext,
    gens: Vec<FieldGen>,
    /// The rows of this subtask's share still to generate, in order.
    todo: VecDeque<Range<u64>>,
    /// The rows of its share generated (the checkpoint position).
    done: Done,
    rate: f64,
    batch_rows: usize,
    /// When the first batch was produced; batch `k` is due at `started + rows_before_k / rate`.
    started: Option<Instant>,
}

impl DatagenSource {
    fn generate(&mut self, first: u64, n: usize) -> Result<RecordBatch, ArrowError> {
        let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let columns = self
            .gens
            .iter_mut()
            .map(|g| g.column(first, n, now_ns))
            .collect::<Result<Vec<_>, _>>()?;
        let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(n));
        RecordBatch::try_new_with_options(self.ctx.schema.clone(), columns, &options)
    }

    async fn next_batch(&mut self) -> Result<SourceEvent> {
        let Some(next) = self.todo.front().cloned() else {
            return Ok(SourceEvent::End);
        };
        let n = (self.batch_rows as u64).min(next.end - next.start) as usize;
        // Rows done so far are due this long after the start; the first batch of a run counts
        // its start as if the rows before it had been produced at the rate.
        let offset = Duration::try_from_secs_f64(self.done.rows() as f64 / self.rate).ok();
        let started = *self.started.get_or_insert_with(|| {
            let now = Instant::now();
            now.checked_sub(offset.unwrap_or_default()).unwrap_or(now)
        });
        if let Some(due) = offset.and_then(|d| started.checked_add(d)) {
            tokio::time::sleep_until(due).await;
        }
        let batch = self
            .generate(next.start, n)
            .map_err(|e| EngineError::connector(NAME, e.to_string()))?;
        let rows = next.start..next.start + n as u64;
        match rows.end == next.end {
            true => drop(self.todo.pop_front()),
            false => self.todo[0].start = rows.end,
        }
        self.done.add(rows);
        JobMetrics::add(&self.ctx.metrics.rows_in, n);
        Ok(SourceEvent::Batch(batch))
    }
}

impl Source for DatagenSource {
    fn next(&mut self) -> BoxFuture<'_, Result<SourceEvent>> {
        self.next_batch().boxed()
    }

    /// The rows of its share produced so far (values are a function of the row number,
    /// except timestamps taken from the clock).
    fn snapshot(&mut self) -> Result<Option<String>> {
        Ok(Some(self.done.to_text()))
    }
}

#[cfg(test)]
mod tests;
