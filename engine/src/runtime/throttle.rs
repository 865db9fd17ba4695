//! `'sink.rows-per-second'`: a rate limit any sink table can carry.
//!
//! It makes a sink as slow as a struggling downstream system, which is how the backpressure
//! tests (and users rehearsing an outage) show that a slow sink slows the sources instead of
//! filling memory. The wait happens in the sink task, so the bounded channels in front of it
//! fill up and every upstream task blocks in turn.

use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use weir_planner::TableDef;

use crate::connector::Sink;
use crate::Result;

/// The option name.
pub const OPTION: &str = "sink.rows-per-second";

/// The table's rate limit, or an error naming a bad value.
pub fn rate(table: &TableDef) -> Result<Option<f64>, String> {
    match table.option(OPTION) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(Some(r)),
            _ => Err(format!(
                "option '{OPTION}' must be a positive number of rows, not '{v}'"
            )),
        },
    }
}

/// `inner`, slowed to the table's rate when it has one.
pub fn wrap(inner: Box<dyn Sink>, table: &TableDef) -> Result<Box<dyn Sink>> {
    let connector = table.connector().unwrap_or("?");
    match rate(table).map_err(|m| crate::EngineError::connector(connector, m))? {
        None => Ok(inner),
        Some(rate) => Ok(Box::new(ThrottledSink {
            inner,
            rate,
            started: None,
            written: 0,
        })),
    }
}

struct ThrottledSink {
    inner: Box<dyn Sink>,
    rate: f64,
    started: Option<Instant>,
    written: u64,
}

impl Sink for ThrottledSink {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let started = *self.started.get_or_insert_with(Instant::now);
            self.written += batch.num_rows() as u64;
            let due = Duration::from_secs_f64(self.written as f64 / self.rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            self.inner.write(batch).await
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        self.inner.finish()
    }

    fn pre_commit(&mut self, checkpoint: u64) -> BoxFuture<'_, Result<String>> {
        self.inner.pre_commit(checkpoint)
    }

    fn commit(&mut self, checkpoint: u64) -> BoxFuture<'_, Result<()>> {
        self.inner.commit(checkpoint)
    }
}
