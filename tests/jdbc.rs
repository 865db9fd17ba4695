//! The `jdbc` connector against a real PostgreSQL (see `common::postgres`): append and upsert
//! sinks (a GROUP BY with HAVING whose rows leave ends as the query's final table), exactly-once
//! writes across a crash, a partitioned scan, a lookup join (cache hits and misses, expiry, a
//! missing key kept by a LEFT join) and connections the server drops mid-run.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weir::engine_metrics::get;

use crate::checkpoints::{engine_with_memory, run_and_crash, scratch};
use crate::common::postgres::{client, exec, rows, unique, url};
use crate::common::*;

/// The `WITH` options of a `jdbc` table `table` (JDBC URL form), then `extra`.
fn jdbc(table: &str, extra: &str) -> String {
    let jdbc_url = url().replacen("postgres://", "jdbc:postgresql://", 1);
    format!("'connector' = 'jdbc', 'url' = '{jdbc_url}', 'table-name' = '{table}'{extra}")
}

/// A JSON-lines file of `rows` in a fresh directory, and a `filesystem` table `name` over it.
fn input(dir: &Path, name: &str, columns: &str, rows: &[Value], extra: &str) -> String {
    let path = dir.join(format!("{name}.jsonl"));
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&path, text).unwrap();
    format!(
        "CREATE TABLE {name} ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}', \
         'format' = 'json'{extra});",
        path.display()
    )
}

fn engine(batch_size: usize) -> weir::Engine {
    let e = weir::Engine::new();
    e.set_quiet(true);
    e.set_batch_size(batch_size);
    e
}

async fn run(engine: &weir::Engine, sql: &str) {
    let job = engine.submit(sql).await.unwrap_or_else(|e| panic!("{e}"));
    job.wait().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn an_append_sink_inserts_every_row_cast_to_the_tables_types() {
    let pg = client().await;
    let t = unique("append");
    exec(&pg, &format!(
        "CREATE TABLE {t} (sensor varchar(20), v integer, ts timestamp(3), note text, extra text DEFAULT 'x')"
    )).await;
    let dir = scratch("jdbc-append");
    let src = input(
        &dir,
        "r",
        "sensor STRING, v BIGINT, ts TIMESTAMP(3)",
        &[
            json!({"sensor": "s1", "v": 1, "ts": "2024-01-01 00:00:00.250"}),
            json!({"sensor": "s2", "v": -4, "ts": "2024-01-01 00:00:01"}),
            json!({"sensor": "s3", "v": 3, "ts": "2024-01-01 00:00:02"}),
            json!({"sensor": "s1", "v": 5, "ts": "2024-01-01 00:00:03"}),
            json!({"sensor": null, "v": 7, "ts": null}),
        ],
        "",
    );
    let sql = format!(
        "{src} CREATE TABLE out (sensor STRING, v BIGINT, ts TIMESTAMP(3), note STRING) WITH ({});
         INSERT INTO out SELECT sensor, v, ts, UPPER(sensor) FROM r WHERE v > 0;",
        jdbc(&t, ", 'sink.buffer-flush.max-rows' = '2'")
    );
    run(&engine(2), &sql).await;
    let got = rows(&pg, &format!("SELECT * FROM {t}")).await;
    let row = |s: Value, v: i64, ts: Value, note: Value| json!({"sensor": s, "v": v, "ts": ts, "note": note, "extra": "x"});
    let expected = vec![
        row(json!(null), 7, json!(null), json!(null)),
        row(json!("s1"), 1, json!("2024-01-01T00:00:00.25"), json!("S1")),
        row(json!("s1"), 5, json!("2024-01-01T00:00:03"), json!("S1")),
        row(json!("s3"), 3, json!("2024-01-01T00:00:02"), json!("S3")),
    ];
    let mut expected = expected;
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(got, expected);
    exec(&pg, &format!("DROP TABLE {t}")).await;
}

/// Readings whose per-sensor sums cross 10 upwards and back: `s1` and `s3` enter the HAVING
/// result and leave it again, `s2` is updated, `s4` enters once.
fn crossing_readings() -> Vec<Value> {
    [
        ("s1", 5),
        ("s2", 3),
        ("s1", 7),
        ("s2", 9),
        ("s3", 20),
        ("s1", -10),
        ("s3", -15),
        ("s2", 1),
        ("s4", 11),
    ]
    .iter()
    .map(|(s, v)| json!({"sensor": s, "v": v}))
    .collect()
}

const TOTALS: &str =
    "SELECT sensor, COUNT(*) AS n, SUM(v) AS total FROM r GROUP BY sensor HAVING SUM(v) > 10";

/// The HAVING query into an upsert table, with batches of `batch_size` rows and, when
/// `checkpoint` is set, checkpoints (the exactly-once path).
async fn upsert_run(batch_size: usize, checkpoint: Option<&Path>) {
    let pg = client().await;
    let t = unique("totals");
    exec(
        &pg,
        &format!("CREATE TABLE {t} (sensor text PRIMARY KEY, n bigint, total numeric(12, 2))"),
    )
    .await;
    let dir = scratch(&format!(
        "jdbc-upsert-{batch_size}-{}",
        checkpoint.is_some()
    ));
    let src = input(
        &dir,
        "r",
        "sensor STRING, v BIGINT",
        &crossing_readings(),
        "",
    );
    let sql = format!(
        "{src} CREATE TABLE totals (sensor STRING, n BIGINT, total DECIMAL(12, 2),
           PRIMARY KEY (sensor) NOT ENFORCED) WITH ({});
         INSERT INTO totals {TOTALS};",
        jdbc(
            &t,
            ", 'sink.buffer-flush.interval' = '0', 'sink.buffer-flush.max-rows' = '1'"
        )
    );
    let e = match checkpoint {
        Some(ck) => engine_with_memory(ck, 1 << 30),
        None => engine(batch_size),
    };
    e.set_batch_size(batch_size);
    run(&e, &sql).await;
    let got = rows(
        &pg,
        &format!("SELECT sensor, n, total::float8 AS total FROM {t}"),
    )
    .await;
    // Flink's final table of the query: s1 and s3 left it again.
    assert_eq!(
        got,
        vec![
            json!({"sensor": "s4", "n": 1, "total": 11}),
            json!({"sensor": "s2", "n": 3, "total": 13})
        ],
        "batch size {batch_size}"
    );
    // The same as the query's own changelog, materialized.
    let changelog = run_query(&format!("{src} {TOTALS}"), batch_size).await;
    assert_eq!(final_table(&changelog).len(), 2);
    exec(&pg, &format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn an_upsert_sink_keeps_the_final_table_of_a_having_query_whose_rows_leave() {
    for batch_size in [1, 4096] {
        upsert_run(batch_size, None).await;
    }
    let ck = scratch("jdbc-upsert-ck");
    upsert_run(1, Some(&ck)).await;
}

#[tokio::test]
async fn an_exactly_once_sink_crashed_mid_stream_writes_each_row_once() {
    let pg = client().await;
    let t = unique("once");
    exec(&pg, &format!("CREATE TABLE {t} (id bigint, half bigint)")).await;
    let (dir, ck) = (scratch("jdbc-once"), scratch("jdbc-once-ck"));
    let n = 3000;
    let data: Vec<Value> = (0..n).map(|i| json!({"id": i})).collect();
    let src = input(
        &dir,
        "r",
        "id BIGINT",
        &data,
        ", 'scan.records-per-second' = '6000'",
    );
    let sql = format!(
        "{src} CREATE TABLE out (id BIGINT, half BIGINT) WITH ({});
         INSERT INTO out SELECT id, id / 2 FROM r;",
        jdbc(&t, "")
    );
    let (crashed, _) = run_and_crash(&sql, &ck, 5, 1 << 30).await;
    let before: i64 = pg
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .await
        .unwrap()
        .get(0);
    let job = engine_with_memory(&ck, 1 << 30).submit(&sql).await.unwrap();
    job.wait().await.unwrap();
    let stats = pg
        .query_one(
            &format!("SELECT count(*), count(DISTINCT id), sum(id)::bigint FROM {t}"),
            &[],
        )
        .await
        .unwrap();
    let (count, distinct, sum): (i64, i64, i64) = (stats.get(0), stats.get(1), stats.get(2));
    eprintln!("jdbc exactly-once: crashed mid-stream {crashed}, {before} rows before the restart");
    assert_eq!((count, distinct), (n, n), "every row once");
    assert_eq!(sum, n * (n - 1) / 2);
    let marks = rows(
        &pg,
        &format!(
            "SELECT sink FROM weir_commits WHERE job LIKE '{}%'",
            ck.display()
        ),
    )
    .await;
    assert_eq!(
        marks,
        vec![json!({"sink": "out"})],
        "the job's commits are marked"
    );
    exec(
        &pg,
        &format!(
            "DROP TABLE {t}; DELETE FROM weir_commits WHERE job LIKE '{}%'",
            ck.display()
        ),
    )
    .await;
}

#[tokio::test]
async fn a_partitioned_scan_reads_every_row_in_range_once() {
    let pg = client().await;
    let t = unique("scan");
    exec(
        &pg,
        &format!(
            "CREATE TABLE {t} (id integer PRIMARY KEY, name text, price numeric(8, 2));
         INSERT INTO {t} SELECT i, 'n' || i, i * 1.5 FROM generate_series(1, 100) i;"
        ),
    )
    .await;
    let ddl = |extra: &str| {
        format!(
            "CREATE TABLE d (id BIGINT, name STRING, price DECIMAL(8, 2)) WITH ({});",
            jdbc(&t, extra)
        )
    };
    let split = ", 'scan.partition.column' = 'id', 'scan.partition.num' = '3', \
        'scan.partition.lower-bound' = '1', 'scan.partition.upper-bound' = '100', 'scan.fetch-size' = '7'";
    let q = "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids, SUM(id) AS s, SUM(price) AS p, MAX(name) AS m FROM d";
    let got = final_table(&run_query(&format!("{} {q}", ddl(split)), 16).await);
    assert_eq!(
        got,
        vec![json!({"n": 100, "ids": 100, "s": 5050, "p": 7575.0, "m": "n99"})]
    );
    // Bounds leave rows out, as in Flink; a query reads what it selects.
    let narrow = split.replace("'100'", "'10'");
    let got =
        final_table(&run_query(&format!("{} SELECT COUNT(*) AS n FROM d", ddl(&narrow)), 16).await);
    assert_eq!(got, vec![json!({"n": 10})]);
    let query = format!(", 'scan.query' = 'SELECT id, name, price FROM {t} WHERE id % 10 = 0'");
    let got =
        final_table(&run_query(&format!("{} SELECT SUM(id) AS s FROM d", ddl(&query)), 16).await);
    assert_eq!(got, vec![json!({"s": 550})]);
    exec(&pg, &format!("DROP TABLE {t}")).await;
}

/// Read rows of `stream` into `seen` until `done(seen)` (true) or 20 s pass (false).
async fn read_until(
    stream: &mut weir::QueryStream,
    seen: &mut Vec<Value>,
    done: &dyn Fn(&[Value]) -> bool,
) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let Some(b) = stream.next_batch().await else {
            break;
        };
        seen.extend(to_json(&[b.unwrap()], None));
        if done(seen) {
            return true;
        }
    }
    false
}

/// Kill the server side of every connection of Weir table `table` (`weir/<table>`).
async fn terminate(pg: &tokio_postgres::Client, table: &str) -> i64 {
    let sql = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'weir/{table}'"
    );
    pg.query_one(&sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_join_caches_expires_keeps_missing_keys_and_survives_a_dropped_connection() {
    let pg = client().await;
    let t = unique("dim");
    exec(
        &pg,
        &format!(
            "CREATE TABLE {t} (id integer PRIMARY KEY, name text);
         INSERT INTO {t} VALUES (1, 'one'), (2, 'two'), (3, 'three');"
        ),
    )
    .await;
    let weir_table = unique("sensors");
    let ddl = format!(
        "CREATE TABLE probe (k BIGINT, pt AS PROCTIME()) WITH ('connector' = 'datagen',
           'rows-per-second' = '200', 'fields.k.min' = '1', 'fields.k.max' = '4');
         CREATE TABLE {weir_table} (id BIGINT, name STRING) WITH ({});",
        jdbc(
            &t,
            ", 'lookup.cache' = 'PARTIAL', 'lookup.partial-cache.max-rows' = '100',
           'lookup.partial-cache.expire-after-write' = '1 s'"
        )
    );
    let sql = format!(
        "SELECT p.k, s.name FROM probe AS p
           LEFT JOIN {weir_table} FOR SYSTEM_TIME AS OF p.pt AS s ON p.k = s.id"
    );
    let e = engine(8);
    // One lookup subtask: the counts below are one cache's (each subtask has its own).
    e.override_option("parallelism.default", "1").unwrap();
    e.execute(&ddl).await.unwrap();
    let plan = e.explain(&sql).unwrap();
    assert!(
        plan.contains("LookupJoin: LEFT") && plan.contains("cache=partial, up to 100 keys"),
        "{plan}"
    );
    let mut stream = e.query(&sql).await.unwrap();
    let names = |batches: &[Value]| -> std::collections::BTreeMap<i64, Value> {
        batches
            .iter()
            .map(|r| (r["k"].as_i64().unwrap(), r["name"].clone()))
            .collect()
    };
    let mut seen = Vec::new();
    assert!(
        read_until(&mut stream, &mut seen, &|s| names(s).len() == 4).await,
        "all four keys come"
    );
    assert_eq!(
        names(&seen),
        [
            (1, json!("one")),
            (2, json!("two")),
            (3, json!("three")),
            (4, json!(null))
        ]
        .into_iter()
        .collect()
    );
    // The server drops the lookup's connection and the name changes: after the cache entry
    // expires (1 s) the new name shows, through a new connection.
    assert!(terminate(&pg, &weir_table).await >= 1);
    exec(&pg, &format!("UPDATE {t} SET name = 'ONE' WHERE id = 1")).await;
    let start = seen.len();
    let renamed = read_until(&mut stream, &mut seen, &|s| {
        s[start..].iter().any(|r| r["name"] == json!("ONE"))
    })
    .await;
    assert!(renamed, "the new name shows after the entry expires");
    let job = stream.job().clone();
    let m = job
        .operator_metrics()
        .into_iter()
        .find(|m| m.name == "LookupJoin")
        .expect("lookup metrics");
    let (hits, misses, queries) = (
        get(&m.lookup_hits),
        get(&m.lookup_misses),
        get(&m.lookup_queries),
    );
    eprintln!(
        "lookup: {} rows, {hits} hits, {misses} misses, {queries} queries",
        seen.len()
    );
    assert!(
        hits > misses,
        "most rows come from the cache: {hits} hits, {misses} misses"
    );
    assert!(
        queries >= 2 && queries < seen.len() as u64 / 4,
        "{queries} queries for {} rows",
        seen.len()
    );
    job.cancel();
    exec(&pg, &format!("DROP TABLE {t}")).await;
}

/// A GROUP BY into an upsert table while the server drops the sink's connection twice: with
/// `checkpoint`, the exactly-once path (written at each checkpoint), else the at-least-once one.
async fn dropped_connection_run(checkpoint: Option<&Path>) {
    let pg = client().await;
    let t = unique("counts");
    exec(
        &pg,
        &format!("CREATE TABLE {t} (k bigint PRIMARY KEY, n bigint)"),
    )
    .await;
    let weir_table = unique("counts");
    let sql = format!(
        "CREATE TABLE g (k BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '400',
           'number-of-rows' = '1200', 'fields.k.min' = '1', 'fields.k.max' = '5');
         CREATE TABLE {weir_table} (k BIGINT, n BIGINT, PRIMARY KEY (k) NOT ENFORCED) WITH ({});
         INSERT INTO {weir_table} SELECT k, COUNT(*) FROM g GROUP BY k;",
        jdbc(&t, ", 'sink.buffer-flush.interval' = '50 ms'")
    );
    let e = match checkpoint {
        Some(ck) => engine_with_memory(ck, 1 << 30),
        None => engine(16),
    };
    let job = e.submit(&sql).await.unwrap();
    let mut dropped = 0;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        dropped += terminate(&pg, &weir_table).await;
    }
    job.wait().await.unwrap();
    assert!(dropped >= 1, "a connection was dropped mid-run");
    let total: i64 = pg
        .query_one(&format!("SELECT sum(n)::bigint FROM {t}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 1200, "every row counted once in the final table");
    exec(&pg, &format!("DROP TABLE {t}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_whose_connection_the_server_drops_reconnects_and_loses_nothing() {
    dropped_connection_run(None).await;
    let ck = scratch("jdbc-dropped-ck");
    dropped_connection_run(Some(&ck)).await;
    let _ = std::fs::remove_dir_all(ck);
}

#[tokio::test]
async fn passwords_never_show_and_a_missing_table_names_its_create_statement() {
    let e = engine(16);
    e.execute(
        "CREATE TABLE secret_t (a BIGINT) WITH ('connector' = 'jdbc',
           'url' = 'postgres://me:hunter2@127.0.0.1:5432/test', 'password' = 'pw-secret',
           'table-name' = 'nowhere');",
    )
    .await
    .unwrap();
    let shown = match e.execute("DESCRIBE secret_t").await.unwrap().pop() {
        Some(weir::Output::Table(_, batches)) => format!("{:?}", to_json(&batches, None)),
        _ => panic!("DESCRIBE gives no table"),
    };
    assert!(
        !shown.contains("hunter2") && !shown.contains("pw-secret"),
        "{shown}"
    );
    assert!(shown.contains("me:******@127.0.0.1"), "{shown}");
    let missing = unique("missing");
    let sql = format!(
        "CREATE TABLE g (a BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '1');
         CREATE TABLE m (a BIGINT, b STRING) WITH ({});
         INSERT INTO m SELECT a, 'x' FROM g;",
        jdbc(&missing, "")
    );
    let err = match e.submit(&sql).await {
        Ok(job) => job.wait().await.unwrap_err().to_string(),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains(&format!("table '{missing}' does not exist"))
            && err.contains(&format!(
                "CREATE TABLE \"{missing}\" (\"a\" bigint, \"b\" text)"
            )),
        "{err}"
    );
}

#[tokio::test]
async fn the_postgres_example_keeps_a_per_site_table_from_a_lookup_join() {
    let pg = client().await;
    let example = root().join("sql-examples/postgres");
    exec(
        &pg,
        &std::fs::read_to_string(example.join("setup.sql")).unwrap(),
    )
    .await;
    let job = absolutize_paths(
        &std::fs::read_to_string(example.join("site_temperatures.sql")).unwrap(),
        &root(),
    );
    run(&engine(1024), &job).await;
    // The same figures from the input file, with the sites setup.sql registers.
    let mut expected: std::collections::BTreeMap<String, (i64, f64, f64)> = Default::default();
    for r in read_jsonl(&root().join("sql-examples/data/sensors.jsonl")) {
        let n: u32 = r["sensor_id"].as_str().unwrap()[7..].parse().unwrap();
        let site = if n < 40 {
            format!("site-{}", n % 5)
        } else {
            "unregistered".into()
        };
        let t = r["temperature"].as_f64().unwrap();
        let e = expected.entry(site).or_insert((0, f64::MIN, 0.0));
        *e = (e.0 + 1, e.1.max(t), e.2 + t);
    }
    let got = rows(
        &pg,
        "SELECT site, readings, max_temp, avg_temp::float8 AS avg FROM weir_example_site_temps",
    )
    .await;
    assert_eq!(got.len(), expected.len(), "{got:?}");
    let mut got = got;
    got.sort_by_key(|r| r["site"].as_str().unwrap().to_string());
    for (row, (site, (n, max, sum))) in got.iter().zip(&expected) {
        assert_eq!(
            (&row["site"], &row["readings"], &row["max_temp"]),
            (&json!(site), &json!(n), &json!(max))
        );
        let avg = row["avg"].as_f64().unwrap();
        assert!(
            (avg - sum / *n as f64).abs() <= 0.005 + 1e-9,
            "{site}: {avg}"
        );
    }
    exec(
        &pg,
        "DROP TABLE weir_example_sensors, weir_example_site_temps",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanned_table_enriches_an_endless_stream_append_only() {
    let pg = client().await;
    let t = unique("meta");
    exec(
        &pg,
        &format!(
            "CREATE TABLE {t} (id bigint, name text);
         INSERT INTO {t} VALUES (1, 'one'), (2, 'two'), (3, 'three');"
        ),
    )
    .await;
    let ddl = format!(
        "CREATE TABLE probe (k BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '200',
           'fields.k.min' = '1', 'fields.k.max' = '4');
         CREATE TABLE meta (id BIGINT, name STRING) WITH ({});",
        jdbc(&t, ", 'scan.fetch-size' = '2'")
    );
    let e = engine(8);
    e.execute(&ddl).await.unwrap();
    let sql = "SELECT p.k, m.name FROM probe AS p LEFT JOIN meta AS m ON p.k = m.id";
    let mut stream = e.query(sql).await.unwrap();
    assert!(
        !stream.is_updating(),
        "the bounded side is read first: append-only"
    );
    let mut seen = Vec::new();
    let all_keys = |s: &[Value]| {
        let keys: std::collections::BTreeSet<i64> =
            s.iter().map(|r| r["k"].as_i64().unwrap()).collect();
        keys.len() == 4 && s.len() >= 50
    };
    assert!(read_until(&mut stream, &mut seen, &all_keys).await);
    for r in &seen {
        let expected = match r["k"].as_i64().unwrap() {
            1 => json!("one"),
            2 => json!("two"),
            3 => json!("three"),
            _ => json!(null),
        };
        assert_eq!(r["name"], expected, "{r}");
    }
    stream.job().cancel();
    exec(&pg, &format!("DROP TABLE {t}")).await;
}

/// Whether the connection of a `jdbc` source with `url` is encrypted, as the server sees it.
async fn reads_over_tls(url: &str) -> Result<bool, String> {
    let sql = format!(
        "CREATE TABLE s (enc BOOLEAN) WITH ('connector' = 'jdbc', 'url' = '{url}',
           'scan.query' = 'SELECT ssl AS enc FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
         SELECT enc FROM s;"
    );
    let e = engine(16);
    let stream = e.query(&sql).await.map_err(|e| e.to_string())?;
    let rows = to_json(&stream.collect().await.map_err(|e| e.to_string())?, None);
    Ok(rows == vec![json!({"enc": true})])
}

#[tokio::test]
async fn connections_use_tls_as_sslmode_says() {
    let pg = client().await;
    let cert: String = pg
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .unwrap()
        .get(0);
    let base = url().replacen("postgres://", "jdbc:postgresql://", 1);
    assert!(!reads_over_tls(&format!("{base}?sslmode=disable"))
        .await
        .unwrap());
    assert!(
        reads_over_tls(&base).await.unwrap(),
        "prefer, libpq's default, uses TLS"
    );
    assert!(reads_over_tls(&format!("{base}?sslmode=require"))
        .await
        .unwrap());
    // The server's self-signed certificate as the CA: the chain verifies; its name is the
    // machine's, not 127.0.0.1, so verify-full refuses it, saying why.
    let ca = format!("{base}?sslmode=verify-ca&sslrootcert={cert}");
    assert!(reads_over_tls(&ca).await.unwrap());
    let full = format!("{base}?sslmode=verify-full&sslrootcert={cert}");
    let err = reads_over_tls(&full).await.unwrap_err();
    assert!(
        err.contains("cannot connect") && err.contains("certificate"),
        "{err}"
    );
    // By the name the certificate gives (Debian's is for `localhost`), verify-full passes.
    let named = full.replacen("127.0.0.1", "localhost", 1);
    if base.contains("127.0.0.1") && cert.contains("snakeoil") {
        assert!(reads_over_tls(&named).await.unwrap(), "{named}");
    }
}
