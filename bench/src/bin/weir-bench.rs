//! `weir-bench`: throughput of the core tumble query on one core, from an in-memory generator.
//!
//! `cargo run --release -p weir-bench --bin weir-bench -- [rows] [sensors] [query]` runs, on a
//! single-threaded runtime, one of: `tumble` (AVG/MIN/MAX/COUNT per sensor over 1-minute
//! tumbling windows, the default), `filter` (a pass-through filter that returns about half the
//! rows), `interval-join` (the readings joined with themselves within ±10 s per sensor),
//! `window-join` (two 1-minute aggregations joined per sensor and window) or `over` (AVG and
//! STDDEV_POP over each sensor's last 5 minutes, per row), and prints input rows/s (a join
//! reads the rows once per input). Batches are generated before the clock starts, so only the
//! engine is measured.

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
        // Each reader of the table (a self-join has two) gets the same batches.
        let batches = self
            .batches
            .lock()
            .expect("lock")
            .clone()
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
const INTERVAL_JOIN: &str = "SELECT a.sensor_id, a.ts, a.temperature, b.temperature AS other
  FROM sensor_readings a JOIN sensor_readings b ON a.sensor_id = b.sensor_id
  AND b.ts BETWEEN a.ts - INTERVAL '10' SECOND AND a.ts + INTERVAL '10' SECOND";
const WINDOW_JOIN: &str = "SELECT l.sensor_id, l.window_start, l.t, r.n FROM
  (SELECT sensor_id, window_start, window_end, AVG(temperature) AS t FROM TABLE(TUMBLE(TABLE
    sensor_readings, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY sensor_id, window_start, window_end) l
  JOIN (SELECT sensor_id, window_start, window_end, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE
    sensor_readings, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY sensor_id, window_start, window_end) r
  ON l.sensor_id = r.sensor_id AND l.window_start = r.window_start AND l.window_end = r.window_end";
const OVER: &str = "SELECT sensor_id, ts, AVG(temperature) OVER w AS mean,
  STDDEV_POP(temperature) OVER w AS sd FROM sensor_readings WINDOW w AS (PARTITION BY sensor_id
  ORDER BY ts RANGE BETWEEN INTERVAL '5' MINUTE PRECEDING AND CURRENT ROW)";

/// The query of a benchmark name, and how many times it reads the input.
fn query(name: &str) -> Option<(&'static str, usize)> {
    Some(match name {
        "tumble" => (QUERY, 1),
        "filter" => (FILTER, 1),
        "interval-join" => (INTERVAL_JOIN, 2),
        "window-join" => (WINDOW_JOIN, 2),
        "over" => (OVER, 1),
        _ => return None,
    })
}

async fn run(rows: usize, sensors: usize, name: &str) -> weir::Result<()> {
    let (sql, reads) = query(name).ok_or_else(|| {
        weir::EngineError::Execution(format!(
            "unknown query '{name}': tumble, filter, interval-join, window-join or over"
        ))
    })?;
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
    let mut stream = engine.query(sql).await?;
    let mut out = 0usize;
    while let Some(b) = stream.next_batch().await {
        out += b?.num_rows();
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{name}, {sensors} sensors: {rows} rows x {reads} in {secs:.3} s = {:.0} input rows/s on one core; {out} result rows, {} late",
        (rows * reads) as f64 / secs,
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
    let name = args.next().unwrap_or_else(|| "tumble".to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(run(rows, sensors, &name)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
