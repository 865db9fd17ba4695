//! `weir-bench`: throughput of the core tumble query on one core, from an in-memory generator.
//!
//! `cargo run --release -p weir-bench --bin weir-bench -- [rows] [sensors] [tumble|filter]` runs
//! AVG/MIN/MAX/COUNT per sensor over 1-minute tumbling windows (or, with `filter`, a
//! pass-through filter that returns about half the rows) on a single-threaded runtime and
//! prints rows/s. Batches are generated before the clock starts, so only the engine is measured.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use weir::arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray};
use weir::arrow::datatypes::SchemaRef;
use weir::arrow::record_batch::RecordBatch;
use weir::planner::TableDef;
use weir::{Source, SourceContext, SourceEvent, SourceFactory};

/// Serves pre-generated batches.
struct MemorySource {
    batches: std::vec::IntoIter<RecordBatch>,
}

impl Source for MemorySource {
    fn next(&mut self) -> BoxFuture<'_, weir::Result<SourceEvent>> {
        let e = match self.batches.next() {
            Some(b) => SourceEvent::Batch(b),
            None => SourceEvent::End,
        };
        Box::pin(async move { Ok(e) })
    }
}

struct MemoryFactory {
    batches: std::sync::Mutex<Option<Vec<RecordBatch>>>,
}

impl SourceFactory for MemoryFactory {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn validate(&self, _t: &TableDef) -> Result<(), String> {
        Ok(())
    }
    fn is_bounded(&self, _t: &TableDef) -> bool {
        true
    }
    fn create(&self, _ctx: SourceContext) -> weir::Result<Box<dyn Source>> {
        let batches = self
            .batches
            .lock()
            .expect("lock")
            .take()
            .unwrap_or_default();
        Ok(Box::new(MemorySource {
            batches: batches.into_iter(),
        }))
    }
}

/// Readings every 1 ms of event time, round-robin over sensors, up to 2 s out of order.
fn generate(schema: SchemaRef, rows: usize, sensors: usize, batch: usize) -> Vec<RecordBatch> {
    let names: Vec<String> = (0..sensors).map(|i| format!("sensor-{i:04}")).collect();
    let mut out = Vec::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let start = 1_704_067_200_000i64;
    for lo in (0..rows).step_by(batch) {
        let hi = (lo + batch).min(rows);
        let ids = StringArray::from_iter_values((lo..hi).map(|i| names[i % sensors].as_str()));
        let temps =
            Float64Array::from_iter_values((lo..hi).map(|_| (next() % 4000) as f64 / 100.0));
        let ts = TimestampMillisecondArray::from_iter_values(
            (lo..hi).map(|i| start + i as i64 - (next() % 2000) as i64),
        );
        let cols: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(temps), Arc::new(ts)];
        out.push(RecordBatch::try_new(schema.clone(), cols).expect("batch"));
    }
    out
}

const DDL: &str =
    "CREATE TABLE sensor_readings (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH ('connector' = 'memory')";
const QUERY: &str = "SELECT sensor_id, TUMBLE_START(ts, INTERVAL '1' MINUTE) AS window_start,
  AVG(temperature) AS avg_temp, MAX(temperature) AS max_temp, MIN(temperature) AS min_temp,
  COUNT(*) AS reading_count FROM sensor_readings GROUP BY sensor_id, TUMBLE(ts, INTERVAL '1' MINUTE)";
const FILTER: &str =
    "SELECT sensor_id, temperature, ts FROM sensor_readings WHERE temperature > 20";

async fn run(rows: usize, sensors: usize, filter: bool) -> weir::Result<()> {
    let engine = weir::Engine::new();
    let factory = Arc::new(MemoryFactory {
        batches: std::sync::Mutex::new(None),
    });
    engine.register_source(factory.clone());
    engine.execute(DDL).await?;
    let schema = engine
        .catalog()
        .table("sensor_readings")
        .expect("table")
        .physical_schema();
    *factory.batches.lock().expect("lock") = Some(generate(schema, rows, sensors, 8192));
    let t0 = Instant::now();
    let mut stream = engine.query(if filter { FILTER } else { QUERY }).await?;
    let mut out = 0usize;
    while let Some(b) = stream.next_batch().await {
        out += b?.num_rows();
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{}, {sensors} sensors: {rows} rows in {secs:.3} s = {:.0} rows/s on one core; {out} result rows, {} late",
        if filter { "filter" } else { "tumble 1 min" },
        rows as f64 / secs,
        stream.job().late_rows()
    );
    Ok(())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rows = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let sensors = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let filter = args.next().as_deref() == Some("filter");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(run(rows, sensors, filter)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
