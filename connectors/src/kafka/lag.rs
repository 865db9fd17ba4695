//! Consumer lag per partition (log end offset minus the source's position), measured off the
//! data path: a thread with its own client asks the broker for each partition's end offset
//! every [`INTERVAL`] and publishes the lag in the job's metrics
//! (`weir_kafka_consumer_lag_records`). The source only hands over its positions, once per
//! batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use weir_engine::observe::metrics::JobMetrics;

use super::source::Part;
use super::KafkaOptions;

/// How often end offsets are fetched.
pub const INTERVAL: Duration = Duration::from_secs(2);

type Positions = Arc<Mutex<BTreeMap<(String, i32), i64>>>;

/// The lag thread of one source; it stops when this is dropped.
pub(super) struct LagMonitor {
    positions: Positions,
    stop: Arc<AtomicBool>,
}

impl LagMonitor {
    /// Start measuring; `None` when a client cannot be created (lag is then not reported).
    pub fn start(options: &KafkaOptions, metrics: Arc<JobMetrics>) -> Option<Self> {
        let mut config = options.client_config();
        super::set_default(&mut config, "group.id", "weir-lag-monitor");
        let client: BaseConsumer = config.create().ok()?;
        let positions: Positions = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (positions.clone(), stop.clone());
        std::thread::Builder::new()
            .name("weir-kafka-lag".into())
            .spawn(move || watch(client, p, s, metrics))
            .ok()?;
        Some(Self { positions, stop })
    }

    /// The source's positions after a batch.
    pub fn update(&self, parts: &[Part]) {
        let mut p = self.positions.lock().expect("lock");
        for part in parts {
            if let Some(next) = part.next {
                p.insert((part.topic.clone(), part.partition), next);
            }
        }
    }
}

impl Drop for LagMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn watch(
    client: BaseConsumer,
    positions: Positions,
    stop: Arc<AtomicBool>,
    metrics: Arc<JobMetrics>,
) {
    while !stop.load(Ordering::Relaxed) {
        let now: Vec<((String, i32), i64)> = positions
            .lock()
            .expect("lock")
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for ((topic, partition), pos) in now {
            if let Ok((_, high)) = client.fetch_watermarks(&topic, partition, INTERVAL) {
                let lag = (high - pos).max(0);
                metrics
                    .kafka_lag
                    .lock()
                    .expect("lock")
                    .insert((topic, partition), lag);
            }
        }
        let mut slept = Duration::ZERO;
        while slept < INTERVAL && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            slept += Duration::from_millis(100);
        }
    }
}
