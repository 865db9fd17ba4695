//! The interactive shell driven through a real pseudo-terminal (expectrl): multi-line input,
//! live query rows, Ctrl-C back to the prompt (also while rows render, several at once, and
//! during EXPLAIN ANALYZE), the error caret, tab completion, history across sessions, background
//! jobs (SHOW JOBS, STOP JOB) and the bounded view of the `table` result mode.

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
/// mode can be flushed, so give it a moment after the prompt appeared. (The one fixed pause
/// in the tests: the switch shows nothing a test could wait for.)
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
    s.expect(expectrl::Regex(r"\|\s+-?\d+ \|"))
        .expect("a row of the unbounded query");
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
    s.expect("eadings").expect("the name is completed");
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
    second.expect("remembered").unwrap();
    second.send("\r").unwrap();
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

/// A datagen table fast enough that the shell spends most of its time rendering rows.
const FAST_GEN: &str =
    "CREATE TABLE fast (v BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '5000');";

fn create_fast_gen(s: &mut Session) {
    type_line(s, FAST_GEN).unwrap();
    s.expect("weir> ").unwrap();
}

/// Run `SELECT v FROM fast`, press Ctrl-C `presses` times at once while its rows render, and
/// return what the shell printed up to the prompt. (A press after the first may flush output
/// the terminal has not shown yet, as a terminal does on Ctrl-C; one that comes after the prompt
/// is a key to the line editor, which answers with a fresh prompt.)
fn cancel_while_rendering(s: &mut Session, presses: usize) -> String {
    type_line(s, "SELECT v FROM fast;").unwrap();
    s.expect("rows received").expect("rows are rendering");
    for _ in 0..presses {
        s.send(ControlCode::EndOfText).unwrap();
    }
    let shown = s.expect("weir> ").expect("the prompt returns");
    String::from_utf8_lossy(shown.before()).into_owned()
}

fn assert_still_answers(s: &mut Session) {
    type_line(s, "SELECT 40 + 2 AS answer;").unwrap();
    s.expect("42").expect("the shell still answers");
    s.expect("weir> ").unwrap();
}

#[test]
fn ctrl_c_while_rows_render_cancels_the_query_and_never_the_shell() {
    let mut s = shell(&history_file("ctrl-c-render"));
    create_fast_gen(&mut s);
    // One Ctrl-C while rows stream: it is not lost while a batch renders.
    let shown = cancel_while_rendering(&mut s, 1);
    assert!(shown.contains("Query cancelled."), "{shown}");
    // Several in quick succession: the query is cancelled once and the shell stays.
    cancel_while_rendering(&mut s, 5);
    assert_still_answers(&mut s);
    type_line(&mut s, "SHOW JOBS;").unwrap();
    // The whole table: header, rule, rows, rule. (Extra prompts may come first: a press the
    // line editor is told about after the query ended shows a fresh prompt.)
    let table = s
        .expect(expectrl::Regex(
            r"(?s)\| +job id.*?\n\+[-+]+\+.*?\n\+[-+]+\+",
        ))
        .unwrap();
    let jobs = String::from_utf8_lossy(table.get(0).unwrap_or_default()).into_owned();
    assert_eq!(jobs.matches("CANCELED").count(), 2, "{jobs}");
    assert!(!jobs.contains("RUNNING"), "{jobs}");
}

#[test]
fn ctrl_c_stops_explain_analyze_of_an_unbounded_query_and_shows_the_tree() {
    let mut s = shell(&history_file("ctrl-c-analyze"));
    create_fast_gen(&mut s);
    type_line(
        &mut s,
        "EXPLAIN ANALYZE SELECT v * 2 AS w FROM fast WHERE v > 0;",
    )
    .unwrap();
    s.expect("Ctrl-C stops it").expect("the query runs");
    s.send(ControlCode::EndOfText).unwrap();
    s.expect("Analyzed plan (cancelled after").unwrap();
    let tree = s.expect("weir> ").unwrap();
    let tree = String::from_utf8_lossy(tree.before());
    let source = tree
        .lines()
        .find(|l| l.contains("Source:"))
        .unwrap_or_else(|| panic!("the source in the tree: {tree}"));
    assert!(source.contains("rows in="), "{tree}");
    type_line(&mut s, "SHOW JOBS;").unwrap();
    s.expect("CANCELED")
        .expect("the analyzed query was cancelled");
    s.expect("weir> ").unwrap();
    assert_still_answers(&mut s);
}

#[test]
fn the_table_mode_keeps_a_bounded_view_and_says_what_it_dropped() {
    let mut s = shell(&history_file("table-bound"));
    create_readings(&mut s);
    for set in [
        "SET 'sql-client.execution.result-mode' = 'table';",
        "SET 'sql-client.execution.max-table-result.rows' = '5';",
    ] {
        type_line(&mut s, set).unwrap();
        s.expect("weir> ").unwrap();
    }
    // 20,000 readings, append-only: the view keeps the latest 5.
    type_line(
        &mut s,
        "SELECT sensor_id, temperature FROM sensor_readings;",
    )
    .unwrap();
    s.expect("20000 rows received").unwrap();
    s.expect(
        "Note: 19995 rows were dropped from the view, which keeps the 5 latest rows \
         ('sql-client.execution.max-table-result.rows').",
    )
    .unwrap();
    s.expect("weir> ").unwrap();
}

#[test]
fn ctrl_c_ends_weir_e_with_exit_code_130() {
    let mut cmd = Command::new(weir_bin());
    cmd.arg("-e").arg(format!("{FAST_GEN} SELECT v FROM fast;"));
    cmd.env("TERM", "xterm");
    let mut s = Session::spawn(cmd).expect("weir starts in a pty");
    s.set_expect_timeout(Some(Duration::from_secs(30)));
    s.expect("rows received").expect("rows are rendering");
    s.send(ControlCode::EndOfText).unwrap();
    s.expect("Query cancelled.").unwrap();
    s.expect(expectrl::Eof).unwrap();
    let process = s.get_process();
    assert_eq!(
        process.wait().unwrap(),
        expectrl::WaitStatus::Exited(process.pid(), 130)
    );
}
