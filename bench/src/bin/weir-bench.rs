//! `weir-bench`: throughput of the core tumble query on one core, from an in-memory generator.
//!
//! `cargo run --release -p weir-bench --bin weir-bench -- [rows] [sensors] [query]` runs, on a
//! single-threaded runtime, one of: `tumble` (AVG/MIN/MAX/COUNT per sensor over 1-minute
//! tumbling windows, the default), `filter` (a pass-through filter that returns about half the
//! rows), `interval-join` (the readings joined with themselves within ±10 s per sensor),
//! `window-join` (two 1-minute aggregations joined per sensor and window) or `over` (AVG and
//! STDDEV_POP over each sensor's last 5 minutes, per row), and prints input rows/s (a join
//! reads the rows once per input). Batches are generated before the clock starts, so only the
//! engine is measured; with a fourth argument `lazy` they are generated as they are read
//! instead, so memory is the engine's alone, and the state the job reports (keys, bytes) and
//! the peak RSS are printed every second.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use weir::arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray};
use weir::arrow::datatypes::SchemaRef;
use weir::arrow::record_batch::RecordBatch;
use weir::planner::TableDef;
use weir::{Source, SourceContext, SourceEvent, SourceFactory};

/// Serves pre-generated batches, or generates them as it goes.
struct MemorySource {
    batches: std::vec::IntoIter<RecordBatch>,
    lazy: Option<Generator>,
}

impl Source for MemorySource {
    fn next(&mut self) -> BoxFuture<'_, weir::Result<SourceEvent>> {
        let next = match &mut self.lazy {
            Some(g) => g.next_batch(),
            None => self.batches.next(),
        };
        let e = match next {
            Some(b) => SourceEvent::Batch(b),
            None => SourceEvent::End,
        };
        Box::pin(async move { Ok(e) })
    }
}

/// What every reader of the table gets: the same pre-generated batches, or a generator of its
/// own (`lazy`: the input is never held, so memory is the engine's).
enum Input {
    Batches(Vec<RecordBatch>),
    Lazy(Generator),
}

struct MemoryFactory {
    input: std::sync::Mutex<Option<Input>>,
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
    /// Subtask `i` of `n` reads batches `i`, `i + n`, ... (or generates its share of the rows).
    fn max_splits(&self, _table: &TableDef) -> usize {
        usize::MAX
    }

    fn create(&self, ctx: SourceContext) -> weir::Result<Box<dyn Source>> {
        // Each reader of the table (a self-join has two) gets the same rows, shared among its
        // subtasks.
        let weir::Split { index, count } = ctx.split;
        let source = match self.input.lock().expect("lock").as_ref() {
            Some(Input::Batches(b)) => MemorySource {
                batches: b
                    .iter()
                    .skip(index)
                    .step_by(count)
                    .cloned()
                    .collect::<Vec<_>>()
                    .into_iter(),
                lazy: None,
            },
            Some(Input::Lazy(g)) => MemorySource {
                batches: Vec::new().into_iter(),
                lazy: Some(g.share(index, count)),
            },
            None => MemorySource {
                batches: Vec::new().into_iter(),
                lazy: None,
            },
        };
        Ok(Box::new(source))
    }
}

/// Readings every 1 ms of event time, round-robin over sensors, up to 2 s out of order.
#[derive(Clone)]
struct Generator {
    schema: SchemaRef,
    names: Arc<Vec<String>>,
    rows: usize,
    batch: usize,
    lo: usize,
    state: u64,
}

impl Generator {
    fn new(schema: SchemaRef, rows: usize, sensors: usize, batch: usize) -> Self {
        Self {
            schema,
            names: Arc::new((0..sensors).map(|i| format!("sensor-{i:04}")).collect()),
            rows,
            batch,
            lo: 0,
            state: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// The rows of subtask `index` of `count`: a contiguous part of the sequence.
    fn share(&self, index: usize, count: usize) -> Self {
        let mut g = self.clone();
        g.lo = self.rows * index / count;
        g.rows = self.rows * (index + 1) / count;
        g.state ^= (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        g
    }

    fn random(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn next_batch(&mut self) -> Option<RecordBatch> {
        const START: i64 = 1_704_067_200_000;
        let (lo, hi) = (self.lo, (self.lo + self.batch).min(self.rows));
        if lo >= hi {
            return None;
        }
        self.lo = hi;
        let n = self.names.len();
        let ids = StringArray::from_iter_values((lo..hi).map(|i| self.names[i % n].as_str()));
        let temps =
            Float64Array::from_iter_values((lo..hi).map(|_| (self.random() % 4000) as f64 / 100.0));
        let ts = TimestampMillisecondArray::from_iter_values(
            (lo..hi).map(|i| START + i as i64 - (self.random() % 2000) as i64),
        );
        let cols: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(temps), Arc::new(ts)];
        Some(RecordBatch::try_new(self.schema.clone(), cols).expect("batch"))
    }
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

/// The stateful operators' state (keys, bytes) as the job reports it, and the peak RSS so far.
fn print_state(job: &weir::JobHandle, t0: Instant) {
    let samples = weir::engine_metrics::samples(std::slice::from_ref(job));
    let of = |m: &'static weir::engine_metrics::Metric| -> f64 {
        samples.of(m).map(|s| s.number()).sum()
    };
    println!(
        "  {:5.1} s: state {:.0} keys, {:.1} MB; peak RSS {} MB",
        t0.elapsed().as_secs_f64(),
        of(&weir::engine_metrics::metric::STATE_KEYS),
        of(&weir::engine_metrics::metric::STATE_BYTES) / 1e6,
        peak_rss_mb()
    );
}

/// The process's peak resident set (VmHWM), MB.
fn peak_rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

async fn run(
    rows: usize,
    sensors: usize,
    name: &str,
    lazy: bool,
    parallelism: usize,
) -> weir::Result<()> {
    let (sql, reads) = query(name).ok_or_else(|| {
        weir::EngineError::Execution(format!(
            "unknown query '{name}': tumble, filter, interval-join, window-join or over"
        ))
    })?;
    let engine = weir::Engine::new();
    let factory = Arc::new(MemoryFactory {
        input: std::sync::Mutex::new(None),
    });
    engine.register_source(factory.clone());
    engine.override_option("parallelism.default", &parallelism.to_string())?;
    // WEIR_BENCH_SET='key=value,...': session options for A/B runs (e.g.
    // table.optimizer.agg-phase-strategy=ONE_PHASE).
    for kv in std::env::var("WEIR_BENCH_SET")
        .unwrap_or_default()
        .split(',')
    {
        if let Some((k, v)) = kv.split_once('=') {
            engine.override_option(k.trim(), v.trim())?;
        }
    }
    engine.execute(DDL).await?;
    let schema = engine
        .catalog()
        .table("sensor_readings")
        .expect("table")
        .physical_schema();
    let mut generator = Generator::new(schema, rows, sensors, 8192);
    let input = match lazy {
        true => Input::Lazy(generator),
        false => Input::Batches(std::iter::from_fn(|| generator.next_batch()).collect()),
    };
    *factory.input.lock().expect("lock") = Some(input);
    let t0 = Instant::now();
    let mut stream = engine.query(sql).await?;
    let mut out = 0usize;
    let mut shown = Instant::now();
    while let Some(b) = stream.next_batch().await {
        out += b?.num_rows();
        if lazy && shown.elapsed().as_secs() >= 1 {
            shown = Instant::now();
            print_state(stream.job(), t0);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{name}, {sensors} sensors, parallelism {parallelism}: {rows} rows x {reads} in {secs:.3} s = {:.0} input rows/s ({:.0} per core); {out} result rows, {} late",
        (rows * reads) as f64 / secs,
        (rows * reads) as f64 / secs / parallelism as f64,
        stream.job().late_rows()
    );
    if lazy {
        print_state(stream.job(), t0);
    }
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
    let lazy = args.next().as_deref() == Some("lazy");
    // WEIR_BENCH_PARALLELISM=N: N subtasks per operator on N worker threads; unset, the whole
    // pipeline runs on one thread (tokio's current-thread runtime), as the figures at p = 1.
    let parallelism: usize = std::env::var("WEIR_BENCH_PARALLELISM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // WEIR_BENCH_THREADS=T: the runtime's worker threads when not the parallelism (1: all
    // subtasks on the current thread, to separate the cost of the subtasks from threading).
    let threads: usize = std::env::var("WEIR_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(parallelism);
    let rt = match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .expect("runtime");
    if let Err(e) = rt.block_on(run(rows, sensors, &name, lazy, parallelism)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
