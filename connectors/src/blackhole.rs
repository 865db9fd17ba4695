//! The `blackhole` sink: discards every row and only counts them (for benchmarks and tests that
//! measure the pipeline without the cost of output).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use futures::FutureExt;
use weir_engine::connector::{check_known_options, Sink, SinkContext, SinkFactory};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

/// The connector name in `'connector' = 'blackhole'`.
pub const NAME: &str = "blackhole";

/// Creates `blackhole` sinks. Every sink it creates adds to [`BlackholeSinkFactory::rows`].
#[derive(Debug, Default, Clone)]
pub struct BlackholeSinkFactory {
    rows: Arc<AtomicU64>,
}

impl BlackholeSinkFactory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows discarded by all sinks of this factory so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
}

impl SinkFactory for BlackholeSinkFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        check_known_options(table, &["connector"], &[])
    }

    /// It takes part in no commit protocol, so it reports at-least-once like `print`.
    fn guarantee(&self, _table: &TableDef, _checkpointing: bool) -> &'static str {
        "at-least-once"
    }

    fn accepts_updates(&self, _table: &TableDef) -> bool {
        true
    }

    /// Each subtask of its input discards its own rows.
    fn parallel(&self, _table: &TableDef, _checkpointing: bool) -> bool {
        true
    }

    fn create(&self, ctx: SinkContext) -> Result<Box<dyn Sink>> {
        self.validate(&ctx.table)
            .map_err(|m| EngineError::connector(NAME, m))?;
        Ok(Box::new(BlackholeSink {
            ctx,
            rows: self.rows.clone(),
        }))
    }
}

struct BlackholeSink {
    ctx: SinkContext,
    rows: Arc<AtomicU64>,
}

impl Sink for BlackholeSink {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        let n = batch.num_rows();
        self.rows.fetch_add(n as u64, Ordering::Relaxed);
        JobMetrics::add(&self.ctx.metrics.rows_out, n);
        async { Ok(()) }.boxed()
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        async { Ok(()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{sink_ctx, table};
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::DataType;

    #[tokio::test]
    async fn discards_and_counts() {
        let factory = BlackholeSinkFactory::new();
        let t = table(&[("connector", "blackhole")], &[("n", DataType::Int64)]);
        let ctx = sink_ctx(t, &[]);
        let mut sink = factory.create(ctx.clone()).unwrap();
        let batch = RecordBatch::try_new(
            ctx.schema.clone(),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .unwrap();
        sink.write(batch.clone()).await.unwrap();
        sink.write(batch).await.unwrap();
        sink.finish().await.unwrap();
        assert_eq!(factory.rows(), 6);
        assert_eq!(JobMetrics::get(&ctx.metrics.rows_out), 6);
        let bad = table(&[("connector", "blackhole"), ("x", "1")], &[]);
        assert!(factory
            .validate(&bad)
            .unwrap_err()
            .contains("unknown option 'x'"));
    }
}
