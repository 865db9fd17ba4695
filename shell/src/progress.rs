//! The progress line of `weir run` on a terminal, like Spark's query progress: input rows/s,
//! output rows, the watermark and how far it is behind the wall clock, late rows, dead
//! letters, and the busiest operator and the largest backpressure over the last 10 s. It is written to stderr (results alone go to stdout, so they pipe cleanly), redrawn
//! once a second, and off with `--quiet` or when stderr is not a terminal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir::engine_metrics::{format_watermark, metric, samples, Samples};

pub struct Progress {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Start the progress line for `jobs` (nothing when quiet or not on a terminal).
pub fn spawn(jobs: Vec<weir::JobHandle>, quiet: bool) -> Option<Progress> {
    if quiet || jobs.is_empty() || !std::io::stderr().is_terminal() {
        return None;
    }
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut last_in = 0u64;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stopped => break,
            }
            let line = progress_line(&jobs, &mut last_in);
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{line}");
            let _ = err.flush();
        }
        let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
    });
    Some(Progress { stop, task })
}

pub async fn stop(p: Option<Progress>) {
    if let Some(p) = p {
        let _ = p.stop.send(());
        let _ = p.task.await;
    }
}

/// One line over all jobs, from the samples `/metrics` serves; `last_in` carries the input
/// count of the previous second.
pub fn progress_line(jobs: &[weir::JobHandle], last_in: &mut u64) -> String {
    let s = samples(jobs);
    let rows_in = s.sum(&metric::SOURCE_RECORDS) as u64;
    let rows_out = s.sum(&metric::SINK_ROWS) as u64;
    let late = s.sum(&metric::LATE_ROWS) as u64;
    let bad = s.sum(&metric::DEAD_LETTERS) as u64;
    let rate = rows_in.saturating_sub(*last_in);
    *last_in = rows_in;
    let at_sink = s.max_where(&metric::WATERMARK_LAG, |x| {
        x.label("operator") == Some("sink")
    });
    let (wm, lag) = match at_sink.map(|x| x.number()) {
        Some(lag) => {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
            (now - (lag * 1e9) as i64, format!("{lag:.1}s"))
        }
        None => (i64::MIN, "-".to_string()),
    };
    let mut line = format!(
        "[weir] in {rate} rows/s | {rows_in} in, {rows_out} out | watermark {} (lag {lag}) | \
         {late} late | {bad} dead letters",
        format_watermark(wm)
    );
    if s.of(&metric::KAFKA_LAG).next().is_some() {
        let kafka = s.sum(&metric::KAFKA_LAG) as u64;
        line.push_str(&format!(" | kafka lag {kafka}"));
    }
    line.push_str(&load(&s));
    line
}

/// ` | busiest 3:WindowAggregate 80% | backpressured 60%`: the operator with the largest busy
/// share over the last 10 s (` (subtask 1 of 2)` when it runs as several), and the largest
/// backpressured share (nothing without operators).
fn load(s: &Samples) -> String {
    let Some(busy) = s.max_where(&metric::SUBTASK_BUSY_RATIO, |_| true) else {
        return String::new();
    };
    let operator = busy.label("operator").unwrap_or_default();
    let of = s
        .of(&metric::SUBTASK_BUSY_RATIO)
        .filter(|x| x.label("operator") == Some(operator))
        .count();
    let which = match of {
        1 => String::new(),
        n => format!(" (subtask {} of {n})", busy.label("subtask").unwrap_or("?")),
    };
    let blocked = s.max_where(&metric::BACKPRESSURED_RATIO, |_| true);
    format!(
        " | busiest {operator}{which} {:.0}% | backpressured {:.0}%",
        100.0 * busy.number(),
        100.0 * blocked.map_or(0.0, |x| x.number())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_line_shows_what_metrics_show() {
        let engine = weir::Engine::new();
        engine.set_quiet(true);
        let job = engine
            .submit(
                "CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '40');
                 CREATE TABLE s (id BIGINT) WITH ('connector' = 'blackhole');
                 INSERT INTO s SELECT id FROM g WHERE id IS NOT NULL;",
            )
            .await
            .unwrap();
        job.wait().await.unwrap();
        let mut last = 0;
        let line = progress_line(std::slice::from_ref(&job), &mut last);
        assert!(line.contains("40 in, 40 out"), "{line}");
        assert!(line.contains("in 40 rows/s") && last == 40, "{line}");
        assert!(line.contains("0 late | 0 dead letters"), "{line}");
        assert!(
            line.contains(" | busiest ") && line.contains("% | backpressured "),
            "{line}"
        );
        let again = progress_line(&[job], &mut last);
        assert!(again.contains("in 0 rows/s"), "{again}");
    }
}
