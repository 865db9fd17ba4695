//! Helpers shared by the integration tests: running a case and comparing rows.

use std::path::{Path, PathBuf};

use serde_json::Value;
use weir::arrow::record_batch::RecordBatch;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A job file with its relative `'path'` options made absolute against `dir`.
pub fn job_in_dir(dir: &Path) -> String {
    let sql = std::fs::read_to_string(dir.join("job.sql")).expect("job.sql");
    absolutize_paths(&sql, dir)
}

/// `sql` with its filesystem tables read in segments of `size` (`'source.split-size'`), so that
/// at a parallelism above 1 several subtasks share each file.
pub fn in_segments(sql: &str, size: &str) -> String {
    sql.replace(
        "'connector' = 'filesystem',",
        &format!("'connector' = 'filesystem', 'source.split-size' = '{size}',"),
    )
}

pub fn absolutize_paths(sql: &str, dir: &Path) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(i) = rest.find("'path' = '") {
        let (head, tail) = rest.split_at(i + "'path' = '".len());
        out.push_str(head);
        let end = tail.find('\'').unwrap_or(0);
        let p = &tail[..end];
        if Path::new(p).is_absolute() {
            out.push_str(p);
        } else {
            out.push_str(&dir.join(p).to_string_lossy());
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The planning error of `sql` (a script ending in a query that must be refused).
pub async fn planning_error(sql: &str) -> String {
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    match engine.query(sql).await {
        Ok(_) => panic!("{sql} should be refused"),
        Err(e) => e.to_string(),
    }
}

/// Run a script whose last statement is a query; rows as JSON objects.
pub async fn run_query(sql: &str, batch_size: usize) -> Vec<Value> {
    query_to_end(sql, batch_size).await.0
}

/// Run a script whose last statement is a query, on a quiet engine, to its end; rows as JSON
/// objects, and the job (its dead letters, its counts).
pub async fn query_to_end(sql: &str, batch_size: usize) -> (Vec<Value>, weir::JobHandle) {
    query_to_end_at(sql, batch_size, None).await
}

/// [`run_query`] at parallelism `p`.
pub async fn run_query_parallel(sql: &str, batch_size: usize, p: usize) -> Vec<Value> {
    query_to_end_at(sql, batch_size, Some(p)).await.0
}

/// [`query_to_end`] at parallelism `p` (the engine's default when `None`).
pub async fn query_to_end_at(
    sql: &str,
    batch_size: usize,
    p: Option<usize>,
) -> (Vec<Value>, weir::JobHandle) {
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.set_batch_size(batch_size);
    if let Some(p) = p {
        engine
            .override_option("parallelism.default", &p.to_string())
            .expect("parallelism");
    }
    let stream = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("query failed: {e}"));
    let job = stream.job().clone();
    let tz = engine
        .settings()
        .get("table.local-time-zone")
        .and_then(|s| s.parse().ok());
    let batches = stream.collect().await.expect("query ran");
    (to_json(&batches, tz), job)
}

pub fn to_json(batches: &[RecordBatch], tz: Option<chrono_tz::Tz>) -> Vec<Value> {
    let mut buf = Vec::new();
    for b in batches {
        weir::connectors::format::batch_to_json_lines(b, tz, &mut buf).expect("json");
    }
    String::from_utf8(buf)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("valid json line"))
        .collect()
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("expected.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("valid json"))
        .collect()
}

/// Timestamps compare as instants whatever the separator: `2024-01-01T00:00:00.000`.
fn norm(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() >= 19 && s.as_bytes()[10] == b' ' => {
            Value::String(format!("{}T{}", &s[..10], &s[11..]))
        }
        other => other.clone(),
    }
}

fn sort_key(row: &Value) -> String {
    let Value::Object(m) = row else {
        return row.to_string();
    };
    let mut parts: Vec<String> = m
        .iter()
        .map(|(k, v)| match v {
            Value::Number(n) => format!("{k}={:.6e}", n.as_f64().unwrap_or(0.0)),
            other => format!("{k}={}", norm(other)),
        })
        .collect();
    parts.sort();
    parts.join("|")
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
        }
        _ => norm(a) == norm(b),
    }
}

/// Compare rows order-insensitively, doubles with a relative tolerance of 1e-9.
pub fn assert_same_rows(case: &str, actual: &[Value], expected: &[Value]) {
    let mut a: Vec<&Value> = actual.iter().collect();
    let mut e: Vec<&Value> = expected.iter().collect();
    a.sort_by_key(|r| sort_key(r));
    e.sort_by_key(|r| sort_key(r));
    assert_eq!(
        a.len(),
        e.len(),
        "{case}: {} rows, expected {}\nfirst actual: {:?}",
        a.len(),
        e.len(),
        a.first()
    );
    for (x, y) in a.iter().zip(&e) {
        let (Value::Object(xm), Value::Object(ym)) = (x, y) else {
            panic!("{case}: not objects")
        };
        assert_eq!(xm.len(), ym.len(), "{case}: columns differ: {x} vs {y}");
        for (k, yv) in ym {
            let xv = xm
                .get(k)
                .unwrap_or_else(|| panic!("{case}: column {k} missing in {x}"));
            assert!(
                values_equal(xv, yv),
                "{case}: {k}: got {xv}, expected {yv}\nrow {x}\nexpected {y}"
            );
        }
    }
}

fn rows_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && y.iter()
                    .all(|(k, yv)| x.get(k).is_some_and(|xv| values_equal(xv, yv)))
        }
        _ => false,
    }
}

/// Apply a changelog (rows with an `op` field): `+I`/`+U` add a row, `-U`/`-D` remove an equal
/// one (which must be there). Returns the final table.
pub fn materialize(changelog: &[Value]) -> Vec<Value> {
    let mut table: Vec<Value> = vec![];
    for row in changelog {
        let mut r = row.as_object().expect("row object").clone();
        let op = r.remove("op").unwrap_or_else(|| panic!("no op in {row}"));
        let v = Value::Object(r);
        match op.as_str().unwrap_or("") {
            "+I" | "+U" => table.push(v),
            "-U" | "-D" => {
                let i = table
                    .iter()
                    .position(|t| rows_equal(t, &v))
                    .unwrap_or_else(|| panic!("{op} of a row not in the table: {v}"));
                table.swap_remove(i);
            }
            other => panic!("unknown op {other} in {row}"),
        }
    }
    table
}

/// True when the rows are a changelog (they carry `op`).
pub fn is_changelog(rows: &[Value]) -> bool {
    rows.first().and_then(|r| r.get("op")).is_some()
}

/// The result table of `rows`: materialised when they are a changelog.
pub fn final_table(rows: &[Value]) -> Vec<Value> {
    if is_changelog(rows) {
        materialize(rows)
    } else {
        rows.to_vec()
    }
}

/// The result columns of a script's query as SQL column definitions (`` `name` TYPE ``), for
/// a sink table that takes them; the changelog's `op` column is left out.
pub async fn result_columns(sql: &str) -> Vec<String> {
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let stream = engine.query(sql).await.expect("plans");
    let columns = stream
        .schema()
        .fields()
        .iter()
        .filter(|f| !weir::changelog::is_op_field(f))
        .map(|f| {
            let t = weir::planner::source_columns::sql_type_of(f.data_type());
            format!("`{}` {t}", f.name())
        })
        .collect();
    stream.job().cancel();
    columns
}

/// Every conformance case, append-only and updating (`updating_*`).
pub fn all_conformance_cases() -> Vec<PathBuf> {
    let dir = root().join("tests/conformance");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/conformance")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

pub mod kafka;
pub mod postgres;

/// The `weir` binary built beside this test binary (`cargo test --workspace` builds it).
pub fn weir_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join(format!("weir{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        bin.display()
    );
    bin
}

/// The value of the first sample of `name` (exact name) in Prometheus text `text` whose
/// labels contain every one of `labels` (e.g. `partition="1"`).
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    weir::engine_metrics::parse(text)
        .into_iter()
        .find(|s| s.name == name && labels.iter().all(|x| s.labels.contains(x)))
        .map(|s| s.value)
}

/// The sum of every sample of `name` (exact name) whose labels contain every one of `labels`.
pub fn metric_total(text: &str, name: &str, labels: &[&str]) -> f64 {
    weir::engine_metrics::parse(text)
        .into_iter()
        .filter(|s| s.name == name && labels.iter().all(|x| s.labels.contains(x)))
        .map(|s| s.value)
        .sum()
}

/// Wait until `job` has completed checkpoint `n` or ended, polling every millisecond (so a
/// crash can follow the checkpoint closely); panics after 60 s. Whether the job still runs.
pub async fn until_checkpoint(job: &weir::JobHandle, n: u64) -> bool {
    let t0 = std::time::Instant::now();
    while job.last_checkpoint().unwrap_or(0) < n && !job.is_done() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "no checkpoint {n} within 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    !job.is_done()
}

/// Poll `check` every 50 ms until it returns `Some`; panics naming `what` after `limit`. Every
/// test that waits for something to happen waits here (or in [`wait_for_blocking`] on a plain
/// thread), never by a fixed sleep or a loop of its own. The check may be async and may panic
/// itself (a job that exited early).
pub async fn wait_for<T>(
    limit: std::time::Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// [`wait_for`] for tests that run on a plain thread (a child process, a pseudo-terminal).
pub fn wait_for_blocking<T>(
    limit: std::time::Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
