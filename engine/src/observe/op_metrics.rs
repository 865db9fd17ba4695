//! What each task of a running job did: rows in and out, time busy processing, time blocked
//! on a full output channel (backpressure), and what its operator counted (late rows, late
//! updates, expired keys). Counted once per message, never per row. Tasks are numbered in the
//! plan's pre-order, the order EXPLAIN prints them, so EXPLAIN ANALYZE can put each task's
//! numbers beside its line.
//!
//! Busy and backpressured time are totals (counters); [`OperatorMetrics::recent`] turns them,
//! and the rows sent, into shares and a rate over the last [`RATE_WINDOW`], from readings the
//! job's monitor takes once a second ([`OperatorMetrics::tick`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::observe::metrics::JobMetrics;

/// The counters of one task (source, operator or union).
#[derive(Debug)]
pub struct OperatorMetrics {
    /// Position of the plan node in pre-order (0 is the root).
    pub node: usize,
    /// Which of the node's subtasks this is (from 0).
    pub subtask: usize,
    /// The operator's name (`WindowAggregate`, `Source`, ...).
    pub name: String,
    /// Rows received from the input.
    pub rows_in: AtomicU64,
    /// Rows received from each input of a two-input operator (a join's left and right);
    /// not counted for one input (see [`OperatorMetrics::event`]).
    pub rows_in_by_input: [AtomicU64; 2],
    /// Rows sent downstream.
    pub rows_out: AtomicU64,
    /// Nanoseconds spent processing messages.
    pub busy_ns: AtomicU64,
    /// Nanoseconds spent waiting for room in the output channel (backpressure).
    pub blocked_ns: AtomicU64,
    /// The last watermark the task passed on (ns; `i64::MIN` before the first).
    pub watermark: AtomicI64,
    /// Windows held open (window operators).
    pub open_windows: AtomicU64,
    /// Keys held in state (updating operators) or groups in open windows.
    pub state_keys: AtomicU64,
    /// Approximate bytes of state held in memory.
    pub state_bytes: AtomicU64,
    /// Messages waiting in the output channel after the last send (channel fill).
    pub queued: AtomicU64,
    /// Per source partition: records, watermark, idleness (sources only).
    pub partitions: Mutex<BTreeMap<u32, PartitionStat>>,
    /// Rows the operator dropped because their windows had fired (see [`OperatorMetrics::event`]).
    pub late_rows: AtomicU64,
    /// Late rows the operator accepted within `window.allowed-lateness`.
    pub late_updates: AtomicU64,
    /// Keys the operator dropped from its state by `table.exec.state.ttl`.
    pub expired_keys: AtomicU64,
    /// Rows a lookup join answered from its cache (see [`OperatorMetrics::event`]).
    pub lookup_hits: AtomicU64,
    /// Rows a lookup join looked up in the table.
    pub lookup_misses: AtomicU64,
    /// Lookups a lookup join sent (one per batch with misses, and one per retry).
    pub lookup_queries: AtomicU64,
    /// Nanoseconds the lookup join's queries took, in all.
    pub lookup_ns: AtomicU64,
    /// When the task was created: the origin of `waiting_since`.
    epoch: Instant,
    /// Nanoseconds after `epoch` plus one when the current wait on the output channel began;
    /// 0 while not waiting.
    waiting_since: AtomicU64,
    /// The largest backpressured total shown so far (keeps the counter monotonic while a wait
    /// in progress is folded into `blocked_ns`).
    blocked_shown: AtomicU64,
    /// Readings of the counters over time, for [`OperatorMetrics::recent`].
    meters: Mutex<Meters>,
}

/// 10 s windows over the counters that have a recent rate or share.
#[derive(Debug)]
struct Meters {
    rows_out: RateWindow,
    busy: RateWindow,
    blocked: RateWindow,
}

/// A task over the last [`RATE_WINDOW`] (since it started when younger).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Recent {
    /// Rows sent downstream per second (a source's rows out are the records it read).
    pub rows_per_second: f64,
    /// Share of the time the task was processing (0 to 1).
    pub busy: f64,
    /// Share of the time the task waited on a full output channel (0 to 1).
    pub backpressured: f64,
}

/// What an operator counted since it started (see [`crate::operator::Operator::counts`]);
/// `None` for what it never counts, which then has no series in `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// Rows dropped because their windows had fired.
    pub late_rows: Option<u64>,
    /// Late rows accepted within `window.allowed-lateness` (they update emitted windows).
    pub late_updates: Option<u64>,
    /// Keys dropped from updating state by `table.exec.state.ttl`.
    pub expired_keys: Option<u64>,
}

/// The value of an event counter of [`OperatorMetrics`] whose operator never counts it.
const NOT_COUNTED: u64 = u64::MAX;

/// How far back [`OperatorMetrics::recent`] looks.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Readings `(when, count)` of a counter at least a second apart, spanning about
/// [`RATE_WINDOW`]: the oldest kept reading is the newest one older than the window.
#[derive(Debug)]
struct RateWindow(std::collections::VecDeque<(Instant, u64)>);

impl RateWindow {
    /// A window whose first reading is zero, now.
    fn new() -> Self {
        Self([(Instant::now(), 0)].into())
    }

    /// The count's rate per second from the oldest kept reading to `(now, count)`, which is
    /// kept when the last reading is a second old or more.
    fn per_second(&mut self, now: Instant, count: u64) -> f64 {
        let r = &mut self.0;
        while r.len() > 1 && now.duration_since(r[1].0) >= RATE_WINDOW {
            r.pop_front();
        }
        let (t0, c0) = r.front().copied().unwrap_or((now, count));
        if r.back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_secs(1))
        {
            r.push_back((now, count));
        }
        let secs = now.duration_since(t0).as_secs_f64();
        match secs > 0.0 {
            true => count.saturating_sub(c0) as f64 / secs,
            false => 0.0,
        }
    }
}

/// One partition of a source, as the metrics show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionStat {
    /// The partition's label (`3` for Kafka partition 3; `0` for an unpartitioned source).
    pub label: String,
    /// Records read from it.
    pub records: u64,
    /// Its watermark (ns; `i64::MIN` before the first).
    pub watermark: i64,
    /// It produced nothing for `scan.watermark.idle-timeout` and no longer holds the watermark.
    pub idle: bool,
    /// It has no more data (a bounded read reached its end).
    pub ended: bool,
}

/// How much state an operator holds, as reported by [`crate::operator::Operator::state_size`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSize {
    /// Windows held open.
    pub open_windows: u64,
    /// Keys (or groups) held.
    pub keys: u64,
    /// Approximate bytes in memory.
    pub bytes: u64,
}

impl OperatorMetrics {
    /// Counters for plan node `node`.
    pub fn new(node: usize, name: &str) -> Arc<Self> {
        Self::of_subtask(node, 0, name)
    }

    /// Counters for subtask `subtask` of plan node `node`.
    pub fn of_subtask(node: usize, subtask: usize, name: &str) -> Arc<Self> {
        Arc::new(Self {
            node,
            subtask,
            name: name.to_string(),
            rows_in: AtomicU64::new(0),
            rows_in_by_input: [AtomicU64::new(NOT_COUNTED), AtomicU64::new(NOT_COUNTED)],
            rows_out: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            blocked_ns: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            open_windows: AtomicU64::new(0),
            state_keys: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            partitions: Mutex::new(BTreeMap::new()),
            late_rows: AtomicU64::new(NOT_COUNTED),
            late_updates: AtomicU64::new(NOT_COUNTED),
            expired_keys: AtomicU64::new(NOT_COUNTED),
            lookup_hits: AtomicU64::new(NOT_COUNTED),
            lookup_misses: AtomicU64::new(NOT_COUNTED),
            lookup_queries: AtomicU64::new(NOT_COUNTED),
            lookup_ns: AtomicU64::new(NOT_COUNTED),
            epoch: Instant::now(),
            waiting_since: AtomicU64::new(0),
            blocked_shown: AtomicU64::new(0),
            meters: Mutex::new(Meters {
                rows_out: RateWindow::new(),
                busy: RateWindow::new(),
                blocked: RateWindow::new(),
            }),
        })
    }

    /// Rows per second and busy and backpressured shares over the last [`RATE_WINDOW`] (since
    /// the task started when younger; since the previous reading when readings are further
    /// apart, which the monitor's [`OperatorMetrics::tick`] prevents while the job runs).
    pub fn recent(&self) -> Recent {
        let now = Instant::now();
        let blocked = self.blocked_total_ns();
        let mut m = self.meters.lock().expect("lock");
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let share = |ns_per_second: f64| (ns_per_second / 1e9).clamp(0.0, 1.0);
        Recent {
            rows_per_second: m.rows_out.per_second(now, load(&self.rows_out)),
            busy: share(m.busy.per_second(now, load(&self.busy_ns))),
            backpressured: share(m.blocked.per_second(now, blocked)),
        }
    }

    /// Take this second's reading of the counters (the job's monitor calls it once a second).
    pub fn tick(&self) {
        let _ = self.recent();
    }

    /// Nanoseconds waited on a full output channel so far, a wait in progress included, so a
    /// task stuck behind a stalled sink shows its backpressure before the wait ends.
    pub fn blocked_total_ns(&self) -> u64 {
        let mut total = self.blocked_ns.load(Ordering::Relaxed);
        let since = self.waiting_since.load(Ordering::Relaxed);
        if since > 0 {
            let now = self.epoch.elapsed().as_nanos() as u64;
            total += now.saturating_sub(since - 1);
        }
        self.blocked_shown
            .fetch_max(total, Ordering::Relaxed)
            .max(total)
    }

    /// Send `m` on `tx`, counting the time it waits for room as backpressure and noting how
    /// full the channel is afterwards.
    pub async fn send<T>(
        &self,
        tx: &tokio::sync::mpsc::Sender<T>,
        m: T,
    ) -> std::result::Result<(), tokio::sync::mpsc::error::SendError<T>> {
        let start = Instant::now();
        let since = start.duration_since(self.epoch).as_nanos() as u64 + 1;
        self.waiting_since.store(since, Ordering::Relaxed);
        let sent = tx.send(m).await;
        self.waiting_since.store(0, Ordering::Relaxed);
        Self::add_time(&self.blocked_ns, start);
        self.note_queue(tx);
        sent
    }

    /// Record the operator's counts (totals since it started) and add what is new to the job's
    /// counters.
    pub fn set_counts(&self, c: EventCounts, job: &JobMetrics) {
        let pairs = [
            (&self.late_rows, c.late_rows, &job.late_rows),
            (&self.late_updates, c.late_updates, &job.late_updates),
            (&self.expired_keys, c.expired_keys, &job.expired_keys),
        ];
        for (mine, total, theirs) in pairs {
            let Some(total) = total else { continue };
            let before = match mine.swap(total, Ordering::Relaxed) {
                NOT_COUNTED => 0,
                n => n,
            };
            theirs.fetch_add(total.saturating_sub(before), Ordering::Relaxed);
        }
    }

    /// The value of one of the event counters (`late_rows`, `late_updates`, `expired_keys`),
    /// or `None` when the operator does not count it.
    pub fn event(counter: &AtomicU64) -> Option<u64> {
        match counter.load(Ordering::Relaxed) {
            NOT_COUNTED => None,
            n => Some(n),
        }
    }

    /// Record the operator's state size.
    pub fn set_state(&self, s: StateSize) {
        self.open_windows.store(s.open_windows, Ordering::Relaxed);
        self.state_keys.store(s.keys, Ordering::Relaxed);
        self.state_bytes.store(s.bytes, Ordering::Relaxed);
    }

    /// Record how full the output channel `tx` is (once per message sent).
    pub fn note_queue<T>(&self, tx: &tokio::sync::mpsc::Sender<T>) {
        let queued = tx.max_capacity() - tx.capacity();
        self.queued.store(queued as u64, Ordering::Relaxed);
    }

    /// Add the time since `start` to a counter.
    pub fn add_time(counter: &AtomicU64, start: Instant) {
        counter.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Add `n` to a counter.
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Add `n` to an event counter (see [`OperatorMetrics::event`]); the first call starts it.
    pub fn add_event(counter: &AtomicU64, n: u64) {
        let _ = counter.compare_exchange(NOT_COUNTED, 0, Ordering::Relaxed, Ordering::Relaxed);
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Count `n` rows received from input `input` (of two; the first call starts the counts).
    pub fn add_input_rows(&self, input: usize, n: usize) {
        for c in &self.rows_in_by_input {
            let _ = c.compare_exchange(NOT_COUNTED, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
        Self::add(&self.rows_in_by_input[input], n);
    }

    /// `rows in=.. out=.. busy=.. ms (..%) backpressured=.. ms (..%) last 10 s: busy ..%
    /// backpressured ..%` over `wall` time.
    pub fn summary(&self, wall: Duration) -> String {
        let wall_ns = wall.as_nanos().max(1) as f64;
        let busy = self.busy_ns.load(Ordering::Relaxed) as f64;
        let blocked = self.blocked_total_ns() as f64;
        let recent = self.recent();
        format!(
            "rows in={} out={} busy={:.1} ms ({:.0}%) backpressured={:.1} ms ({:.0}%) \
             last 10 s: busy {:.0}% backpressured {:.0}%",
            self.rows_in.load(Ordering::Relaxed),
            self.rows_out.load(Ordering::Relaxed),
            busy / 1e6,
            100.0 * busy / wall_ns,
            blocked / 1e6,
            100.0 * blocked / wall_ns,
            100.0 * recent.busy,
            100.0 * recent.backpressured
        )
    }
}

/// A future whose polls add their time to `busy`: the work a source does inside its `next()`,
/// without the time it waits for data or paces itself.
pub struct Timed<'a, F> {
    fut: F,
    busy: Option<&'a AtomicU64>,
}

impl<'a, F> Timed<'a, F> {
    /// Time the polls of `fut` into `busy` (nothing when `None`).
    pub fn new(fut: F, busy: Option<&'a AtomicU64>) -> Self {
        Self { fut, busy }
    }
}

impl<F: Future + Unpin> Future for Timed<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = Instant::now();
        let out = Pin::new(&mut self.fut).poll(cx);
        if let Some(busy) = self.busy {
            OperatorMetrics::add_time(busy, start);
        }
        out
    }
}

/// EXPLAIN lines (pre-order, `Exchange:` lines between nodes) with each node's numbers
/// appended: for a node run by several subtasks, their totals and the busiest subtask.
pub fn annotate(explain: &str, metrics: &[Arc<OperatorMetrics>], wall: Duration) -> String {
    let mut out = String::new();
    let mut node = 0;
    for line in explain.lines() {
        out.push_str(line);
        // Exchanges and the local step of a window aggregation run in routers, not nodes.
        let t = line.trim_start();
        if !t.starts_with("Exchange:") && !t.starts_with("LocalWindowAggregate") {
            let subtasks: Vec<&OperatorMetrics> = metrics
                .iter()
                .filter(|m| m.node == node)
                .map(|m| m.as_ref())
                .collect();
            if !subtasks.is_empty() {
                out.push_str("  [");
                out.push_str(&summary_of(&subtasks, wall));
                out.push(']');
            }
            node += 1;
        }
        out.push('\n');
    }
    out
}

/// The task busiest since the job started and its share of the time `wall`: `3:WindowAggregate
/// 41%`, with `subtask 1 of 2` when its node runs as several (`SHOW JOBS`).
pub fn busiest(tasks: &[Arc<OperatorMetrics>], wall: Duration) -> Option<String> {
    let top = tasks
        .iter()
        .max_by_key(|m| m.busy_ns.load(Ordering::Relaxed))?;
    let share = top.busy_ns.load(Ordering::Relaxed) as f64 / wall.as_nanos().max(1) as f64;
    let of = tasks.iter().filter(|m| m.node == top.node).count();
    let which = match of {
        1 => String::new(),
        n => format!(" subtask {} of {n}", top.subtask),
    };
    Some(format!(
        "{}:{}{which} {:.0}%",
        top.node,
        top.name,
        100.0 * share.min(1.0)
    ))
}

/// One subtask's summary, or several subtasks' totals and the busiest of them (skew shows as
/// one subtask far busier than the average).
fn summary_of(subtasks: &[&OperatorMetrics], wall: Duration) -> String {
    if let [one] = subtasks {
        return one.summary(wall);
    }
    let total = |f: fn(&OperatorMetrics) -> u64| subtasks.iter().map(|m| f(m)).sum::<u64>();
    let rows_in = total(|m| m.rows_in.load(Ordering::Relaxed));
    let rows_out = total(|m| m.rows_out.load(Ordering::Relaxed));
    let busy = total(|m| m.busy_ns.load(Ordering::Relaxed));
    let blocked = total(|m| m.blocked_total_ns());
    let wall_ns = wall.as_nanos().max(1) as f64;
    let (k, busiest) = subtasks
        .iter()
        .enumerate()
        .max_by_key(|(_, m)| m.busy_ns.load(Ordering::Relaxed))
        .expect("several subtasks");
    let busiest_ns = busiest.busy_ns.load(Ordering::Relaxed) as f64;
    format!(
        "{} subtasks: rows in={rows_in} out={rows_out} busy={:.1} ms backpressured={:.1} ms; \
         busiest subtask {k}: rows in={} busy={:.0}%",
        subtasks.len(),
        busy as f64 / 1e6,
        blocked as f64 / 1e6,
        busiest.rows_in.load(Ordering::Relaxed),
        100.0 * busiest_ns / wall_ns,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_task_names_its_subtask_when_its_node_has_several() {
        let src = OperatorMetrics::new(0, "source r");
        let a = OperatorMetrics::of_subtask(1, 0, "WindowAggregate");
        let b = OperatorMetrics::of_subtask(1, 1, "WindowAggregate");
        src.busy_ns.store(100_000_000, Ordering::Relaxed);
        a.busy_ns.store(200_000_000, Ordering::Relaxed);
        b.busy_ns.store(700_000_000, Ordering::Relaxed);
        let wall = Duration::from_secs(1);
        let tasks = [src.clone(), a, b];
        assert_eq!(
            busiest(&tasks, wall).unwrap(),
            "1:WindowAggregate subtask 1 of 2 70%"
        );
        assert_eq!(busiest(&[src], wall).unwrap(), "0:source r 10%");
        assert_eq!(busiest(&[], wall), None);
    }

    #[test]
    fn rate_over_the_last_ten_seconds() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = RateWindow([(t0, 0)].into());
        // 100 rows/s for 20 s, read every second: the rate is 100 throughout.
        for s in 1..=20 {
            assert_eq!(w.per_second(at(s), s * 100), 100.0);
        }
        assert!(w.0.len() <= 12, "bounded: {}", w.0.len());
        // Then 1000 rows/s: after 10 s only the new rate is in the window.
        for s in 21..=30 {
            w.per_second(at(s), 2000 + (s - 20) * 1000);
        }
        assert_eq!(w.per_second(at(31), 2000 + 11 * 1000), 1000.0);
        // Read rarely: the rate since the previous reading.
        assert_eq!(w.per_second(at(91), 2000 + 11 * 1000 + 600), 10.0);
        // Stopped: zero once the window has passed.
        w.per_second(at(95), 13_600);
        assert_eq!(w.per_second(at(106), 13_600), 0.0);
    }
}
