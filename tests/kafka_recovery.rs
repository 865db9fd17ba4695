//! Kafka source recovery (issue 14): positions of quiet partitions survive `kill -9`, and
//! checkpointed offsets reach the consumer group for the tools people use and for
//! `scan.startup.mode = 'group-offsets'`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::chaos::{committed_files, latest_checkpoint, start};
use crate::common::kafka::Broker;
use crate::common::wait_for;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-krec-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A job copying `{"id": ...}` records of `topic` into the exactly-once file sink `out`.
fn job_file(dir: &Path, broker: &Broker, topic: &str, mode: &str, out: &Path) -> PathBuf {
    let sql = format!(
        "SET 'execution.checkpointing.interval' = '200 ms';
         CREATE TABLE src (id STRING) WITH ('connector' = 'kafka', 'topic' = '{topic}',
           'format' = 'json', 'properties.bootstrap.servers' = '{}',
           'properties.group.id' = 'group-{topic}', 'scan.startup.mode' = '{mode}');
         CREATE TABLE out (id STRING) WITH ('connector' = 'filesystem', 'path' = '{}',
           'format' = 'json');
         INSERT INTO out SELECT id FROM src;",
        broker.bootstrap,
        out.display()
    );
    let path = dir.join(format!("{mode}.sql"));
    std::fs::write(&path, sql).unwrap();
    path
}

fn records(prefix: &str, n: usize, partition: i32) -> Vec<(i32, String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let v = format!(r#"{{"id":"{prefix}{i}"}}"#);
            (partition, format!("{prefix}{i}"), v.into_bytes())
        })
        .collect()
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"id":"{prefix}{i}"}}"#))
        .collect()
}

/// Wait until the committed output holds every row of `want` (the counts are checked by the
/// caller); panics after 60 s or if the job exits.
async fn wait_for_rows(child: &mut Child, out: &Path, want: &[String]) -> BTreeMap<String, usize> {
    let what = format!("{} committed rows", want.len());
    wait_for(Duration::from_secs(60), &what, async || {
        let rows = committed_so_far(out);
        assert!(child.try_wait().unwrap().is_none(), "the job exited");
        want.iter().all(|w| rows.contains_key(w)).then_some(rows)
    })
    .await
}

/// The rows committed to `out` so far (none before the folder exists).
fn committed_so_far(out: &Path) -> BTreeMap<String, usize> {
    if out.exists() {
        committed_files(out)
    } else {
        BTreeMap::new()
    }
}

/// Wait for a checkpoint newer than the current one.
async fn next_checkpoint(ckpt: &Path) {
    let before = latest_checkpoint(ckpt);
    let newer = async || (latest_checkpoint(ckpt) > before).then_some(());
    wait_for(Duration::from_secs(30), "a new checkpoint", newer).await;
}

/// The offsets group `group` committed for partitions 0 and 1 of `topic`.
fn group_offsets(broker: &Broker, group: &str, topic: &str) -> Vec<Offset> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    tpl.add_partition(topic, 1);
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    (0..2)
        .map(|p| got.find_partition(topic, p).unwrap().offset())
        .collect()
}

#[tokio::test]
async fn latest_offset_keeps_a_quiet_partitions_records_across_kill_9() {
    let broker = Broker::start();
    let topic = "quiet";
    broker.create_topic(topic, 2).await;
    let dir = scratch("quiet");
    let (out, ckpt) = (dir.join("out"), dir.join("ck"));
    let job = job_file(&dir, &broker, topic, "latest-offset", &out);
    let mut child = start(&job, &ckpt);
    // Partition 0 is busy; partition 1 stays quiet while the job runs.
    let mut round = 0;
    let rows = wait_for(Duration::from_secs(60), "rows of partition 0", async || {
        round += 1;
        broker
            .produce(topic, &records(&format!("a{round}_"), 20, 0), 2)
            .await;
        let rows = committed_so_far(&out);
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert!(rows.keys().all(|r| r.contains("\"a")), "{rows:?}");
    next_checkpoint(&ckpt).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // While the job is down, the quiet partition gets records, and so does the busy one.
    broker.produce(topic, &records("b", 10, 1), 2).await;
    broker.produce(topic, &records("c", 5, 0), 2).await;
    let mut child = start(&job, &ckpt);
    let want: Vec<String> = ids("b", 10).into_iter().chain(ids("c", 5)).collect();
    wait_for_rows(&mut child, &out, &want).await;
    next_checkpoint(&ckpt).await;
    let rows = committed_files(&out);
    for w in &want {
        assert_eq!(rows[w], 1, "{w} committed {} times", rows[w]);
    }
    assert!(
        rows.values().all(|n| *n == 1),
        "a row committed twice: {rows:?}"
    );
    // The checkpointed offsets reached the consumer group (as kafka-consumer-groups shows).
    // Every record was read: partition 0 holds the `a` rounds and the `c` records.
    let ends = [round as i64 * 20 + 5, 10];
    let want: Vec<Offset> = ends.iter().map(|e| Offset::Offset(*e)).collect();
    let what = format!("group offsets {want:?}");
    wait_for(Duration::from_secs(20), &what, async || {
        let got = group_offsets(&broker, &format!("group-{topic}"), topic);
        (got == want).then_some(())
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn group_offsets_resume_where_the_last_checkpoint_committed() {
    let broker = Broker::start();
    let topic = "grouped";
    broker.create_topic(topic, 2).await;
    broker.produce(topic, &records("x", 10, 0), 2).await;
    broker.produce(topic, &records("y", 10, 1), 2).await;
    let dir = scratch("grouped");
    // First run: the group has no offsets, so it starts at the earliest (the fallback).
    let (out1, ck1) = (dir.join("out1"), dir.join("ck1"));
    let job1 = job_file(&dir, &broker, topic, "group-offsets", &out1);
    let mut child = start(&job1, &ck1);
    let first: Vec<String> = ids("x", 10).into_iter().chain(ids("y", 10)).collect();
    wait_for_rows(&mut child, &out1, &first).await;
    next_checkpoint(&ck1).await;
    next_checkpoint(&ck1).await;
    child.kill().unwrap();
    child.wait().unwrap();
    // Second run, new checkpoint directory: only what came after the committed offsets.
    broker.produce(topic, &records("z", 5, 1), 2).await;
    let dir2 = dir.join("second");
    std::fs::create_dir_all(&dir2).unwrap();
    let (out2, ck2) = (dir.join("out2"), dir.join("ck2"));
    let job2 = job_file(&dir2, &broker, topic, "group-offsets", &out2);
    let mut child = start(&job2, &ck2);
    wait_for_rows(&mut child, &out2, &ids("z", 5)).await;
    next_checkpoint(&ck2).await;
    let rows = committed_files(&out2);
    assert_eq!(rows.len(), 5, "the second run read again: {rows:?}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Write `n` records marked as the exactly-once sink marks them, in one committed transaction.
async fn produce_marked(broker: &Broker, topic: &str, marker: &str, n: u64) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("transactional.id", format!("test-{topic}"))
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    for seq in 0..n {
        let s = seq.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "weir.txn",
                value: Some(marker),
            })
            .insert(Header {
                key: "weir.seq",
                value: Some(&s),
            });
        let rec = FutureRecord::to(topic)
            .partition((seq % 2) as i32)
            .key(&s)
            .payload(&s)
            .headers(headers);
        producer.send(rec, Duration::from_secs(10)).await.unwrap();
    }
    producer
        .commit_transaction(Duration::from_secs(30))
        .unwrap();
}

fn read_committed(broker: &Broker) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "recovery-test")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    c
}

#[tokio::test]
async fn the_recovery_scan_waits_for_a_paused_broker_instead_of_guessing() {
    let broker = Broker::start();
    let topic = "txn-slow";
    broker.create_topic(topic, 2).await;
    produce_marked(&broker, topic, "weir-t:7", 40).await;
    broker.pause();
    let config = read_committed(&broker);
    let scan = std::thread::spawn(move || {
        let from = BTreeMap::from([(0, 0), (1, 0)]);
        let t0 = Instant::now();
        let r = weir::connectors::testing::visible_seqs(
            &config,
            topic,
            &from,
            "weir-t:7",
            Duration::from_secs(60),
        );
        (r, t0.elapsed())
    });
    tokio::time::sleep(Duration::from_secs(6)).await; // longer than any "quiet means done"
    broker.resume();
    let (seen, took) = scan.join().unwrap();
    let seen = seen.expect("the scan completes once the broker answers");
    assert!(
        took >= Duration::from_secs(5),
        "the scan ended while the broker was paused"
    );
    assert_eq!(
        seen.len(),
        40,
        "rows already committed were missed: {seen:?}"
    );
}

#[tokio::test]
async fn the_recovery_scan_fails_with_a_message_when_the_broker_stays_away() {
    let broker = Broker::start();
    let topic = "txn-gone";
    broker.create_topic(topic, 2).await;
    produce_marked(&broker, topic, "weir-t:3", 10).await;
    broker.pause();
    let from = BTreeMap::from([(0, 0), (1, 0)]);
    let r = weir::connectors::testing::visible_seqs(
        &read_committed(&broker),
        topic,
        &from,
        "weir-t:3",
        Duration::from_secs(3),
    );
    broker.resume();
    let e = r.expect_err("no guess while the broker is away");
    assert!(e.contains("recovery could not read"), "{e}");
}

/// A transaction left open by `txn_id` (as a crashed producer leaves it), holding back
/// `read_committed` readers of partitions 0 and 1 from its first record on.
async fn leave_open(
    broker: &Broker,
    topic: &str,
    txn_id: &str,
) -> rdkafka::producer::FutureProducer {
    use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("transactional.id", txn_id)
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    for p in [0, 1] {
        let rec = FutureRecord::to(topic)
            .partition(p)
            .key("k")
            .payload("open");
        producer.send(rec, Duration::from_secs(10)).await.unwrap();
    }
    producer
}

#[tokio::test]
async fn the_recovery_scan_waits_for_an_open_transaction_before_rows_committed_after_it() {
    use rdkafka::producer::{BaseProducer, Producer};
    let broker = Broker::start();
    let topic = "txn-open";
    broker.create_topic(topic, 2).await;
    let _open = leave_open(&broker, topic, "crashed-subtask").await;
    produce_marked(&broker, topic, "weir-t:9", 30).await;
    let config = read_committed(&broker);
    let scan = std::thread::spawn(move || {
        let from = BTreeMap::from([(0, 0), (1, 0)]);
        weir::connectors::testing::visible_seqs(
            &config,
            topic,
            &from,
            "weir-t:9",
            Duration::from_secs(60),
        )
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !scan.is_finished(),
        "the scan ended behind an open transaction"
    );
    // A restarted sink fences the crashed producer's id, which aborts its transaction.
    let fence: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("transactional.id", "crashed-subtask")
        .create()
        .unwrap();
    fence.init_transactions(Duration::from_secs(30)).unwrap();
    let seen = scan
        .join()
        .unwrap()
        .expect("the scan ends once the transaction is aborted");
    assert_eq!(
        seen.len(),
        30,
        "rows committed after the open transaction were missed"
    );
}
