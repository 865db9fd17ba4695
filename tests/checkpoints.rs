//! Checkpoints and recovery through the embedded API: every golden case, run with checkpoints
//! every few batches, "crashed" in the middle (cancelled, so nothing is flushed or committed
//! beyond the last checkpoint, as after `kill -9`) and restarted from the checkpoint directory,
//! commits exactly Flink's rows to an exactly-once filesystem sink. Also: stop with a savepoint
//! and resume, and a checkpoint directory refusing a different query.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use weir::CheckpointConfig;

use crate::common::*;

pub(crate) fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-ckpt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The case's job rewritten as `INSERT INTO` an exactly-once filesystem sink, with its source
/// slowed down so that checkpoints fall in the middle of the input.
pub(crate) async fn insert_job(case: &str, out: &Path) -> String {
    let sql = job_in_dir(&root().join("tests/conformance").join(case));
    let body = sql.trim_end().trim_end_matches(';');
    let cut = body.rfind(';').expect("DDL before the query") + 1;
    let (ddl, query) = (&body[..cut], body[cut..].trim());
    let columns = result_columns(&sql).await;
    let ddl = ddl.replace(
        "'connector' = 'filesystem',",
        "'connector' = 'filesystem', 'scan.records-per-second' = '20000',",
    );
    format!(
        "{ddl}\nCREATE TABLE weir_out ({}) WITH ('connector' = 'filesystem', 'path' = '{}', \
         'format' = 'json');\nINSERT INTO weir_out {query};",
        columns.join(", "),
        out.display()
    )
}

fn engine(ckpt: &Path) -> weir::Engine {
    engine_with_memory(ckpt, 1 << 30)
}

/// An engine whose window state moves to RocksDB beyond `memory_limit` bytes.
pub(crate) fn engine_with_memory(ckpt: &Path, memory_limit: usize) -> weir::Engine {
    let e = weir::Engine::new();
    e.set_quiet(true);
    e.set_batch_size(50);
    e.set_checkpointing(Some(CheckpointConfig {
        interval: Duration::from_millis(10),
        memory_limit,
        ..CheckpointConfig::new(ckpt)
    }));
    e
}

/// Every committed row in the sink directory (in-progress files are not visible).
pub(crate) fn committed_rows(out: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    files.sort();
    files.iter().flat_map(|f| read_jsonl(f)).collect()
}

/// Run until checkpoint `n` is complete (or the job ends), then crash it: whether it crashed
/// before the end, and how many windows it spilled.
pub(crate) async fn run_and_crash(
    sql: &str,
    ckpt: &Path,
    n: u64,
    memory_limit: usize,
) -> (bool, u64) {
    let job = engine_with_memory(ckpt, memory_limit)
        .submit(sql)
        .await
        .unwrap();
    let crashed = until_checkpoint(&job, n).await;
    job.cancel();
    let _ = job.wait().await;
    (
        crashed,
        weir::engine_metrics::get(&job.metrics().spilled_windows),
    )
}

async fn crash_and_recover(case: &str) {
    crash_and_recover_with_memory(case, "", 1 << 30).await;
}

async fn crash_and_recover_with_memory(case: &str, tag: &str, memory_limit: usize) {
    crash_and_restore_at(case, tag, memory_limit, None).await;
}

/// Crash at the first parallelism of `rescale` (the default without), restore at the second.
async fn crash_and_restore_at(
    case: &str,
    tag: &str,
    memory_limit: usize,
    rescale: Option<(usize, usize)>,
) {
    let name = format!("{case}{tag}");
    let (out, ckpt) = (
        scratch(&format!("{name}-out")),
        scratch(&format!("{name}-ck")),
    );
    let sql = insert_job(case, &out).await;
    // Rescaled jobs read their files in segments of 16 KB, so positions and segment maxima
    // are redistributed too.
    let sql = match rescale {
        Some(_) => in_segments(&sql, "16kb"),
        None => sql,
    };
    let at = |p: usize| format!("SET 'parallelism.default' = '{p}';\n{sql}");
    let (first, then) = match rescale {
        Some((from, to)) => (at(from), at(to)),
        None => (sql.clone(), sql.clone()),
    };
    let (crashed, spilled_before) = run_and_crash(&first, &ckpt, 3, memory_limit).await;
    let before = committed_rows(&out).len();
    let job = engine_with_memory(&ckpt, memory_limit)
        .submit(&then)
        .await
        .unwrap();
    job.wait().await.unwrap();
    // Either run may have spilled (the first can get through most of the input before it
    // is crashed).
    let spilled = spilled_before + weir::engine_metrics::get(&job.metrics().spilled_windows);
    assert_eq!(
        spilled > 0,
        memory_limit < 4096,
        "{name}: {spilled} windows spilled"
    );
    let expected = read_jsonl(
        &root()
            .join("tests/conformance")
            .join(case)
            .join("expected.jsonl"),
    );
    assert_same_rows(&name, &committed_rows(&out), &expected);
    eprintln!("{name}: crashed mid-stream: {crashed}, {before} rows committed before the crash");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&ckpt);
}

macro_rules! recover {
    ($name:ident) => {
        #[tokio::test]
        async fn $name() {
            crash_and_recover(stringify!($name)).await;
        }
    };
}

recover!(cumulate_tvf);
recover!(filter_project_no_window);
recover!(hop_group);
recover!(join_interval_inner);
recover!(join_static_dimension);
recover!(join_temporal_versioned);
recover!(join_window_tvf);
recover!(over_range_avg);
recover!(hop_tvf);
recover!(late_rows_dropped);
recover!(session_group);
recover!(session_tvf);
recover!(tumble_group);
recover!(tumble_offset_tvf);
recover!(tumble_tvf);

/// With a 1 kB memory limit every window (and every batch of rows a session window holds)
/// moves to RocksDB (spilled) almost at once: updates go through RocksDB and firing reads the
/// windows back, across a crash too.
macro_rules! spilled {
    ($name:ident, $case:literal) => {
        #[tokio::test]
        async fn $name() {
            crash_and_recover_with_memory($case, "-spilled", 1024).await;
        }
    };
}

spilled!(spilled_tumble_tvf, "tumble_tvf");
spilled!(spilled_hop_group, "hop_group");
spilled!(spilled_cumulate_tvf, "cumulate_tvf");
spilled!(spilled_late_rows_dropped, "late_rows_dropped");
spilled!(spilled_session_group, "session_group");
spilled!(spilled_session_tvf, "session_tvf");
spilled!(spilled_join_interval_inner, "join_interval_inner");

/// Crashed at one parallelism and restored at another: each key's state moves to the subtask
/// its rows now reach (windows, sessions, joins, OVER, spilled windows), and the committed rows
/// are still Flink's.
macro_rules! rescaled {
    ($name:ident, $case:literal, $from:literal => $to:literal, $memory:expr) => {
        #[tokio::test]
        async fn $name() {
            let tag = format!("-p{}-p{}", $from, $to);
            crash_and_restore_at($case, &tag, $memory, Some(($from, $to))).await;
        }
    };
}

rescaled!(rescaled_tumble_tvf_3_to_1, "tumble_tvf", 3 => 1, 1 << 30);
rescaled!(rescaled_hop_group_1_to_4, "hop_group", 1 => 4, 1 << 30);
rescaled!(rescaled_session_group_2_to_3, "session_group", 2 => 3, 1 << 30);
rescaled!(rescaled_join_interval_inner_3_to_2, "join_interval_inner", 3 => 2, 1 << 30);
rescaled!(rescaled_join_temporal_versioned_2_to_4, "join_temporal_versioned", 2 => 4, 1 << 30);
rescaled!(rescaled_over_range_avg_4_to_1, "over_range_avg", 4 => 1, 1 << 30);
rescaled!(rescaled_spilled_cumulate_tvf_2_to_3, "cumulate_tvf", 2 => 3, 1024);
rescaled!(rescaled_spilled_session_tvf_3_to_2, "session_tvf", 3 => 2, 1024);

#[tokio::test]
async fn stop_with_savepoint_then_resume() {
    let (out, ckpt) = (scratch("sp-out"), scratch("sp-ck"));
    let sql = insert_job("session_tvf", &out).await;
    let job = engine(&ckpt).submit(&sql).await.unwrap();
    until_checkpoint(&job, 2).await;
    job.stop_with_savepoint();
    job.wait().await.unwrap();
    let job = engine(&ckpt).submit(&sql).await.unwrap();
    job.wait().await.unwrap();
    let expected = read_jsonl(&root().join("tests/conformance/session_tvf/expected.jsonl"));
    assert_same_rows("savepoint", &committed_rows(&out), &expected);
    // A finished job restarted from its final checkpoint has nothing left to write.
    let job = engine(&ckpt).submit(&sql).await.unwrap();
    job.wait().await.unwrap();
    assert_same_rows("rerun", &committed_rows(&out), &expected);
}

#[tokio::test]
async fn a_checkpoint_of_another_job_is_refused_saying_what_changed() {
    let (out, ckpt) = (scratch("fp-out"), scratch("fp-ck"));
    let sql = insert_job("tumble_tvf", &out).await;
    engine(&ckpt)
        .submit(&sql)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    let other = sql.replace("AVG(temperature)", "MAX(temperature)");
    let err = engine(&ckpt).submit(&other).await.err().expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("of a different job"), "{msg}");
    assert!(
        msg.contains("query weir_out: was `") && msg.contains("MAX(temperature)"),
        "{msg}"
    );
    // A source option is part of the job too.
    let slower = sql.replace(
        "'scan.records-per-second' = '20000'",
        "'scan.records-per-second' = '10000'",
    );
    let msg = engine(&ckpt)
        .submit(&slower)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        msg.contains("table t: was `") && msg.contains("scan.records-per-second=10000"),
        "{msg}"
    );
}

#[tokio::test]
async fn allow_changed_query_restores_only_the_operators_whose_state_fits() {
    let (out, ckpt) = (scratch("allow-out"), scratch("allow-ck"));
    let sql = insert_job("tumble_tvf", &out).await;
    let (crashed, _) = run_and_crash(&sql, &ckpt, 3, 1 << 30).await;
    assert!(crashed, "the job finished before the crash");
    // The aggregate changes (its state layout with it); the source's position still fits.
    let other = sql.replace("AVG(temperature)", "MAX(temperature)");
    let e = weir::Engine::new();
    e.set_quiet(true);
    e.set_checkpointing(Some(CheckpointConfig {
        allow_changed_query: true,
        ..CheckpointConfig::new(&ckpt)
    }));
    let job = e
        .submit(&other)
        .await
        .expect("restored with --allow-changed-query");
    job.wait().await.unwrap();
    let meta = weir::CheckpointStore::open(&ckpt)
        .unwrap()
        .latest()
        .unwrap()
        .unwrap();
    let op = meta
        .layouts
        .iter()
        .find(|(k, _)| k.starts_with("op-"))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(op.contains("max("), "the new layout is recorded: {op}");
    // The source resumed from the checkpoint: fewer rows than a full run were committed after
    // the restart, none twice.
    let rows = committed_rows(&out);
    let unique: std::collections::BTreeSet<String> = rows.iter().map(|r| r.to_string()).collect();
    assert_eq!(unique.len(), rows.len(), "a row committed twice");
}

/// A job whose sink blocks while `gate` is closed, checkpointing every 50 ms and abandoning a
/// checkpoint after 1 s.
async fn gated_job(ckpt: &Path, gate: tokio::sync::watch::Receiver<bool>) -> weir::JobHandle {
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.register_sink(std::sync::Arc::new(crate::observability::GatedSink(gate)));
    engine.set_checkpointing(Some(CheckpointConfig {
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(1),
        ..CheckpointConfig::new(ckpt)
    }));
    let job = engine
        .submit(
            "CREATE TABLE gen (v BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '200');
             CREATE TABLE sink (v BIGINT) WITH ('connector' = 'gated');
             INSERT INTO sink SELECT v FROM gen;",
        )
        .await
        .unwrap();
    assert!(
        until_checkpoint(&job, 1).await,
        "the job ended before its first checkpoint"
    );
    job
}

#[tokio::test]
async fn a_savepoint_waiting_behind_a_timed_out_checkpoint_still_completes() {
    let ckpt = scratch("savepoint-after-timeout");
    let (gate, rx) = tokio::sync::watch::channel(true);
    let job = gated_job(&ckpt, rx).await;
    gate.send_replace(false); // the next checkpoint cannot complete
    tokio::time::sleep(Duration::from_millis(200)).await; // it has been triggered (every 50 ms)
    let failures = job.checkpoint_failures();
    job.stop_with_savepoint(); // waits for the checkpoint in flight
    let timed_out = async || (job.checkpoint_failures() > failures).then_some(());
    wait_for(
        Duration::from_secs(10),
        "a checkpoint to time out",
        timed_out,
    )
    .await;
    gate.send_replace(true); // the savepoint, started after the timeout, can complete
    let ended = tokio::time::timeout(Duration::from_secs(20), job.wait()).await;
    let result = ended.expect("stop with savepoint hung after a checkpoint timed out");
    result.expect("the savepoint completes");
    let last = job.last_checkpoint().unwrap();
    assert!(ckpt.join(format!("chk-{last:08}/_metadata")).exists());
}

#[tokio::test]
async fn a_savepoint_that_times_out_fails_the_stop_with_a_message() {
    let ckpt = scratch("savepoint-times-out");
    let (gate, rx) = tokio::sync::watch::channel(true);
    let job = gated_job(&ckpt, rx).await;
    gate.send_replace(false); // no checkpoint, savepoint included, can complete
    job.stop_with_savepoint();
    let failed = async || match job.status() {
        weir::JobStatus::Failed(e) => Some(e),
        _ => None,
    };
    let msg = wait_for(Duration::from_secs(20), "the stop to fail", failed).await;
    assert!(
        msg.contains("savepoint") && msg.contains("timed out"),
        "{msg}"
    );
    assert!(msg.contains("resumes from checkpoint"), "{msg}");
    // The sink is still blocked in a write: the failed job ends anyway.
    let ended = tokio::time::timeout(Duration::from_secs(20), job.wait()).await;
    assert!(ended.expect("the failed job ended").is_err());
    drop(gate);
}
