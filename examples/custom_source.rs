//! Embedding Weir with your own source and sink: rows come from an in-process channel (think of
//! an HTTP poller or a device driver feeding it), a windowed INSERT job aggregates them, and a
//! sink of ours collects the results. Also reads the job's metrics.
//!
//! Run it with `cargo run --example custom_source`.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use weir::arrow::array::{Float64Array, StringArray, TimestampMillisecondArray};
use weir::arrow::record_batch::RecordBatch;
use weir::planner::TableDef;
use weir::{Sink, SinkContext, SinkFactory, Source, SourceContext, SourceEvent, SourceFactory};

/// `'connector' = 'channel'`: batches sent into a tokio channel; the table ends when the
/// sender is dropped.
struct ChannelSource {
    rx: Arc<Mutex<Option<mpsc::Receiver<RecordBatch>>>>,
}

impl SourceFactory for ChannelSource {
    fn name(&self) -> &'static str {
        "channel"
    }
    fn validate(&self, _table: &TableDef) -> Result<(), String> {
        Ok(())
    }
    fn is_bounded(&self, _table: &TableDef) -> bool {
        true
    }
    fn create(&self, ctx: SourceContext) -> weir::Result<Box<dyn Source>> {
        let rx = self
            .rx
            .lock()
            .unwrap()
            .take()
            .expect("one table reads the channel");
        Ok(Box::new(Reader { rx, ctx }))
    }
}

struct Reader {
    rx: mpsc::Receiver<RecordBatch>,
    ctx: SourceContext,
}

impl Source for Reader {
    fn next(&mut self) -> BoxFuture<'_, weir::Result<SourceEvent>> {
        Box::pin(async move {
            Ok(match self.rx.recv().await {
                Some(batch) => {
                    // Sources count what they read (once per batch).
                    weir::engine_metrics::JobMetrics::add(
                        &self.ctx.metrics.rows_in,
                        batch.num_rows(),
                    );
                    SourceEvent::Batch(batch)
                }
                None => SourceEvent::End,
            })
        })
    }
}

/// `'connector' = 'collect'`: keeps every result batch in memory.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<RecordBatch>>>);

impl SinkFactory for Collect {
    fn name(&self) -> &'static str {
        "collect"
    }
    fn validate(&self, _table: &TableDef) -> Result<(), String> {
        Ok(())
    }
    fn guarantee(&self, _table: &TableDef, _checkpointing: bool) -> &'static str {
        "at-least-once"
    }
    fn create(&self, _ctx: SinkContext) -> weir::Result<Box<dyn Sink>> {
        Ok(Box::new(self.clone()))
    }
}

impl Sink for Collect {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, weir::Result<()>> {
        self.0.lock().unwrap().push(batch);
        Box::pin(async { Ok(()) })
    }
    fn finish(&mut self) -> BoxFuture<'_, weir::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// A batch in the table's physical schema: (device, reading, ts).
fn readings(schema: weir::arrow::datatypes::SchemaRef, minute: i64) -> RecordBatch {
    let base = 1_704_067_200_000 + minute * 60_000;
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["pump-1", "pump-2", "pump-1"])),
            Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])),
            Arc::new(TimestampMillisecondArray::from(vec![
                base,
                base + 1_000,
                base + 2_000,
            ])),
        ],
    )
    .unwrap()
}

#[tokio::main]
async fn main() -> weir::Result<()> {
    let (tx, rx) = mpsc::channel(4);
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.register_source(Arc::new(ChannelSource {
        rx: Arc::new(Mutex::new(Some(rx))),
    }));
    let results = Collect::default();
    engine.register_sink(Arc::new(results.clone()));
    engine
        .execute(
            "CREATE TABLE readings (device STRING, reading DOUBLE, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts) WITH ('connector' = 'channel');
             CREATE TABLE per_minute (device STRING, window_start TIMESTAMP(3), total DOUBLE)
               WITH ('connector' = 'collect');",
        )
        .await?;
    let schema = engine
        .catalog()
        .table("readings")
        .unwrap()
        .physical_schema();
    let job = engine
        .submit(
            "INSERT INTO per_minute SELECT device, window_start, SUM(reading)
             FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
             GROUP BY device, window_start, window_end",
        )
        .await?;
    for minute in 0..3 {
        tx.send(readings(schema.clone(), minute)).await.unwrap();
    }
    drop(tx); // the source ends; the final watermark fires the open windows
    job.wait().await?;
    let rows: usize = results.0.lock().unwrap().iter().map(|b| b.num_rows()).sum();
    println!(
        "{rows} rows collected; {} rows in, {} late",
        weir::engine_metrics::get(&job.metrics().rows_in),
        job.late_rows()
    );
    assert_eq!(rows, 6); // 2 devices x 3 minutes
    assert_eq!(weir::engine_metrics::get(&job.metrics().rows_in), 9);
    Ok(())
}
