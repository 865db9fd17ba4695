//! `weir-checkpoint-bench`: what checkpoints cost.
//!
//! - `weir-checkpoint-bench throughput [rows]`: the core tumble job (AVG/MIN/MAX/COUNT per
//!   sensor, 1-minute windows, 1,000 sensors) into a blackhole sink, on one core, without
//!   checkpoints and with checkpoints every 10 s and every 1 s.
//! - `weir-checkpoint-bench state [keys] [memory-limit-mb]`: `keys` distinct keys in one open
//!   window; prints the duration and size of a checkpoint holding them and the peak RSS (with a
//!   small memory limit the window lives in RocksDB), then "crashes" the job and measures the
//!   recovery time: from a new engine to the first output row of the restored job.
//! - `weir-checkpoint-bench groups [keys]`: a non-windowed GROUP BY over `keys` keys (COUNT, AVG
//!   and MAX per key); prints the checkpoint that first holds every key, the one after 1% of the
//!   keys changed, and one with nothing changed: duration, and bytes new on disk (files the
//!   previous checkpoint did not have), then the recovery time to the restored job's first
//!   update.
//!
//! Batches are generated before the clock starts, so only the engine is measured.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use weir::arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray};
use weir::arrow::datatypes::SchemaRef;
use weir::arrow::record_batch::RecordBatch;
use weir::planner::TableDef;
use weir::{CheckpointConfig, Source, SourceContext, SourceEvent, SourceFactory};

/// Batch `i` of the input, or `None` past the end.
type Batches = Arc<dyn Fn(usize) -> Option<RecordBatch> + Send + Sync>;

/// Serves batches from a position; resumable.
struct MemorySource {
    batches: Batches,
    next: usize,
    /// Emitted once after a restore (to fire the restored windows), then idles.
    tick: Option<RecordBatch>,
    unbounded: bool,
    read: Arc<AtomicUsize>,
}

impl Source for MemorySource {
    fn next(&mut self) -> BoxFuture<'_, weir::Result<SourceEvent>> {
        let e = if let Some(b) = (self.batches)(self.next) {
            self.next += 1;
            self.read.fetch_add(b.num_rows(), Ordering::Relaxed);
            SourceEvent::Batch(b)
        } else if let Some(t) = self.tick.take() {
            SourceEvent::Batch(t)
        } else if self.unbounded {
            SourceEvent::Idle
        } else {
            SourceEvent::End
        };
        Box::pin(async move { Ok(e) })
    }

    fn snapshot(&mut self) -> weir::Result<Option<String>> {
        Ok(Some(self.next.to_string()))
    }
}

struct MemoryFactory {
    batches: Mutex<Batches>,
    tick: Mutex<Option<RecordBatch>>,
    unbounded: bool,
    read: Arc<AtomicUsize>,
}

impl SourceFactory for MemoryFactory {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn validate(&self, _t: &TableDef) -> Result<(), String> {
        Ok(())
    }
    fn is_bounded(&self, _t: &TableDef) -> bool {
        !self.unbounded
    }
    fn create(&self, ctx: SourceContext) -> weir::Result<Box<dyn Source>> {
        let next = ctx.restore.as_deref().and_then(|p| p.parse().ok());
        Ok(Box::new(MemorySource {
            batches: self.batches.lock().expect("lock").clone(),
            next: next.unwrap_or(0),
            tick: next.and_then(|_| self.tick.lock().expect("lock").clone()),
            unbounded: self.unbounded,
            read: self.read.clone(),
        }))
    }
}

const DDL: &str = "CREATE TABLE r (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH ('connector' = 'memory');
  CREATE TABLE out (sensor_id STRING, window_start TIMESTAMP(3), avg_temp DOUBLE, max_temp DOUBLE,
  min_temp DOUBLE, n BIGINT) WITH ('connector' = 'blackhole');";

fn insert(window: &str) -> String {
    format!(
        "INSERT INTO out SELECT sensor_id, TUMBLE_START(ts, INTERVAL {window}), AVG(temperature),
           MAX(temperature), MIN(temperature), COUNT(*) FROM r
         GROUP BY sensor_id, TUMBLE(ts, INTERVAL {window})"
    )
}

/// `rows` readings over `keys` sensors, `ms_apart` apart with up to 2 s of disorder (0: all at
/// the same instant).
fn generate(schema: &SchemaRef, rows: usize, keys: usize, ms_apart: i64) -> Vec<RecordBatch> {
    let start = 1_704_067_200_000i64;
    (0..rows)
        .step_by(8192)
        .map(|lo| {
            let hi = (lo + 8192).min(rows);
            let ids = StringArray::from_iter_values((lo..hi).map(|i| format!("k{:08}", i % keys)));
            let t = Float64Array::from_iter_values((lo..hi).map(|i| (i * 7 % 4000) as f64 / 100.0));
            let ts =
                TimestampMillisecondArray::from_iter_values((lo..hi).map(|i| match ms_apart {
                    0 => start + 1000,
                    d => start + i as i64 * d - (i as i64 * 7919 % 2000),
                }));
            let cols: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(t), Arc::new(ts)];
            RecordBatch::try_new(schema.clone(), cols).expect("batch")
        })
        .collect()
}

/// Batch `i` (8,192 rows) of `keys` distinct keys, all at the same instant.
fn batch_of_keys(schema: &SchemaRef, i: usize, keys: usize) -> Option<RecordBatch> {
    let (lo, hi) = (i * 8192, ((i + 1) * 8192).min(keys));
    if lo >= hi {
        return None;
    }
    let ids = StringArray::from_iter_values((lo..hi).map(|k| format!("k{k:08}")));
    let t = Float64Array::from_iter_values((lo..hi).map(|k| (k % 4000) as f64 / 100.0));
    let ts = TimestampMillisecondArray::from_iter_values((lo..hi).map(|_| 1_704_067_201_000));
    let cols: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(t), Arc::new(ts)];
    RecordBatch::try_new(schema.clone(), cols).ok()
}

fn engine(
    factory: &Arc<MemoryFactory>,
    ckpt: Option<(&Path, Duration)>,
    memory: usize,
) -> weir::Engine {
    let e = weir::Engine::new();
    e.set_quiet(true);
    e.register_source(factory.clone());
    e.set_checkpointing(ckpt.map(|(dir, interval)| CheckpointConfig {
        interval,
        memory_limit: memory,
        ..CheckpointConfig::new(dir)
    }));
    e
}

/// Peak resident memory of this process so far, in MB.
fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb / 1024)
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-ckbench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

async fn throughput(rows: usize) -> weir::Result<()> {
    let factory = Arc::new(MemoryFactory {
        batches: Mutex::new(Arc::new(|_| None)),
        tick: Mutex::new(None),
        unbounded: false,
        read: Arc::new(AtomicUsize::new(0)),
    });
    for (label, interval) in [
        ("none", None),
        ("every 10 s", Some(10)),
        ("every 1 s", Some(1)),
    ] {
        let dir = temp_dir("tput");
        let e = engine(
            &factory,
            interval.map(|s| (dir.as_path(), Duration::from_secs(s))),
            1 << 30,
        );
        e.execute(DDL).await?;
        let schema = e.catalog().table("r").expect("table").physical_schema();
        let batches = Arc::new(generate(&schema, rows, 1000, 1));
        *factory.batches.lock().expect("lock") = Arc::new(move |i| batches.get(i).cloned());
        let t0 = Instant::now();
        let job = e.submit(&insert("'1' MINUTE")).await?;
        job.wait().await?;
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "checkpoints {label}: {rows} rows in {secs:.3} s = {:.0} rows/s on one core ({} checkpoints)",
            rows as f64 / secs,
            job.checkpoints().len()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

async fn state(keys: usize, memory: usize) -> weir::Result<()> {
    let read = Arc::new(AtomicUsize::new(0));
    let factory = Arc::new(MemoryFactory {
        batches: Mutex::new(Arc::new(|_| None)),
        tick: Mutex::new(None),
        unbounded: true,
        read: read.clone(),
    });
    let dir = temp_dir("state");
    let e = engine(&factory, Some((&dir, Duration::from_secs(1))), memory);
    e.execute(DDL).await?;
    let schema = e.catalog().table("r").expect("table").physical_schema();
    // Every key once, all inside the first hour: one open window holds them all. Batches are
    // made as they are read, so the input does not count towards the memory measured.
    let last = generate(&schema, 1, 1, 0).remove(0);
    let far = TimestampMillisecondArray::from(vec![1_704_067_200_000i64 + 7_200_000]);
    let tick = RecordBatch::try_new(
        schema.clone(),
        vec![
            last.column(0).clone(),
            last.column(1).clone(),
            Arc::new(far),
        ],
    )?;
    let gen_schema = schema.clone();
    *factory.batches.lock().expect("lock") = Arc::new(move |i| batch_of_keys(&gen_schema, i, keys));
    *factory.tick.lock().expect("lock") = Some(tick);
    let job = e.submit(&insert("'1' HOUR")).await?;
    while read.load(Ordering::Relaxed) < keys {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = job.checkpoints().last().map_or(0, |c| c.id);
    while job.checkpoints().last().map_or(0, |c| c.id) < after + 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The first checkpoint after the rows writes the window; the next ones find it unchanged.
    let all = job.checkpoints();
    let stats = all.iter().max_by_key(|c| c.duration).expect("a checkpoint");
    let last = all.last().expect("a checkpoint");
    println!(
        "{keys} keys: longest checkpoint (writing the window) {:.3} s, {:.1} MB on disk; next \
         one (nothing changed) {:.3} s; {} windows spilled, peak RSS {} MB (state.memory-limit {} MB)",
        stats.duration.as_secs_f64(),
        stats.bytes as f64 / 1e6,
        last.duration.as_secs_f64(),
        weir::engine_metrics::get(&job.metrics().spilled_windows),
        peak_rss_mb(),
        memory >> 20
    );
    job.cancel(); // a crash: nothing after the last checkpoint survives
    let _ = job.wait().await;
    let t0 = Instant::now();
    let e2 = engine(&factory, Some((&dir, Duration::from_secs(1))), memory);
    e2.execute(DDL).await?;
    let job = e2.submit(&insert("'1' HOUR")).await?;
    while weir::engine_metrics::get(&job.metrics().rows_out) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "{keys} keys: recovery to first output {:.3} s ({} rows out)",
        t0.elapsed().as_secs_f64(),
        weir::engine_metrics::get(&job.metrics().rows_out)
    );
    job.cancel();
    let _ = job.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Bytes of the files in checkpoint `id` under `root` that checkpoint `id - 1` did not have
/// (RocksDB hard-links the SST files it keeps, so they share an inode).
fn new_bytes(root: &Path, id: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fn files(dir: &Path, out: &mut Vec<std::fs::Metadata>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => files(&e.path(), out),
                Ok(m) => out.push(m),
                Err(_) => {}
            }
        }
    }
    let chk = |id: u64| root.join(format!("chk-{id:08}"));
    let mut before = Vec::new();
    files(&chk(id.saturating_sub(1)), &mut before);
    let old: std::collections::HashSet<u64> = before.iter().map(|m| m.ino()).collect();
    let mut now = Vec::new();
    files(&chk(id), &mut now);
    now.iter()
        .filter(|m| !old.contains(&m.ino()))
        .map(|m| m.len())
        .sum()
}

/// Batches of the GROUP BY bench: every key once, then (when `phase` is 1) 1% of the keys again.
fn group_batches(schema: SchemaRef, keys: usize, phase: Arc<AtomicUsize>) -> Batches {
    let loads = keys.div_ceil(8192);
    let changed = (keys / 100).max(1);
    Arc::new(move |i| {
        if i < loads {
            return batch_of_keys(&schema, i, keys);
        }
        if phase.load(Ordering::Relaxed) == 0 || (i - loads) * 8192 >= changed {
            return None;
        }
        let (lo, hi) = ((i - loads) * 8192, ((i - loads + 1) * 8192).min(changed));
        let ids = StringArray::from_iter_values((lo..hi).map(|j| format!("k{:08}", j * 100)));
        let t = Float64Array::from_iter_values((lo..hi).map(|_| 99.0));
        let ts = TimestampMillisecondArray::from_iter_values((lo..hi).map(|_| 1_704_067_202_000));
        let cols: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(t), Arc::new(ts)];
        RecordBatch::try_new(schema.clone(), cols).ok()
    })
}

/// Wait for the next complete checkpoint after the current one and describe it.
async fn next_checkpoint(job: &weir::JobHandle, dir: &Path, what: &str) -> u64 {
    let after = job.checkpoints().last().map_or(0, |c| c.id);
    let stats = loop {
        if let Some(c) = job.checkpoints().into_iter().find(|c| c.id > after) {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    println!(
        "  {what}: checkpoint {} took {:.3} s, {:.1} MB new on disk ({:.1} MB in all)",
        stats.id,
        stats.duration.as_secs_f64(),
        new_bytes(dir, stats.id) as f64 / 1e6,
        stats.bytes as f64 / 1e6
    );
    stats.id
}

/// State that keeps every key: a GROUP BY (`insert` = [`GROUPS_INSERT`]) or open session
/// windows ([`SESSIONS_INSERT`]). Checkpoints after every key arrived, after 1% of the keys
/// changed and when nothing changed, then a crash and the recovery.
async fn keyed(keys: usize, insert: &str, title: &str) -> weir::Result<()> {
    let read = Arc::new(AtomicUsize::new(0));
    let phase = Arc::new(AtomicUsize::new(0));
    let factory = Arc::new(MemoryFactory {
        batches: Mutex::new(Arc::new(|_| None)),
        tick: Mutex::new(None),
        unbounded: true,
        read: read.clone(),
    });
    let dir = temp_dir("groups");
    let e = engine(&factory, Some((&dir, Duration::from_secs(1))), 1 << 30);
    e.execute(DDL).await?;
    e.execute(GROUPS_DDL).await?;
    let schema = e.catalog().table("r").expect("table").physical_schema();
    *factory.batches.lock().expect("lock") = group_batches(schema, keys, phase.clone());
    let job = e.submit(insert).await?;
    while read.load(Ordering::Relaxed) < keys {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("{title} over {keys} keys:");
    next_checkpoint(&job, &dir, "every key written").await;
    phase.store(1, Ordering::Relaxed);
    while read.load(Ordering::Relaxed) < keys + (keys / 100).max(1) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    next_checkpoint(&job, &dir, "after 1% of the keys changed").await;
    next_checkpoint(&job, &dir, "nothing changed").await;
    job.cancel(); // a crash: nothing after the last checkpoint survives
    let _ = job.wait().await;
    let t0 = Instant::now();
    let e2 = engine(&factory, Some((&dir, Duration::from_secs(1))), 1 << 30);
    e2.execute(DDL).await?;
    e2.execute(GROUPS_DDL).await?;
    let job = e2.submit(insert).await?; // operators restore their state here
    println!(
        "  recovery: the job restored and running in {:.3} s",
        t0.elapsed().as_secs_f64()
    );
    job.cancel();
    let _ = job.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

const GROUPS_DDL: &str = "CREATE TABLE per_key (sensor_id STRING, n BIGINT, avg_temp DOUBLE,
  max_temp DOUBLE) WITH ('connector' = 'blackhole');";

const GROUPS_INSERT: &str = "INSERT INTO per_key SELECT sensor_id, COUNT(*), AVG(temperature),
  MAX(temperature) FROM r GROUP BY sensor_id";

/// One open session per key (the watermark never passes their end): their rows are the state.
const SESSIONS_INSERT: &str = "INSERT INTO per_key SELECT sensor_id, COUNT(*), AVG(temperature),
  MAX(temperature) FROM r GROUP BY sensor_id, SESSION(ts, INTERVAL '1' HOUR)";

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "throughput".into());
    let n: Option<usize> = args.next().and_then(|s| s.parse().ok());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let r = match mode.as_str() {
        "throughput" => rt.block_on(throughput(n.unwrap_or(10_000_000))),
        "state" => {
            let mb: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
            rt.block_on(state(n.unwrap_or(1_000_000), mb << 20))
        }
        "groups" => rt.block_on(keyed(n.unwrap_or(1_000_000), GROUPS_INSERT, "GROUP BY")),
        "sessions" => rt.block_on(keyed(
            n.unwrap_or(1_000_000),
            SESSIONS_INSERT,
            "SESSION windows",
        )),
        other => {
            eprintln!(
                "usage: weir-checkpoint-bench throughput [rows] | state [keys] | groups [keys] \
                 | sessions [keys] (not '{other}')"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
