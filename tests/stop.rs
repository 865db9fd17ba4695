//! Stopping `weir run`: SIGTERM takes a savepoint and exits 0; running the job again with the
//! same checkpoint directory finishes it, and the output equals an uninterrupted run's.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{wait_for_blocking, weir_bin};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-stop-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// 20,000 readings of 50 sensors, 100 ms apart, replayed at `rate` rows/s.
fn job(input: &Path, out: &Path, rate: u32) -> String {
    format!(
        "SET 'execution.checkpointing.interval' = '200 ms';
         CREATE TABLE r (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json',
               'scan.records-per-second' = '{rate}');
         CREATE TABLE w (sensor_id STRING, window_start TIMESTAMP(3), n BIGINT, total DOUBLE)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO w SELECT sensor_id, window_start, COUNT(*), SUM(temperature)
         FROM TABLE(TUMBLE(TABLE r, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY sensor_id, window_start, window_end;",
        input.display(),
        out.display()
    )
}

fn rows(dir: &Path) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("part-") {
            for l in std::fs::read_to_string(e.path()).unwrap().lines() {
                *m.entry(l.to_string()).or_insert(0) += 1;
            }
        }
    }
    m
}

fn run(dir: &Path) -> Command {
    let mut c = Command::new(weir_bin());
    c.args(["run", "--checkpoint-dir"])
        .arg(dir.join("ckpt"))
        .arg(dir.join("job.sql"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[test]
fn sigterm_takes_a_savepoint_and_the_job_resumes_from_it() {
    let base = scratch("base");
    let input = base.join("in.jsonl");
    let text: String = (0..20_000)
        .map(|i| {
            let ts = chrono::DateTime::from_timestamp_millis(1_704_067_200_000 + i * 100).unwrap();
            format!(
                "{{\"sensor_id\":\"s{}\",\"temperature\":{}.25,\"ts\":\"{}\"}}\n",
                i % 50,
                i % 30,
                ts.format("%Y-%m-%d %H:%M:%S%.3f")
            )
        })
        .collect();
    std::fs::write(&input, text).unwrap();
    let (clean, stopped) = (scratch("clean"), scratch("stopped"));
    // The stopped run replays slowly (8 s), so the stop lands mid-run even on a loaded machine;
    // the rate does not change the output.
    for (d, rate) in [(&clean, 50_000), (&stopped, 2_500)] {
        std::fs::write(d.join("job.sql"), job(&input, &d.join("out"), rate)).unwrap();
    }
    assert!(run(&clean).status().unwrap().success());

    let mut child = run(&stopped).spawn().unwrap();
    // Stop it mid-run: once some windows are committed (the replay takes 8 s).
    let out = stopped.join("out");
    wait_for_blocking(Duration::from_secs(20), "committed windows", || {
        (out.exists() && !rows(&out).is_empty()).then_some(())
    });
    let t0 = Instant::now();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(stderr.contains("savepoint"), "{stderr}");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        t0.elapsed()
    );
    let partial = rows(&stopped.join("out")).len();
    assert!(
        partial < rows(&clean.join("out")).len(),
        "the job had finished before the stop"
    );

    let resumed = run(&stopped).output().unwrap();
    let log = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{log}");
    assert!(log.contains("restoring from checkpoint"), "{log}");
    assert_eq!(rows(&stopped.join("out")), rows(&clean.join("out")));
    for d in [&base, &clean, &stopped] {
        let _ = std::fs::remove_dir_all(d);
    }
}
