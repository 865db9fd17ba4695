//! Session statements about jobs and the shell itself: `SHOW JOBS`, `STOP JOB`, `HELP`, and the
//! connector options `DESCRIBE` shows (with secrets masked).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use weir_planner::{Location, PlanError, TableDef};

use crate::error::Result;
use crate::observe::metrics::JobMetrics;
use crate::runtime::job::JobStatus;
use crate::session::engine::{Inner, Output};

/// A table of strings with the given column names.
pub(crate) fn string_table(names: &[&str], rows: Vec<Vec<String>>) -> Output {
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let cols: Vec<ArrayRef> = (0..names.len())
        .map(|i| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r[i]))) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), cols).expect("columns match the schema");
    Output::Table(schema, vec![batch])
}

/// `SHOW JOBS`: one row per job kept (running, and the last ended ones), with the task busiest
/// since it started (which subtask, when its operator runs as several: skew shows there),
/// then a row that says how many ended jobs were dropped, if any.
pub(crate) fn show_jobs(g: &mut Inner) -> Output {
    g.jobs.prune();
    let mut rows: Vec<Vec<String>> = g
        .jobs
        .all()
        .iter()
        .map(|j| {
            let m = j.metrics();
            let wm = m.watermark.load(Ordering::Relaxed);
            vec![
                j.id().to_string(),
                j.name().to_string(),
                status(&j.status()),
                format!("{}s", j.uptime().as_secs()),
                JobMetrics::get(&m.rows_in).to_string(),
                JobMetrics::get(&m.rows_out).to_string(),
                crate::observe::metrics::format_watermark(wm),
                j.last_checkpoint().map_or("-".into(), |c| c.to_string()),
                crate::observe::op_metrics::busiest(&j.operator_metrics(), j.uptime())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let dropped = g.jobs.dropped();
    if dropped > 0 {
        let mut note = vec![String::new(); 9];
        note[0] = "-".into();
        note[1] = format!("({dropped} older ended jobs dropped)");
        rows.push(note);
    }
    let names = [
        "job id",
        "name",
        "status",
        "uptime",
        "rows in",
        "rows out",
        "watermark",
        "last checkpoint",
        "busiest task",
    ];
    string_table(&names, rows)
}

fn status(s: &JobStatus) -> String {
    match s {
        JobStatus::Running => "RUNNING".into(),
        JobStatus::Finished => "FINISHED".into(),
        JobStatus::Cancelled => "CANCELED".into(),
        JobStatus::Failed(e) => format!("FAILED: {e}"),
    }
}

/// `STOP JOB 'id' [WITH SAVEPOINT]`.
pub(crate) fn stop_job(g: &Inner, id: &str, savepoint: bool, at: Location) -> Result<Output> {
    let Some(job) = g.jobs.find(id) else {
        return Err(PlanError::plan(format!("no job with id '{id}' (see SHOW JOBS)"), at).into());
    };
    if job.status() != JobStatus::Running {
        return Ok(Output::Message(format!("Job {id} is not running.")));
    }
    if savepoint {
        if job.last_checkpoint().is_none() && !job.has_checkpointing() {
            return Err(PlanError::plan(
                format!("job {id} does not checkpoint, so it cannot stop with a savepoint"),
                at,
            )
            .into());
        }
        job.stop_with_savepoint();
        return Ok(Output::Message(format!(
            "Job {id} is stopping with a savepoint."
        )));
    }
    job.cancel();
    Ok(Output::Message(format!("Job {id} stopped.")))
}

/// Option values shown by DESCRIBE: secrets are masked.
pub(crate) fn option_rows(t: &TableDef) -> Vec<(String, String)> {
    t.options
        .iter()
        .map(|(k, v)| {
            let lower = k.to_ascii_lowercase();
            let secret = [
                "password",
                "secret",
                "token",
                "jaas",
                "credential",
                "api-key",
                "apikey",
            ]
            .iter()
            .any(|s| lower.contains(s));
            let shown = if secret {
                "******".to_string()
            } else {
                mask_url(v)
            };
            (format!("'{k}'"), shown)
        })
        .collect()
}

/// `value` with the password of a URL in it masked: `postgres://u:******@h/db`,
/// `…?password=******`. Other values come back as they are.
pub fn mask_url(value: &str) -> String {
    let mut out = value.to_string();
    if let Some(scheme_end) = out.find("://") {
        let auth_start = scheme_end + 3;
        let at = out[auth_start..]
            .find(['@', '/'])
            .map(|i| auth_start + i)
            .filter(|&i| out.as_bytes()[i] == b'@');
        if let Some(at) = at {
            if let Some(colon) = out[auth_start..at].find(':') {
                out.replace_range(auth_start + colon + 1..at, "******");
            }
        }
    }
    if let Some(p) = out.find("password=") {
        let start = p + "password=".len();
        let end = out[start..].find('&').map_or(out.len(), |i| start + i);
        out.replace_range(start..end, "******");
    }
    out
}

/// `HELP`: what the shell understands, on one screen.
const HELP: &str = "\
Statements end with ';' and may span lines. Ctrl-C cancels the running statement (a query,
EXPLAIN ANALYZE shows what ran so far) and keeps the shell, Ctrl-D exits, Ctrl-R searches the
history, Tab completes keywords, tables, columns, functions and options.

  CREATE TABLE t (...) WITH ('connector' = '...', ...);   a source or sink table
  CREATE VIEW v AS SELECT ...;          DROP TABLE t;  DROP VIEW v;
  SELECT ...;                           run a query and show its rows until Ctrl-C
  INSERT INTO t SELECT ...;             submit a background job (EXECUTE STATEMENT SET for several)
  SHOW TABLES | VIEWS | FUNCTIONS | JOBS;   DESCRIBE t;   EXPLAIN [ANALYZE] SELECT ...;
  STOP JOB '1' [WITH SAVEPOINT];        stop a background job
  SET 'key' = 'value';  SET;  RESET;    session options (listed below)

Windows: FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY key, window_start, window_end   (also HOP, CUMULATE, SESSION)

Session options:";

/// `HELP` with the session options Weir reads, one per line.
pub(crate) fn help() -> String {
    let mut out = HELP.to_string();
    for o in weir_planner::options::SESSION_OPTIONS {
        let set = format!("'{}' = '{}'", o.key, o.example);
        out.push_str(&format!("\n  {set:<52} {}", o.doc));
    }
    out
}
