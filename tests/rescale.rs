//! Rescaling across crashes: the chaos job (tumble and session windows per sensor over a
//! 3-partition topic, into exactly-once Kafka sinks) is checkpointed at parallelism 2 and killed with
//! SIGKILL, restored at parallelism 4 and killed again, then restored at parallelism 1 and run
//! to the end. Its committed output must equal one clean run's, row for row: each restore
//! divided the windows' state among the new subtasks by key group and merged the source
//! subtasks' offsets. The same with exactly-once file sinks, whose subtasks each write their own
//! files: there every restore also hands the old sink subtasks' pending files on. And a
//! generated (datagen) table, whose source positions are row ranges redrawn at each restore.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::chaos::{
    committed_files, job, latest_checkpoint, record, same_output, start, start_with, Out,
};
use crate::common::kafka::Broker;
use crate::common::wait_for;

/// About four minutes of event time over 1000 sensors (see [`record`]): some 4000 one-minute
/// tumbles and the sessions around two silences, read at 40,000 records/s (6 s a run).
const RECORDS: usize = 240_000;

fn start_at(job: &Path, ckpt: &Path, p: &str) -> Child {
    start_with(job, ckpt, &["-p", p])
}

/// The parallelism checkpoint `id` in `dir` was taken at (its `job parallelism` entry), and
/// how many subtasks its sinks ran as (the most of any sink).
fn parallelism_of(dir: &Path, id: u64) -> (String, usize) {
    let meta = dir.join(format!("chk-{id:08}")).join("_metadata");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
    let layouts = meta["layouts"].as_object().expect("layouts");
    let sink_subtasks = layouts
        .keys()
        .filter_map(|k| k.strip_prefix("sink-"))
        .map(|k| k.split_once('.').map_or(0, |(_, i)| i.parse().unwrap()) + 1)
        .max()
        .unwrap_or(0);
    let p = layouts["job parallelism"].as_str().unwrap_or_default();
    (p.to_string(), sink_subtasks)
}

/// Let the run take `n` checkpoints of its own after `from`, then SIGKILL it; the checkpoint
/// the next run restores from.
async fn kill_after_checkpoints(child: &mut Child, ckpt: &Path, from: Option<u64>, n: u64) -> u64 {
    let want = from.unwrap_or(0) + n;
    let reached = wait_for(Duration::from_secs(120), "checkpoints", async || {
        if child.try_wait().unwrap().is_some() {
            return Some(false);
        }
        (latest_checkpoint(ckpt).unwrap_or(0) >= want).then_some(true)
    })
    .await;
    assert!(reached, "the job ended before it could be killed mid-run");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    latest_checkpoint(ckpt).expect("a checkpoint")
}

/// Run `dir`'s job.sql at parallelism `first`, SIGKILL it after three checkpoints, restore
/// it at `second` and kill it again, then run it to the end at parallelism 1.
async fn kill_at_then_finish(dir: &Path, first: &str, second: &str) {
    let (file, ckpt) = (dir.join("job.sql"), dir.join("ckpt"));
    let mut at = None;
    for p in [first, second] {
        let mut run = start_at(&file, &ckpt, p);
        let id = kill_after_checkpoints(&mut run, &ckpt, at, 3).await;
        let layout = format!("{p} subtasks, 128 key groups");
        let n: usize = p.parse().unwrap();
        assert_eq!(
            parallelism_of(&ckpt, id),
            (layout, n),
            "(job, sink subtasks)"
        );
        at = Some(id);
    }
    let status = start_at(&file, &ckpt, "1").wait().unwrap();
    assert!(status.success(), "the run at parallelism 1: {status}");
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-rescale-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Where a run of the rescale test writes: Kafka topics or sink directories.
#[derive(Clone, Copy)]
enum Target {
    Topics,
    Files,
}

fn out(target: Target, dir: &Path, name: &str) -> Out {
    match target {
        Target::Topics => Out::Topics(name.into()),
        Target::Files => Out::Files(dir.join("out")),
    }
}

/// Run the job cleanly, then at parallelism 2, 4 and 1 with SIGKILLs between: the committed
/// outputs must be equal. The sinks run as many subtasks as the windows, each with its own
/// files or transactional id, so their restores also hand the old subtasks' pending files or
/// transactions on.
async fn rescale(target: Target, name: &str) {
    let broker = Broker::start();
    let topic = format!("rescale-{name}");
    broker.create_topic(&topic, 3).await;
    let ends = broker.produce_many(&topic, RECORDS, 3, record).await;
    for t in ["tumbles", "sessions"] {
        broker.create_topic(&format!("clean-{name}-{t}"), 2).await;
        broker.create_topic(&format!("scaled-{name}-{t}"), 2).await;
    }
    let (clean, scaled) = (
        scratch(&format!("clean-{name}")),
        scratch(&format!("scaled-{name}")),
    );
    let clean_out = out(target, &clean, &format!("clean-{name}"));
    let scaled_out = out(target, &scaled, &format!("scaled-{name}"));
    let job = |out: &Out| job(&broker, &topic, 40_000, &ends, out);
    std::fs::write(clean.join("job.sql"), job(&clean_out)).unwrap();
    std::fs::write(scaled.join("job.sql"), job(&scaled_out)).unwrap();
    let status = start(&clean.join("job.sql"), &clean.join("ckpt"))
        .wait()
        .unwrap();
    assert!(status.success(), "clean run: {status}");

    kill_at_then_finish(&scaled, "2", "4").await;
    if let Err(e) = same_output(&clean_out, &scaled_out, &broker).await {
        panic!("{e}");
    }
    let _ = std::fs::remove_dir_all(&clean);
    let _ = std::fs::remove_dir_all(&scaled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_at_parallelism_2_resumes_at_4_then_1_with_a_clean_runs_output() {
    rescale(Target::Topics, "topics").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sinks_killed_at_parallelism_2_resume_at_4_then_1_with_a_clean_runs_output() {
    rescale(Target::Files, "files").await;
}

/// A generated table: 40,000 rows of a sequence (event time from the row number) at 8,000 rows
/// a second, in 10-second windows of 20 keys, into exactly-once files.
fn generated_job(out: &Path) -> String {
    format!(
        "SET 'execution.checkpointing.interval' = '300 ms';
         CREATE TABLE g (id BIGINT, x DOUBLE, k AS id % 20, ts AS TO_TIMESTAMP_LTZ(id * 100, 3),
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'datagen', 'rows-per-second' = '8000', 'fields.x.min' = '-50',
               'fields.x.max' = '50', 'fields.id.kind' = 'sequence', 'fields.id.start' = '0',
               'fields.id.end' = '39999');
         CREATE TABLE tumbles (k BIGINT, window_start TIMESTAMP_LTZ(3), n BIGINT, total DOUBLE)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO tumbles SELECT k, window_start, COUNT(*), SUM(x)
           FROM TABLE(TUMBLE(TABLE g, DESCRIPTOR(ts), INTERVAL '10' SECOND))
           GROUP BY k, window_start, window_end;",
        out.display()
    )
}

/// A datagen job killed at parallelism 2, restored at 3 and killed again, then finished at 1:
/// the rows of a clean run, each once. The generator's subtasks checkpoint the row ranges
/// they generated; a restore unions them and each new subtask generates the rest of its share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_table_killed_at_parallelism_2_resumes_at_3_then_1_with_a_clean_runs_output() {
    let (clean, scaled) = (scratch("gen-clean"), scratch("gen-scaled"));
    for dir in [&clean, &scaled] {
        std::fs::write(dir.join("job.sql"), generated_job(&dir.join("out"))).unwrap();
    }
    let status = start(&clean.join("job.sql"), &clean.join("ckpt"))
        .wait()
        .unwrap();
    assert!(status.success(), "clean run: {status}");
    kill_at_then_finish(&scaled, "2", "3").await;
    let expected = committed_files(&clean.join("out"));
    assert_eq!(
        expected.values().sum::<usize>(),
        8000,
        "400 windows of 20 keys"
    );
    assert_eq!(committed_files(&scaled.join("out")), expected);
    let _ = std::fs::remove_dir_all(&clean);
    let _ = std::fs::remove_dir_all(&scaled);
}
