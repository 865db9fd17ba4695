//! `weir-kafka-bench BOOTSTRAP [records] [topic]`: records/s of topic -> JSON decode -> tumble
//! aggregation -> blackhole on one core, from a pre-filled topic.
//!
//! `WEIR_BENCH_CHECKPOINT=<seconds>` runs the job with checkpoints at that interval.
//!
//! The topic (3 partitions) is filled first with sensor readings (1,000 sensors, as JSON), unless
//! an earlier run of this binary filled a topic of that name (its end offsets are kept in the
//! temp dir); the timed part is the whole `INSERT ... SELECT` job with a
//! bounded read (`specific-offsets` taken from the producer's delivery reports).

use std::time::Instant;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const PARTITIONS: i32 = 3;

async fn fill(bootstrap: &str, topic: &str, records: usize) -> String {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    let _ = admin.create_topics([&new], &AdminOptions::new()).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let mut ends = [0i64; PARTITIONS as usize];
    let start = 1_704_067_200_000i64;
    let mut pending = Vec::with_capacity(100_000);
    for i in 0..records {
        let sensor = i % 1000;
        let ts = chrono::DateTime::from_timestamp_millis(start + i as i64).expect("ts");
        let value = format!(
            r#"{{"sensor_id":"sensor-{sensor:04}","temperature":{:.2},"ts":"{}"}}"#,
            (i * 7 % 4000) as f64 / 100.0,
            ts.format("%Y-%m-%d %H:%M:%S%.3f")
        );
        let p = (sensor % PARTITIONS as usize) as i32;
        let mut rec = FutureRecord::<(), String>::to(topic)
            .partition(p)
            .payload(&value);
        loop {
            match producer.send_result(rec) {
                Ok(f) => break pending.push(f),
                Err((_, r)) => {
                    rec = r;
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            }
        }
        if pending.len() == 100_000 {
            drain(&mut pending, &mut ends).await;
        }
    }
    drain(&mut pending, &mut ends).await;
    ends.iter()
        .enumerate()
        .map(|(p, o)| format!("partition:{p},offset:{o}"))
        .collect::<Vec<_>>()
        .join(";")
}

async fn drain(pending: &mut Vec<rdkafka::producer::DeliveryFuture>, ends: &mut [i64]) {
    for f in pending.drain(..) {
        let d = f.await.expect("producer").expect("delivered");
        ends[d.partition as usize] = ends[d.partition as usize].max(d.offset + 1);
    }
}

async fn run(bootstrap: &str, topic: &str, records: usize) -> weir::Result<()> {
    // A topic filled by an earlier run (same name) is reused: its end offsets were saved.
    let saved = std::env::temp_dir().join(format!("weir-kafka-bench-{topic}.ends"));
    let ends = match std::fs::read_to_string(&saved) {
        Ok(ends) => ends,
        Err(_) => {
            let t_fill = Instant::now();
            let ends = fill(bootstrap, topic, records).await;
            eprintln!(
                "filled {records} records in {:.1} s; end offsets {ends}",
                t_fill.elapsed().as_secs_f64()
            );
            let _ = std::fs::write(&saved, &ends);
            ends
        }
    };
    let sql = format!(
        "CREATE TABLE r (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
         WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
               'format' = 'json', 'scan.startup.mode' = 'earliest-offset',
               'scan.bounded.mode' = 'specific-offsets', 'scan.bounded.specific-offsets' = '{ends}');
         CREATE TABLE sink (sensor_id STRING, window_start TIMESTAMP(3), avg_temp DOUBLE,
           max_temp DOUBLE, min_temp DOUBLE, n BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO sink SELECT sensor_id, TUMBLE_START(ts, INTERVAL '1' MINUTE), AVG(temperature),
           MAX(temperature), MIN(temperature), COUNT(*)
         FROM r GROUP BY sensor_id, TUMBLE(ts, INTERVAL '1' MINUTE);"
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    // WEIR_BENCH_CHECKPOINT=<seconds>: checkpoint at that interval into a temporary directory.
    let interval = std::env::var("WEIR_BENCH_CHECKPOINT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok());
    let ckpt = std::env::temp_dir().join(format!("weir-kafka-bench-{}", std::process::id()));
    if let Some(secs) = interval {
        engine.set_checkpointing(Some(weir::CheckpointConfig {
            interval: std::time::Duration::from_secs_f64(secs),
            ..weir::CheckpointConfig::new(&ckpt)
        }));
    }
    let t0 = Instant::now();
    let job = engine.submit(&sql).await?;
    job.wait().await?;
    let secs = t0.elapsed().as_secs_f64();
    let read = weir::engine_metrics::get(&job.metrics().rows_in);
    let checkpoints = job.checkpoints();
    println!(
        "kafka -> json -> tumble 1 min -> blackhole: {read} records in {secs:.2} s = {:.0} records/s on one core; {} checkpoints{}",
        read as f64 / secs,
        checkpoints.len(),
        checkpoints
            .iter()
            .map(|c| c.duration.as_secs_f64() * 1000.0)
            .reduce(f64::max)
            .map_or(String::new(), |ms| format!(" (longest {ms:.0} ms)"))
    );
    let _ = std::fs::remove_dir_all(&ckpt);
    Ok(())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let records = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000_000);
    let topic = args
        .next()
        .unwrap_or_else(|| format!("weir-bench-{}", std::process::id()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(run(&bootstrap, &topic, records)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
