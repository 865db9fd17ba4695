//! The `weir` binary as users run it: `weir run` from a case folder, output formats, exit codes
//! and multi-error reporting.

use std::path::PathBuf;
use std::process::Command;

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// A `weir` run that must succeed; its stderr is the failure message.
fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn run_json_from_inside_a_case_folder() {
    let case = repo().join("tests/conformance/tumble_tvf");
    let out = weir()
        .args(["run", "--format", "json", "job.sql"])
        .current_dir(&case)
        .output()
        .unwrap();
    assert_success(&out);
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let expected = std::fs::read_to_string(case.join("expected.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(rows.len(), expected);
    assert!(
        rows[0]["window_start"].as_str().unwrap().contains(' '),
        "{}",
        rows[0]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("late rows dropped"), "{stderr}");
}

#[test]
fn csv_and_table_formats() {
    let case = repo().join("tests/conformance/tumble_offset_tvf");
    let out = weir()
        .args(["run", "--format", "csv", "-q", "job.sql"])
        .current_dir(&case)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("window_start,window_end,cnt,min_temp\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 7);
    let out = weir()
        .args(["run", "-q", "job.sql"])
        .current_dir(&case)
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains(" window_start |"));
}

#[test]
fn planning_errors_exit_2_and_are_all_reported() {
    let dir = std::env::temp_dir().join(format!("weir-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let job = dir.join("bad.sql");
    std::fs::write(&job, "SELECT 1;\nSELEC 2;\nCREATE TABLE t (a INTEGR);\n").unwrap();
    let out = weir().arg("run").arg(&job).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("INTEGR"), "{stderr}");
    assert!(stderr.contains('^'), "{stderr}");
    std::fs::write(&job, "SELECT * FROM missing;\n").unwrap();
    let out = weir().arg("run").arg(&job).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn runtime_failure_exits_1() {
    let dir = std::env::temp_dir().join(format!("weir-cli-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("in.jsonl"), "{\"a\":\n").unwrap();
    let job = dir.join("job.sql");
    std::fs::write(
        &job,
        "CREATE TABLE t (a INT) WITH ('connector' = 'filesystem', 'path' = 'in.jsonl', 'format' = 'json', 'format.on-error' = 'fail');\nSELECT a FROM t;\n",
    )
    .unwrap();
    let out = weir()
        .args(["run", "job.sql"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("in.jsonl:1"));
}

#[test]
fn execute_one_statement() {
    let out = weir()
        .args(["-e", "SELECT 1 + 1 AS two;"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().contains("| two"));
}

#[test]
fn shell_reads_multi_line_statements_and_survives_errors() {
    use std::io::Write;
    let hist = std::env::temp_dir().join(format!("weir-hist-{}", std::process::id()));
    let mut child = weir()
        .arg("--history")
        .arg(&hist)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let script =
        "CREATE TABLE g (id BIGINT)\n WITH ('connector' = 'datagen', 'number-of-rows' = '3',\n \
                  'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '3');\n\
                  SELEC typo;\nSELECT id * 10 AS x\n  FROM g;\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Table 'g' created."), "{stdout}");
    for v in ["10", "20", "30"] {
        assert!(stdout.contains(&format!("| {v} |")), "{stdout}");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("SELEC"));
}

#[test]
fn consecutive_inserts_run_as_one_job() {
    let dir = std::env::temp_dir().join(format!("weir-cli-ins-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let job = dir.join("two.sql");
    std::fs::write(
        &job,
        "CREATE TABLE g (id BIGINT) WITH ('connector'='datagen','number-of-rows'='5',\
         'fields.id.kind'='sequence','fields.id.start'='1','fields.id.end'='5');\n\
         CREATE TABLE a (id BIGINT) WITH ('connector'='blackhole');\n\
         CREATE TABLE b (id BIGINT) WITH ('connector'='blackhole');\n\
         INSERT INTO a SELECT id FROM g;\nINSERT INTO b SELECT id FROM g WHERE id > 2;\n",
    )
    .unwrap();
    let out = weir().arg("run").arg(&job).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("insert into a, b finished"), "{stderr}");
    assert!(stderr.contains("8 rows out"), "{stderr}");
}

#[test]
fn dry_run_plans_and_explains_without_running() {
    let case = repo().join("tests/conformance/updating_dedup_keep_last");
    let out = weir()
        .args(["run", "--dry-run", "job.sql"])
        .current_dir(&case)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_success(&out);
    assert!(
        stdout.contains("Deduplicate") && stdout.contains("changelog"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("s-000"),
        "no rows: it did not run\n{stdout}"
    );
    let bad = std::env::temp_dir().join(format!("weir-dry-{}.sql", std::process::id()));
    std::fs::write(&bad, "SELECT nope FROM missing;\nSELECT 1;\n").unwrap();
    let out = weir()
        .args(["run", "--dry-run"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
}

#[test]
fn shell_statements_answer() {
    let out = weir()
        .args(["-e", "HELP; SHOW JOBS; STOP JOB '9';"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("STOP JOB") && stdout.contains("Empty set"),
        "{stdout}"
    );
    assert!(stderr.contains("no job with id '9'"), "{stderr}");
}

/// A job file in a fresh temporary folder.
fn job_file(name: &str, sql: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let job = dir.join("job.sql");
    std::fs::write(&job, sql).unwrap();
    job
}

/// Runs a job file that must fail planning: exit 2, nothing on stdout (nothing ran); its stderr.
fn refused_at_planning(name: &str, sql: &str) -> String {
    let out = weir().arg("run").arg(job_file(name, sql)).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.is_empty(), "nothing ran: {stdout}");
    stderr
}

const GEN: &str = "CREATE TABLE g (id BIGINT) WITH ('connector'='datagen','number-of-rows'='3',\
     'fields.id.kind'='sequence','fields.id.start'='1','fields.id.end'='3');\n";

#[test]
fn an_error_in_the_third_query_stops_the_file_before_the_first_runs() {
    let sql = format!(
        "{GEN}SELECT id * 10 AS x FROM g;\nSELECT id + 1 AS y FROM g;\nSELECT idd FROM g;\n\
         SELECT SUM(id) FROM g GROUP BY nope;\n"
    );
    let stderr = refused_at_planning("third", &sql);
    assert!(
        stderr.contains("idd") && stderr.contains("line 4"),
        "{stderr}"
    );
    assert!(
        stderr.contains("nope") && stderr.contains("line 5"),
        "{stderr}"
    );
}

#[test]
fn a_source_option_is_checked_when_the_table_is_read() {
    // Valid for a Kafka sink (which ignores scan.*), so CREATE TABLE accepts it; reading it
    // is a planning error at the option, before anything runs. No broker is contacted.
    let sql = format!(
        "{GEN}CREATE TABLE k (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 't',\n  \
         'properties.bootstrap.servers' = '127.0.0.1:1', 'format' = 'json',\n  \
         'scan.startup.mode' = 'sometimes');\nSELECT id FROM g;\nSELECT id FROM k;\n"
    );
    let stderr = refused_at_planning("role", &sql);
    assert!(
        stderr.contains("table 'k'") && stderr.contains("sometimes"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 4, column 3"),
        "located at the option: {stderr}"
    );
}

#[test]
fn a_sink_only_connector_cannot_be_read() {
    let sql =
        "CREATE TABLE out (id BIGINT) WITH ('connector' = 'blackhole');\nSELECT id FROM out;\n";
    let stderr = refused_at_planning("sinkonly", sql);
    assert!(stderr.contains("table 'out' cannot be read"), "{stderr}");
}

#[test]
fn set_on_the_command_line_wins_over_the_files_set() {
    let sql = "SET 'table.local-time-zone' = 'UTC';\n\
               SELECT TO_TIMESTAMP_LTZ(1704110400000, 3) AS t;\n";
    let job = job_file("set", sql);
    let run = |extra: &[&str]| {
        let out = weir()
            .args(["run", "--format", "csv"])
            .args(extra)
            .arg(&job)
            .output()
            .unwrap();
        assert_success(&out);
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (utc, _) = run(&[]);
    let (berlin, stderr) = run(&["--set", "table.local-time-zone=Europe/Berlin"]);
    assert!(utc.contains("12:00:00"), "{utc}");
    assert!(
        berlin.contains("13:00:00"),
        "the zone from --set shows in the rows: {berlin}"
    );
    assert!(
        stderr.contains("fixed to 'Europe/Berlin' by --set"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_set_key_names_the_closest_one() {
    let job = job_file("setkey", "SELECT 1;\n");
    let out = weir()
        .args(["run", "--set", "table.local-timezone=UTC"])
        .arg(&job)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "unknown option 'table.local-timezone'; did you mean 'table.local-time-zone'?"
        ),
        "{stderr}"
    );
}
