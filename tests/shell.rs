//! The interactive shell driven through a real pseudo-terminal (expectrl): multi-line input,
//! live query rows, Ctrl-C back to the prompt, the error caret, tab completion, history across
//! sessions, and background jobs (SHOW JOBS, STOP JOB).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use expectrl::{ControlCode, Session};

use crate::common::*;

fn shell(history: &std::path::Path) -> Session {
    let mut cmd = Command::new(weir_bin());
    cmd.arg("--history").arg(history);
    cmd.env("TERM", "xterm");
    let mut s = Session::spawn(cmd).expect("weir starts in a pty");
    s.set_expect_timeout(Some(Duration::from_secs(30)));
    s.expect("weir> ").expect("prompt");
    s
}

/// Type a line once the editor is reading again: input sent while it switches the terminal
/// mode can be flushed, so give it a moment after the prompt appeared.
fn type_line(s: &mut Session, line: impl AsRef<str>) -> std::io::Result<()> {
    std::thread::sleep(Duration::from_millis(150));
    s.send_line(line.as_ref())
}

fn history_file(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("weir-hist-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn create_readings(s: &mut Session) {
    let data = root().join("sql-examples/data/sensors.jsonl");
    type_line(s, "CREATE TABLE sensor_readings (").unwrap();
    s.expect("-> ").unwrap();
    type_line(
        s,
        "  sensor_id STRING, temperature DOUBLE, humidity DOUBLE, `timestamp` TIMESTAMP(3),",
    )
    .unwrap();
    s.expect("-> ").unwrap();
    type_line(
        s,
        "  WATERMARK FOR `timestamp` AS `timestamp` - INTERVAL '5' SECOND",
    )
    .unwrap();
    s.expect("-> ").unwrap();
    type_line(
        s,
        format!(
            ") WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
            data.display()
        ),
    )
    .unwrap();
    s.expect("Table 'sensor_readings' created.").unwrap();
    s.expect("weir> ").unwrap();
}

#[test]
fn multi_line_table_windowed_query_and_ctrl_c() {
    let mut s = shell(&history_file("query"));
    create_readings(&mut s);
    type_line(&mut s,
        "SELECT sensor_id, window_start, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE sensor_readings, \
         DESCRIPTOR(`timestamp`), INTERVAL '5' MINUTE)) GROUP BY sensor_id, window_start, window_end;",
    )
    .unwrap();
    s.expect("sensor-0000").expect("window rows are shown");
    s.expect("rows received").unwrap();
    s.expect("weir> ").unwrap();
    // An unbounded query runs until Ctrl-C, which cancels it and keeps the shell.
    type_line(
        &mut s,
        "CREATE TABLE gen (v BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '5');",
    )
    .unwrap();
    s.expect("weir> ").unwrap();
    type_line(&mut s, "SELECT v FROM gen;").unwrap();
    s.expect(expectrl::Regex(r"\|\s+v \|"))
        .expect("rows of the unbounded query");
    std::thread::sleep(Duration::from_millis(300));
    s.send(ControlCode::EndOfText).unwrap();
    s.expect("Query cancelled.").unwrap();
    s.expect("weir> ").unwrap();
    type_line(&mut s, "SELECT 40 + 2 AS answer;").unwrap();
    s.expect("42").expect("the shell still answers");
}

#[test]
fn a_typo_shows_a_caret_and_the_shell_stays() {
    let mut s = shell(&history_file("typo"));
    type_line(&mut s, "SELEC 1;").unwrap();
    s.expect("line 1, column 1").unwrap();
    s.expect("^").unwrap();
    s.expect("weir> ").unwrap();
    type_line(&mut s, "HELP;").unwrap();
    s.expect("STOP JOB").unwrap();
    s.expect("weir> ").unwrap();
}

#[test]
fn tab_completes_a_table_name() {
    let mut s = shell(&history_file("tab"));
    create_readings(&mut s);
    s.send("DESCRIBE sensor_r").unwrap();
    s.send("\t").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    type_line(&mut s, ";").unwrap();
    s.expect("humidity")
        .expect("the completed name was described");
    s.expect("*ROWTIME*").unwrap();
}

#[test]
fn history_survives_across_sessions() {
    let hist = history_file("hist");
    let mut first = shell(&hist);
    type_line(&mut first, "SELECT 6 * 7 AS remembered;").unwrap();
    first.expect("42").unwrap();
    first.expect("weir> ").unwrap();
    first.send(ControlCode::EndOfTransmission).unwrap();
    first.expect(expectrl::Eof).unwrap();
    let mut second = shell(&hist);
    second.send("\x1b[A").unwrap(); // Up: the previous session's statement
    std::thread::sleep(Duration::from_millis(200));
    second.send("\r").unwrap();
    second.expect("remembered").unwrap();
    second.expect("42").unwrap();
}

#[test]
fn show_jobs_after_an_insert_and_stop_it() {
    let mut s = shell(&history_file("jobs"));
    type_line(
        &mut s,
        "CREATE TABLE gen (v BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '100');",
    )
    .unwrap();
    s.expect("weir> ").unwrap();
    type_line(
        &mut s,
        "CREATE TABLE sink (v BIGINT) WITH ('connector' = 'blackhole');",
    )
    .unwrap();
    s.expect("weir> ").unwrap();
    type_line(&mut s, "INSERT INTO sink SELECT v FROM gen;").unwrap();
    s.expect("Job 1 submitted").unwrap();
    s.expect("weir> ").unwrap();
    type_line(&mut s, "SHOW JOBS;").unwrap();
    s.expect("RUNNING").unwrap();
    s.expect("weir> ").unwrap();
    type_line(&mut s, "STOP JOB '1';").unwrap();
    s.expect("Job 1 stopped.").unwrap();
    s.expect("weir> ").unwrap();
    type_line(&mut s, "SHOW JOBS;").unwrap();
    s.expect("CANCELED").unwrap();
}

#[test]
fn result_modes_changelog_and_table() {
    let mut s = shell(&history_file("modes"));
    create_readings(&mut s);
    type_line(
        &mut s,
        "SET 'sql-client.execution.result-mode' = 'changelog';",
    )
    .unwrap();
    s.expect("weir> ").unwrap();
    // 20,000 readings arrive in several batches: the counts per sensor are updated.
    type_line(
        &mut s,
        "SELECT sensor_id, COUNT(*) AS n FROM sensor_readings WHERE sensor_id = 'sensor-0000' GROUP BY sensor_id;",
    )
    .unwrap();
    s.expect("+I").expect("an insert row");
    s.expect("-U").expect("a retraction");
    s.expect("rows received").unwrap();
    s.expect("weir> ").unwrap();
    type_line(&mut s, "SET 'sql-client.execution.result-mode' = 'table';").unwrap();
    s.expect("weir> ").unwrap();
    let expected = std::fs::read_to_string(root().join("sql-examples/data/sensors.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"sensor-0000\""))
        .count();
    type_line(
        &mut s,
        "SELECT sensor_id, COUNT(*) AS n FROM sensor_readings WHERE sensor_id = 'sensor-0000' GROUP BY sensor_id;",
    )
    .unwrap();
    // The materialised table ends with the final count, once.
    s.expect(format!("| {expected} |").as_str())
        .expect("the final count");
    s.expect("rows received").unwrap();
}
