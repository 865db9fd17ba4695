//! The chaos tests: a real `weir run` process reading 1 million sensor records from a
//! 3-partition topic, aggregating in tumble and session windows into exactly-once sinks
//! (filesystem, Kafka transactions or PostgreSQL, one test each), is killed with SIGKILL at
//! random moments and restarted from its checkpoint directory; the committed output must equal
//! one clean run's, row for row.
//!
//! The seed and kill times are printed; `WEIR_CHAOS_SEED=<n>` replays a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::message::Message;

use crate::common::kafka::Broker;
use crate::common::{postgres, wait_for, weir_bin};

const RECORDS: usize = 1_000_000;
const KILLS: usize = 5;
/// Kills that must land before the job ends by itself. Restores and checkpoints take longer on a
/// loaded machine, so a run may finish before the last kills; three mid-run kills still test
/// every recovery path (restore, replay, re-commit), and the rows must equal the clean run's.
const MIN_KILLS: usize = 3;

/// xorshift64*: enough randomness for kill times, replayable from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn between_ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

/// Record `n`: sensor `n % 1000`, 1 ms of event time apart with up to 3 s of disorder (inside
/// the 5 s watermark delay, so no row is late in any run), and every sensor silent for 15 s of
/// each 100 s so that sessions close.
pub(crate) fn record(n: usize) -> (i32, Vec<u8>) {
    let sensor = n % 1000;
    let step = n + (n / 85_000) * 15_000;
    let ts = 1_704_067_200_000i64 + step as i64 - (n as i64 * 7919 % 3000);
    let t = chrono::DateTime::from_timestamp_millis(ts).unwrap();
    let v = format!(
        r#"{{"sensor_id":"s-{sensor:04}","temperature":{}.{},"ts":"{}"}}"#,
        n % 50,
        n % 10,
        t.format("%Y-%m-%d %H:%M:%S%.3f")
    );
    ((sensor % 3) as i32, v.into_bytes())
}

/// Where a run's two sinks write: directories (exactly-once filesystem sink), topics
/// (exactly-once Kafka sink) or PostgreSQL tables (exactly-once `jdbc` sink).
pub(crate) enum Out {
    Files(PathBuf),
    Topics(String),
    Tables(String),
}

/// The sinks a chaos test writes to.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Files,
    Kafka,
    Postgres,
}

const PG_COLUMNS: [(&str, &str); 2] = [
    ("tumbles", "sensor_id text, window_start timestamp(3), n bigint, avg_t double precision"),
    ("sessions", "sensor_id text, window_start timestamp(3), window_end timestamp(3), n bigint, max_t double precision"),
];

impl Out {
    fn sink_ddl(&self, name: &str, broker: &Broker) -> String {
        match self {
            Out::Files(dir) => format!(
                "'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'",
                dir.join(name).display()
            ),
            Out::Topics(prefix) => format!(
                "'connector' = 'kafka', 'topic' = '{prefix}-{name}', 'format' = 'json',
                 'properties.bootstrap.servers' = '{}', 'sink.delivery-guarantee' = 'exactly-once',
                 'sink.transactional-id-prefix' = '{prefix}-{name}'",
                broker.bootstrap
            ),
            Out::Tables(prefix) => format!(
                "'connector' = 'jdbc', 'url' = '{}', 'table-name' = '{prefix}_{name}'",
                postgres::url()
            ),
        }
    }

    /// Committed rows of one sink, counted (a multiset).
    pub(crate) async fn committed(&self, name: &str, broker: &Broker) -> BTreeMap<String, usize> {
        match self {
            Out::Files(dir) => committed_files(&dir.join(name)),
            Out::Topics(prefix) => committed_topic(broker, &format!("{prefix}-{name}")).await,
            Out::Tables(prefix) => committed_table(&format!("{prefix}_{name}")).await,
        }
    }
}

/// Every row of a PostgreSQL table (as JSON), counted.
async fn committed_table(table: &str) -> BTreeMap<String, usize> {
    let pg = postgres::client().await;
    let mut rows = BTreeMap::new();
    for r in postgres::rows(&pg, &format!("SELECT * FROM {table}")).await {
        *rows.entry(r.to_string()).or_insert(0) += 1;
    }
    rows
}

/// Create (or, with `drop`, drop) the tables of the runs `prefixes`.
async fn pg_tables(prefixes: &[&str], drop: bool) {
    let pg = postgres::client().await;
    for p in prefixes {
        for (name, columns) in PG_COLUMNS {
            let sql = match drop {
                true => format!("DROP TABLE IF EXISTS {p}_{name}"),
                false => {
                    format!("DROP TABLE IF EXISTS {p}_{name}; CREATE TABLE {p}_{name} ({columns})")
                }
            };
            postgres::exec(&pg, &sql).await;
        }
    }
}

/// The chaos job reading `topic` at `rate` records per second (shared by its source subtasks).
pub(crate) fn job(broker: &Broker, topic: &str, rate: u32, ends: &str, out: &Out) -> String {
    format!(
        "SET 'execution.checkpointing.interval' = '300 ms';
         CREATE TABLE readings (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
         WITH ('connector' = 'kafka', 'topic' = '{topic}', 'format' = 'json',
               'properties.bootstrap.servers' = '{}', 'scan.startup.mode' = 'earliest-offset',
               'scan.bounded.mode' = 'specific-offsets', 'scan.bounded.specific-offsets' = '{ends}',
               'scan.records-per-second' = '{rate}');
         CREATE TABLE tumbles (sensor_id STRING, window_start TIMESTAMP(3), n BIGINT, avg_t DOUBLE)
         WITH ({});
         CREATE TABLE sessions (sensor_id STRING, window_start TIMESTAMP(3),
           window_end TIMESTAMP(3), n BIGINT, max_t DOUBLE)
         WITH ({});
         INSERT INTO tumbles SELECT sensor_id, window_start, COUNT(*), AVG(temperature)
           FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
           GROUP BY sensor_id, window_start, window_end;
         INSERT INTO sessions SELECT sensor_id, window_start, window_end, COUNT(*), MAX(temperature)
           FROM TABLE(SESSION(TABLE readings PARTITION BY sensor_id, DESCRIPTOR(ts), INTERVAL '10' SECOND))
           GROUP BY sensor_id, window_start, window_end;",
        broker.bootstrap,
        out.sink_ddl("tumbles", broker),
        out.sink_ddl("sessions", broker),
    )
}

pub(crate) fn start(job: &Path, ckpt: &Path) -> Child {
    start_with(job, ckpt, &[])
}

/// `weir run` of `job` checkpointing into `ckpt`, with `args` (`-p 4`) too.
pub(crate) fn start_with(job: &Path, ckpt: &Path, args: &[&str]) -> Child {
    Command::new(weir_bin())
        .args(["run", "-q"])
        .args(args)
        .arg("--checkpoint-dir")
        .arg(ckpt)
        .arg(job)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Committed rows of one sink directory, counted.
pub(crate) fn committed_files(dir: &Path) -> BTreeMap<String, usize> {
    let mut rows = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if !e.file_name().to_string_lossy().starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(e.path()).unwrap().lines() {
            *rows.entry(line.to_string()).or_insert(0) += 1;
        }
    }
    rows
}

/// Every record value of `topic` a `read_committed` reader sees, counted.
pub(crate) async fn committed_topic(broker: &Broker, topic: &str) -> BTreeMap<String, usize> {
    let consumer = broker.reader(topic, 2, &[("isolation.level", "read_committed")]);
    let mut rows = BTreeMap::new();
    while let Ok(m) = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await {
        let m = m.unwrap();
        let v = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
        *rows.entry(v).or_insert(0) += 1;
    }
    rows
}

/// The newest complete checkpoint in `dir` (what the next run restores from).
pub(crate) fn latest_checkpoint(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.path().join("_metadata").exists())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .max()
}

/// Wait until `dir` holds a checkpoint newer than `than` (false if the run ended first).
async fn checkpoint_after(child: &mut Child, dir: &Path, than: Option<u64>) -> bool {
    wait_for(Duration::from_secs(60), "a new checkpoint", async || {
        if child.try_wait().unwrap().is_some() {
            return Some(false);
        }
        (latest_checkpoint(dir) > than).then_some(true)
    })
    .await
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-chaos-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Whether both sinks of `other` committed exactly the rows of `clean` (as multisets); what
/// differs when not.
pub(crate) async fn same_output(clean: &Out, other: &Out, broker: &Broker) -> Result<(), String> {
    for sink in ["tumbles", "sessions"] {
        let a = clean.committed(sink, broker).await;
        let b = other.committed(sink, broker).await;
        if a.is_empty() {
            return Err(format!("{sink}: the clean run wrote nothing"));
        }
        if a != b {
            let ends = match other {
                Out::Topics(prefix) => topic_ends(broker, &format!("{prefix}-{sink}")),
                _ => String::new(),
            };
            let only = |x: &BTreeMap<String, usize>, y: &BTreeMap<String, usize>| {
                let rows = x.iter().filter(|(k, n)| y.get(*k) != Some(n));
                rows.take(5)
                    .map(|(k, n)| format!("{n}x {k}"))
                    .collect::<Vec<_>>()
            };
            return Err(format!(
                "{sink} differs: clean-only {:?}, other-only {:?}{ends}",
                only(&a, &b),
                only(&b, &a)
            ));
        }
    }
    Ok(())
}

/// Each partition's end as a `read_committed` reader and as any reader sees it: a stable end
/// short of the log's end is a transaction left open, which hides every row after it.
fn topic_ends(broker: &Broker, topic: &str) -> String {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let ends = |level: &str| -> Vec<i64> {
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &broker.bootstrap)
            .set("isolation.level", level)
            .create()
            .unwrap();
        let t = Duration::from_secs(5);
        (0..2)
            .map(|p| c.fetch_watermarks(topic, p, t).map_or(-1, |w| w.1))
            .collect()
    };
    format!(
        "; '{topic}' partitions end at {:?}, stable up to {:?}",
        ends("read_uncommitted"),
        ends("read_committed")
    )
}

/// Run the job cleanly and under repeated SIGKILLs; the committed outputs must be equal.
async fn chaos(sinks: Kind) -> Result<(), String> {
    let seed = std::env::var("WEIR_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64 | 1);
    let mut rng = Rng(seed);
    let broker = Broker::start();
    broker.create_topic("chaos", 3).await;
    let ends = broker.produce_many("chaos", RECORDS, 3, record).await;
    let kind = match sinks {
        Kind::Files => "files",
        Kind::Kafka => "kafka",
        Kind::Postgres => "postgres",
    };
    let (clean_dir, chaos_dir) = (
        scratch(&format!("{kind}-clean")),
        scratch(&format!("{kind}-chaos")),
    );
    let pg_prefixes = [
        format!("weir_chaos_clean_{}", std::process::id()),
        format!("weir_chaos_{}", std::process::id()),
    ];
    let pg_prefixes = [pg_prefixes[0].as_str(), pg_prefixes[1].as_str()];
    let (clean, chaotic) = match sinks {
        Kind::Kafka => {
            for t in [
                "clean-tumbles",
                "clean-sessions",
                "chaos-tumbles",
                "chaos-sessions",
            ] {
                broker.create_topic(t, 2).await;
            }
            (Out::Topics("clean".into()), Out::Topics("chaos".into()))
        }
        Kind::Files => (Out::Files(clean_dir.clone()), Out::Files(chaos_dir.clone())),
        Kind::Postgres => {
            pg_tables(&pg_prefixes, false).await;
            (
                Out::Tables(pg_prefixes[0].into()),
                Out::Tables(pg_prefixes[1].into()),
            )
        }
    };
    let job = |out: &Out| job(&broker, "chaos", 150_000, &ends, out);
    std::fs::write(clean_dir.join("job.sql"), job(&clean)).unwrap();
    std::fs::write(chaos_dir.join("job.sql"), job(&chaotic)).unwrap();
    let t_clean = Instant::now();
    let status = start(&clean_dir.join("job.sql"), &clean_dir.join("ckpt"))
        .wait()
        .unwrap();
    if !status.success() {
        return Err(format!("clean run failed: {status}"));
    }
    let clean_ms = t_clean.elapsed().as_millis() as u64;
    eprintln!("chaos: clean run {:.1} s", clean_ms as f64 / 1000.0);
    // Two in three kills come after the run has restored and taken a checkpoint of its own,
    // so kills spread over the whole input instead of piling up in restarts; the rest may hit
    // a restore. The random waits add up to less than 2/5 of a clean run, so with the
    // checkpoint waits every kill still lands mid-run even when the clean run was slowed by
    // other tests on the machine and the chaotic one is not.
    let longest = (clean_ms * 2 / 5 / KILLS as u64).clamp(200, 2500);

    let mut kills = Vec::new();
    let t0 = Instant::now();
    let (job_file, ckpt) = (chaos_dir.join("job.sql"), chaos_dir.join("ckpt"));
    let mut child = start(&job_file, &ckpt);
    while kills.len() < KILLS {
        let restored = latest_checkpoint(&ckpt);
        if !rng.next().is_multiple_of(3) && !checkpoint_after(&mut child, &ckpt, restored).await {
            break; // finished before this kill
        }
        let wait = rng.between_ms(100, longest);
        tokio::time::sleep(wait).await;
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills.push((wait.as_millis(), latest_checkpoint(&ckpt)));
        child = start(&job_file, &ckpt);
    }
    let status = child.wait().unwrap();
    eprintln!(
        "chaos: seed {seed}, (ms waited, latest checkpoint) at each kill: {kills:?}, {:.1} s in all",
        t0.elapsed().as_secs_f64()
    );
    if !status.success() {
        return Err(format!("last run failed: {status} (seed {seed})"));
    }
    if kills.len() < MIN_KILLS {
        return Err(format!("only {} kills landed (seed {seed})", kills.len()));
    }
    same_output(&clean, &chaotic, &broker)
        .await
        .map_err(|e| format!("{e} (seed {seed}, kills {kills:?})"))?;
    let _ = std::fs::remove_dir_all(&clean_dir);
    let _ = std::fs::remove_dir_all(&chaos_dir);
    if sinks == Kind::Postgres {
        pg_tables(&pg_prefixes, true).await;
    }
    Ok(())
}

// The tests return the failure instead of panicking: the reason is then the last line of the
// test's output (no backtrace after it), which is what a truncated CI log keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_up_to_five_times_the_filesystem_sink_commits_a_clean_runs_rows(
) -> Result<(), String> {
    chaos(Kind::Files).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_up_to_five_times_the_kafka_sink_commits_a_clean_runs_rows() -> Result<(), String> {
    chaos(Kind::Kafka).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_up_to_five_times_the_postgres_sink_commits_a_clean_runs_rows() -> Result<(), String>
{
    chaos(Kind::Postgres).await
}
