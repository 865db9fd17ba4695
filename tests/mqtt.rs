//! The `mqtt` connector against the Mosquitto broker at 127.0.0.1:1883: a window over QoS-1
//! input, nothing lost across `kill -9` of a checkpointing `weir run`, wildcard topics with the
//! `topic` column, bad payloads on the dead-letter topic, and the sink (fixed and routed
//! topics). Every test uses topics and client ids of its own (process id and a counter), and
//! removes the persistent sessions it made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::chaos::{committed_files, latest_checkpoint, start};
use crate::common::*;

const URL: &str = "tcp://127.0.0.1:1883";

/// A name no other test (or test run) uses.
fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("weir-{}-{n}-{name}", std::process::id())
}

/// A test client: its event loop runs in a task that hands every incoming packet over.
struct Client {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Packet>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    /// Connect as `id`; `persistent` keeps the session (an hour) after a disconnect.
    async fn connect(id: &str, persistent: bool) -> Client {
        Client::connect_to(1883, id, persistent).await
    }

    /// [`Client::connect`] to the broker at 127.0.0.1:`port` (plain TCP).
    async fn connect_to(port: u16, id: &str, persistent: bool) -> Client {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_clean_start(!persistent);
        o.set_session_expiry_interval(persistent.then_some(3600));
        let (client, mut eventloop) = AsyncClient::new(o, 10_000);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let mut c = Client { client, rx, task };
        c.expect("a CONNACK", |p| {
            matches!(p, Packet::ConnAck(_)).then_some(())
        })
        .await;
        c
    }

    /// The first packet `f` accepts (others are skipped), within 20 s.
    async fn expect<T>(&mut self, what: &str, mut f: impl FnMut(Packet) -> Option<T>) -> T {
        let limit = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let p = tokio::time::timeout_at(limit, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("the test client's event loop stopped");
            if let Some(v) = f(p) {
                return v;
            }
        }
    }

    async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        self.expect("a SUBACK", |p| matches!(p, Packet::SubAck(_)).then_some(()))
            .await;
    }

    /// Publish each payload at QoS 1 and wait for the broker's acknowledgements.
    async fn publish(&mut self, topic: &str, payloads: &[String]) {
        for p in payloads {
            self.client
                .publish(topic, QoS::AtLeastOnce, false, p.clone())
                .await
                .unwrap();
        }
        for _ in payloads {
            self.expect("a PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(()))
                .await;
        }
    }

    /// The next `n` messages received.
    async fn messages(&mut self, n: usize) -> Vec<Publish> {
        let mut got = Vec::new();
        while got.len() < n {
            let what = format!("message {} of {n}", got.len() + 1);
            got.push(
                self.expect(&what, |p| match p {
                    Packet::Publish(p) => Some(p),
                    _ => None,
                })
                .await,
            );
        }
        got
    }

    async fn close(self) {
        self.client.disconnect().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// A persistent session for `id` subscribed to `filters`, made before the job starts so that
/// messages published before it connects wait for it.
async fn session(id: &str, filters: &[&str]) {
    let mut c = Client::connect(id, true).await;
    for f in filters {
        c.subscribe(f).await;
    }
    c.close().await;
}

/// Remove the persistent session of `id` from the broker.
async fn forget_session(id: &str) {
    Client::connect(id, false).await.close().await;
}

async fn publisher() -> Client {
    Client::connect(&unique("pub"), false).await
}

fn text(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

/// Rows of `stream` until there are `n` (panics after 30 s).
async fn rows_of(stream: &mut weir::QueryStream, n: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    while rows.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(30), stream.next_batch())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} rows within 30 s: {rows:?}", rows.len()))
            .expect("the query ended")
            .unwrap();
        rows.extend(to_json(&[batch], None));
    }
    rows
}

fn sorted(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|r| r.to_string());
    rows
}

#[tokio::test]
async fn mqtt_qos1_input_through_a_window_gives_exact_results() {
    let (topic, id) = (unique("readings"), unique("window-job"));
    session(&id, &[&topic]).await;
    // 60 readings over three one-minute windows, three sensors; then one far later closes them.
    let mut payloads: Vec<String> = (0..60)
        .map(|i| {
            format!(
                r#"{{"sensor":"s{}","v":{i},"ts":"2024-01-01 00:{:02}:{:02}.000"}}"#,
                i % 3,
                i / 20,
                i % 20
            )
        })
        .collect();
    payloads.push(r#"{"sensor":"s0","v":0,"ts":"2024-01-01 01:00:00.000"}"#.into());
    let mut p = publisher().await;
    p.publish(&topic, &payloads).await;
    let sql = format!(
        "CREATE TABLE r (sensor STRING, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
         WITH ('connector' = 'mqtt', 'url' = '{URL}', 'topic' = '{topic}', 'client-id' = '{id}',
               'format' = 'json');
         SELECT sensor, window_start, COUNT(*) AS c, SUM(v) AS s
         FROM TABLE(TUMBLE(TABLE r, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY sensor, window_start, window_end;"
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let mut stream = engine.query(&sql).await.unwrap();
    let rows = rows_of(&mut stream, 9).await;
    stream.job().cancel();
    let mut expected = Vec::new();
    for minute in 0..3i64 {
        for s in 0..3i64 {
            let vs: Vec<i64> = (minute * 20..minute * 20 + 20)
                .filter(|i| i % 3 == s)
                .collect();
            expected.push(json!({
                "sensor": format!("s{s}"),
                "window_start": format!("2024-01-01 00:{minute:02}:00.000"),
                "c": vs.len(),
                "s": vs.iter().sum::<i64>(),
            }));
        }
    }
    assert_eq!(sorted(rows), sorted(expected));
    p.close().await;
    forget_session(&id).await;
}

#[tokio::test]
async fn mqtt_wildcard_topics_fill_the_topic_column() {
    let base = unique("wild");
    let filters = format!("{base}/sensors/+/temp, {base}/plant/#,{base}/other/x");
    let id = unique("wild-job");
    let list: Vec<String> = filters.split(',').map(|f| f.trim().to_string()).collect();
    session(&id, &list.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut p = publisher().await;
    let sends = [
        ("sensors/a/temp", 1),
        ("sensors/b/temp", 2),
        ("sensors/a/humidity", 3), // matches no filter
        ("plant", 4),
        ("plant/line1/motor", 5),
        ("other/x", 6),
        ("other/y", 7), // matches no filter
    ];
    for (t, v) in sends {
        p.publish(&format!("{base}/{t}"), &[format!(r#"{{"v":{v}}}"#)])
            .await;
    }
    let sql = format!(
        "CREATE TABLE t (v INT, tp STRING METADATA FROM 'topic', q INT METADATA FROM 'qos',
           r BOOLEAN METADATA FROM 'retain', mid INT METADATA FROM 'message_id')
         WITH ('connector' = 'mqtt', 'url' = '{URL}', 'topic' = '{filters}', 'client-id' = '{id}',
               'format' = 'json');
         SELECT v, tp, q, r, mid IS NOT NULL AS has_id FROM t;"
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let mut stream = engine.query(&sql).await.unwrap();
    let rows = rows_of(&mut stream, 5).await;
    let expected: Vec<Value> = [1, 2, 4, 5, 6]
        .iter()
        .map(|v| {
            let t = sends.iter().find(|s| s.1 == *v).unwrap().0;
            json!({"v": v, "tp": format!("{base}/{t}"), "q": 1, "r": false, "has_id": true})
        })
        .collect();
    assert_eq!(sorted(rows), sorted(expected));
    // Nothing else arrives (the two unmatched topics).
    let more = tokio::time::timeout(Duration::from_millis(500), stream.next_batch()).await;
    assert!(more.is_err(), "unexpected rows: {more:?}");
    stream.job().cancel();
    p.close().await;
    forget_session(&id).await;
}

#[tokio::test]
async fn mqtt_bad_payloads_go_to_the_dead_letter_topic_with_their_origin() {
    let (topic, dlq, id) = (unique("dirty"), unique("dlq"), unique("dirty-job"));
    session(&id, &[&topic]).await;
    let mut dead = Client::connect(&unique("dlq-reader"), false).await;
    dead.subscribe(&dlq).await;
    let mut p = publisher().await;
    let payloads = [
        r#"{"k":"a","v":1}"#,
        r#"{"k":"a","v":"#,
        r#"{"k":"b","v":2}"#,
    ]
    .map(String::from);
    p.publish(&topic, &payloads).await;
    let sql = format!(
        "CREATE TABLE t (k STRING, v INT)
         WITH ('connector' = 'mqtt', 'url' = '{URL}', 'topic' = '{topic}', 'client-id' = '{id}',
               'format' = 'json', 'dead-letter.topic' = '{dlq}');
         SELECT k, v FROM t;"
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let mut stream = engine.query(&sql).await.unwrap();
    let rows = rows_of(&mut stream, 2).await;
    assert_eq!(
        sorted(rows),
        vec![json!({"k": "a", "v": 1}), json!({"k": "b", "v": 2})]
    );
    let letters = dead.messages(1).await;
    let letter = &letters[0];
    assert_eq!(text(letter), r#"{"k":"a","v":"#);
    let props: BTreeMap<String, String> = letter
        .properties
        .as_ref()
        .map(|p| p.user_properties.iter().cloned().collect())
        .unwrap_or_default();
    assert_eq!(props.get("weir.source.topic"), Some(&topic), "{props:?}");
    assert!(props.contains_key("weir.source.message-id"), "{props:?}");
    assert!(
        props.get("weir.reason").is_some_and(|r| !r.is_empty()),
        "{props:?}"
    );
    let reported = stream.job().dead_letters();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert!(
        reported[0].position.starts_with(&format!("{topic}@")),
        "{reported:?}"
    );
    stream.job().cancel();
    for c in [p, dead] {
        c.close().await;
    }
    forget_session(&id).await;
}

/// A bounded JSON-lines file of `rows` in a fresh directory.
fn input_file(name: &str, rows: &[Value]) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("in.jsonl");
    let text: Vec<String> = rows.iter().map(Value::to_string).collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    path
}

#[tokio::test]
async fn mqtt_sink_publishes_each_row_as_json_to_its_topic() {
    let base = unique("out");
    let rows: Vec<Value> = (0..20)
        .map(|i| json!({"id": i, "name": format!("n{i}"), "room": format!("{base}/room{}", i % 2)}))
        .collect();
    let input = input_file("sink-in", &rows);
    let mut sub = Client::connect(&unique("sink-reader"), false).await;
    sub.subscribe(&format!("{base}/#")).await;
    let sql = format!(
        "CREATE TABLE src (id BIGINT, name STRING, room STRING)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE fixed (id BIGINT, name STRING)
           WITH ('connector' = 'mqtt', 'url' = '{URL}', 'topic' = '{base}/all');
         CREATE TABLE routed (id BIGINT, name STRING, room STRING)
           WITH ('connector' = 'mqtt', 'url' = '{URL}', 'sink.topic-column' = 'room', 'qos' = '2');
         INSERT INTO fixed SELECT id, name FROM src;
         INSERT INTO routed SELECT id, name, room FROM src;",
        input.display()
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    for o in engine.execute(&sql).await.unwrap() {
        if let weir::Output::Job(j) = o {
            j.wait().await.unwrap();
        }
    }
    let got = sub.messages(40).await;
    let mut fixed = Vec::new();
    let mut routed = Vec::new();
    for m in &got {
        let topic = String::from_utf8_lossy(&m.topic).into_owned();
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        if topic == format!("{base}/all") {
            fixed.push(v);
        } else {
            assert_eq!(v["room"], json!(topic), "routed by its column: {v}");
            routed.push(v);
        }
    }
    let want_fixed: Vec<Value> = rows
        .iter()
        .map(|r| json!({"id": r["id"], "name": r["name"]}))
        .collect();
    assert_eq!(sorted(fixed), sorted(want_fixed));
    assert_eq!(sorted(routed), sorted(rows));
    let extra = tokio::time::timeout(Duration::from_millis(500), sub.messages(1)).await;
    assert!(extra.is_err(), "more messages than rows");
    sub.close().await;
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA named `name`: `ca.pem` and `ca.key` in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let subject = format!("/CN={name}");
    let args = [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
    ];
    let rest = ["-out", "ca.pem", "-days", "2", "-subj", subject.as_str()];
    openssl(dir, &[&args[..], &rest[..]].concat());
}

/// A Mosquitto of the test's own with a TLS listener (certificate for `localhost` from a
/// private CA, `ca.pem` in `dir`) and a plain one: (TLS port, plain port, the process).
fn tls_broker(dir: &Path) -> (u16, u16, std::process::Child) {
    make_ca(dir, "weir-test-ca");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    // Mosquitto started as root reads its files as the `mosquitto` user: a throwaway test key
    // may be readable by all.
    use std::os::unix::fs::PermissionsExt;
    let readable = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(dir.join("server.key"), readable).unwrap();
    let (tls, plain) = (free_port(), free_port());
    let conf = format!(
        "allow_anonymous true\nlistener {tls} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\n\
         keyfile {0}/server.key\nlistener {plain} 127.0.0.1\n",
        dir.display()
    );
    std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
    let child = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto runs");
    for port in [tls, plain] {
        wait_for_blocking(Duration::from_secs(10), "the test broker", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
    }
    (tls, plain, child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_reads_and_writes_through_a_private_ca() {
    let dir = std::env::temp_dir().join(unique("tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let (tls, plain, mut broker) = tls_broker(&dir);
    let ca = dir.join("ca.pem");
    let e = weir::Engine::new();
    e.set_quiet(true);
    e.execute(&format!(
        "CREATE TABLE tin (v BIGINT) WITH ('connector' = 'mqtt', 'url' = 'ssl://localhost:{tls}',
           'ssl.ca-file' = '{0}', 'topic' = 'tls/in', 'format' = 'json');
         CREATE TABLE tout (v BIGINT) WITH ('connector' = 'mqtt', 'url' = 'mqtts://localhost:{tls}',
           'ssl.ca-file' = '{0}', 'topic' = 'tls/out');",
        ca.display()
    ))
    .await
    .unwrap();
    let mut watcher = Client::connect_to(plain, &unique("watch"), false).await;
    watcher.subscribe("tls/out").await;
    let job = e
        .submit("INSERT INTO tout SELECT v * 10 FROM tin;")
        .await
        .unwrap();
    // The job's source subscribes when it connects; publish until its rows come out.
    let mut publisher = Client::connect_to(plain, &unique("pub"), false).await;
    let payloads: Vec<String> = (1..=5).map(|v| format!("{{\"v\":{v}}}")).collect();
    let mut got = Vec::new();
    for _ in 0..20 {
        publisher.publish("tls/in", &payloads).await;
        let next = tokio::time::timeout(Duration::from_secs(1), watcher.messages(5)).await;
        if let Ok(msgs) = next {
            got = msgs.iter().map(text).collect();
            break;
        }
    }
    job.cancel();
    let _ = broker.kill();
    let _ = broker.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let got: Vec<Value> = got
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    assert_eq!(
        sorted(got),
        sorted((1..=5).map(|v| json!({"v": v * 10})).collect()),
        "rows read over TLS and written over TLS"
    );
}

#[tokio::test]
async fn mqtt_tls_with_a_certificate_the_ca_did_not_sign_is_refused() {
    let dir = std::env::temp_dir().join(unique("tls-bad"));
    std::fs::create_dir_all(&dir).unwrap();
    let (tls, _plain, mut broker) = tls_broker(&dir);
    // Another CA: the broker's certificate does not chain to it.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    make_ca(&other, "someone-else");
    let e = weir::Engine::new();
    e.set_quiet(true);
    let stream = e
        .query(&format!(
            "CREATE TABLE t (v BIGINT) WITH ('connector' = 'mqtt', 'url' = 'ssl://localhost:{tls}',
               'ssl.ca-file' = '{}', 'topic' = 'x', 'format' = 'json');
             SELECT v FROM t;",
            other.join("ca.pem").display()
        ))
        .await
        .unwrap();
    // The broker's certificate is not trusted: the job fails, saying so.
    let job = stream.job().clone();
    let ended = tokio::time::timeout(Duration::from_secs(20), job.wait()).await;
    let err = match ended {
        Ok(Err(e)) => e.to_string(),
        other => panic!("the job should fail on the untrusted certificate: {other:?}"),
    };
    assert!(err.contains("TLS with the broker failed"), "{err}");
    let _ = broker.kill();
    let _ = broker.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The job of the crash test: `id` values of `topic` into the exactly-once file sink `out`,
/// checkpointing every 200 ms.
fn crash_job(dir: &Path, topic: &str, id: &str, out: &Path) -> PathBuf {
    let sql = format!(
        "SET 'execution.checkpointing.interval' = '200 ms';
         CREATE TABLE src (id STRING) WITH ('connector' = 'mqtt', 'url' = '{URL}',
           'topic' = '{topic}', 'client-id' = '{id}', 'format' = 'json');
         CREATE TABLE out (id STRING) WITH ('connector' = 'filesystem', 'path' = '{}',
           'format' = 'json');
         INSERT INTO out SELECT id FROM src;",
        out.display()
    );
    let path = dir.join("job.sql");
    std::fs::write(&path, sql).unwrap();
    path
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"id":"{prefix}{i}"}}"#))
        .collect()
}

/// The committed rows so far (none before the folder exists).
fn committed(out: &Path) -> BTreeMap<String, usize> {
    if out.exists() {
        committed_files(out)
    } else {
        BTreeMap::new()
    }
}

#[tokio::test]
async fn mqtt_kill_9_mid_stream_loses_no_message() {
    let (topic, id) = (unique("crash"), unique("crash-job"));
    let dir = std::env::temp_dir().join(unique("crash-dir"));
    std::fs::create_dir_all(&dir).unwrap();
    let (out, ckpt) = (dir.join("out"), dir.join("ck"));
    let job = crash_job(&dir, &topic, &id, &out);
    session(&id, &[&topic]).await;
    let mut p = publisher().await;
    p.publish(&topic, &ids("a", 100)).await; // waiting in the session before the job starts
    let mut child = start(&job, &ckpt);
    let mut want = ids("a", 100);
    wait_for(
        Duration::from_secs(60),
        "the first committed rows",
        async || {
            assert!(child.try_wait().unwrap().is_none(), "the job exited");
            (!committed(&out).is_empty()).then_some(())
        },
    )
    .await;
    // More while it runs, then a kill right after a checkpoint, then more while it is down.
    p.publish(&topic, &ids("b", 100)).await;
    want.extend(ids("b", 100));
    let before = latest_checkpoint(&ckpt);
    wait_for(Duration::from_secs(30), "a new checkpoint", async || {
        (latest_checkpoint(&ckpt) > before).then_some(())
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    p.publish(&topic, &ids("c", 100)).await;
    want.extend(ids("c", 100));
    let mut child = start(&job, &ckpt);
    let rows = wait_for(
        Duration::from_secs(60),
        "every message committed",
        async || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the restarted job exited"
            );
            let rows = committed(&out);
            want.iter().all(|w| rows.contains_key(w)).then_some(rows)
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    // At-least-once: nothing missing; a message is committed twice at most (when the crash
    // came after its checkpoint completed but before its acknowledgement reached the broker),
    // and nothing that was not published shows up.
    assert!(
        rows.keys().all(|r| want.contains(r)),
        "unknown rows: {rows:?}"
    );
    let twice: Vec<_> = rows.iter().filter(|(_, n)| **n > 1).collect();
    assert!(rows.values().all(|n| *n <= 2), "{twice:?}");
    p.close().await;
    forget_session(&id).await;
    let _ = std::fs::remove_dir_all(&dir);
}
