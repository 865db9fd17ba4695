//! What each task of a running job did: rows in and out, time busy processing, and time blocked
//! on a full output channel (backpressure). Counted once per message, never per row. Tasks are
//! numbered in the plan's pre-order, the order EXPLAIN prints them, so EXPLAIN ANALYZE can put
//! each task's numbers beside its line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The counters of one task (source, operator or union).
#[derive(Debug)]
pub struct OperatorMetrics {
    /// Position of the plan node in pre-order (0 is the root).
    pub node: usize,
    /// The operator's name (`WindowAggregate`, `Source`, ...).
    pub name: String,
    /// Rows received from the input.
    pub rows_in: AtomicU64,
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
    /// Readings of `rows_out` over time, for [`OperatorMetrics::rows_per_second`].
    rate: Mutex<RateWindow>,
}

/// How far back [`OperatorMetrics::rows_per_second`] looks.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Readings `(when, count)` of a counter at least a second apart, spanning about
/// [`RATE_WINDOW`]: the oldest kept reading is the newest one older than the window.
#[derive(Debug)]
struct RateWindow(std::collections::VecDeque<(Instant, u64)>);

impl RateWindow {
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
        Arc::new(Self {
            node,
            name: name.to_string(),
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            blocked_ns: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            open_windows: AtomicU64::new(0),
            state_keys: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            partitions: Mutex::new(BTreeMap::new()),
            rate: Mutex::new(RateWindow([(Instant::now(), 0)].into())),
        })
    }

    /// Rows sent downstream per second over the last [`RATE_WINDOW`] (since the task started
    /// when younger; since the previous reading when readings are further apart). A source's
    /// rows out are the records it read.
    pub fn rows_per_second(&self) -> f64 {
        let count = self.rows_out.load(Ordering::Relaxed);
        let mut w = self.rate.lock().expect("lock");
        w.per_second(Instant::now(), count)
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

    /// `rows in=.. out=.. busy=.. ms (..%) backpressured=.. ms (..%)` over `wall` time.
    pub fn summary(&self, wall: Duration) -> String {
        let wall_ns = wall.as_nanos().max(1) as f64;
        let busy = self.busy_ns.load(Ordering::Relaxed) as f64;
        let blocked = self.blocked_ns.load(Ordering::Relaxed) as f64;
        format!(
            "rows in={} out={} busy={:.1} ms ({:.0}%) backpressured={:.1} ms ({:.0}%)",
            self.rows_in.load(Ordering::Relaxed),
            self.rows_out.load(Ordering::Relaxed),
            busy / 1e6,
            100.0 * busy / wall_ns,
            blocked / 1e6,
            100.0 * blocked / wall_ns
        )
    }
}

/// EXPLAIN lines (pre-order) with each node's numbers appended.
pub fn annotate(explain: &str, metrics: &[Arc<OperatorMetrics>], wall: Duration) -> String {
    let mut out = String::new();
    for (i, line) in explain.lines().enumerate() {
        out.push_str(line);
        if let Some(m) = metrics.iter().find(|m| m.node == i) {
            out.push_str("  [");
            out.push_str(&m.summary(wall));
            out.push(']');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
