//! Per-partition watermarks of one source.
//!
//! Each partition's watermark is the largest value the watermark expression produced on it; the
//! source's watermark is the minimum over partitions that are neither finished nor idle. A
//! partition that produced nothing for the idle timeout (processing time) stops holding the
//! watermark back and rejoins the minimum when it produces again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::message::{WATERMARK_MAX, WATERMARK_MIN};
use crate::runtime::checkpointed::PartitionSnapshot;

/// How one partition stands, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionStatus {
    /// The source's partition id.
    pub id: u32,
    /// The partition's watermark.
    pub watermark: i64,
    /// Quiet for the idle timeout (and not ended).
    pub idle: bool,
    /// No more data.
    pub ended: bool,
}

#[derive(Debug, Clone, Copy)]
struct Partition {
    watermark: i64,
    last_active: Instant,
    ended: bool,
}

/// Watermark bookkeeping over a source's partitions.
#[derive(Debug, Default)]
pub struct PartitionWatermarks {
    parts: BTreeMap<u32, Partition>,
    idle_timeout: Option<Duration>,
}

impl PartitionWatermarks {
    /// No partitions yet; `idle_timeout` (processing time) lets quiet partitions stop holding
    /// the watermark back.
    pub fn new(idle_timeout: Option<Duration>) -> Self {
        Self {
            parts: BTreeMap::new(),
            idle_timeout,
        }
    }

    /// Declare partitions (they hold the watermark back from now on).
    pub fn declare(&mut self, ids: &[u32], now: Instant) {
        for id in ids {
            self.parts.entry(*id).or_insert(Partition {
                watermark: WATERMARK_MIN,
                last_active: now,
                ended: false,
            });
        }
    }

    /// Every partition, for a checkpoint.
    pub fn snapshot(&self) -> Vec<PartitionSnapshot> {
        self.parts
            .iter()
            .map(|(id, p)| PartitionSnapshot {
                id: *id,
                watermark: p.watermark,
                ended: p.ended,
            })
            .collect()
    }

    /// Back to a checkpoint's partitions (they count as active from `now`).
    pub fn restore(&mut self, parts: &[PartitionSnapshot], now: Instant) {
        for p in parts {
            self.parts.insert(
                p.id,
                Partition {
                    watermark: p.watermark,
                    last_active: now,
                    ended: p.ended,
                },
            );
        }
    }

    /// Partition `id` has no more data: it no longer holds the watermark back.
    pub fn end(&mut self, id: u32) {
        if let Some(p) = self.parts.get_mut(&id) {
            p.ended = true;
        }
    }

    /// Note activity on a partition (declaring it when new).
    pub fn touch(&mut self, id: u32, now: Instant) {
        self.declare(&[id], now);
        if let Some(p) = self.parts.get_mut(&id) {
            p.last_active = now;
        }
    }

    /// Raise a partition's watermark; true when it changed.
    pub fn advance(&mut self, id: u32, wm: i64) -> bool {
        match self.parts.get_mut(&id) {
            Some(p) if wm > p.watermark => {
                p.watermark = wm;
                true
            }
            _ => false,
        }
    }

    /// How every partition stands.
    pub fn status(&self, now: Instant) -> Vec<PartitionStatus> {
        self.parts
            .iter()
            .map(|(id, p)| PartitionStatus {
                id: *id,
                watermark: p.watermark,
                idle: !p.ended && self.is_idle(p, now),
                ended: p.ended,
            })
            .collect()
    }

    /// Whether every partition not ended is idle (and there is one).
    pub fn all_idle(&self, now: Instant) -> bool {
        let mut live = self.parts.values().filter(|p| !p.ended).peekable();
        live.peek().is_some() && live.all(|p| self.is_idle(p, now))
    }

    fn is_idle(&self, p: &Partition, now: Instant) -> bool {
        self.idle_timeout
            .is_some_and(|t| now.duration_since(p.last_active) >= t)
    }

    /// The source watermark: the minimum over active partitions (`MAX` when all ended,
    /// unchanged-by-idle when every live partition is idle). Allocation-free: it runs for every
    /// row that raises a partition's watermark.
    pub fn current(&self, now: Instant) -> i64 {
        let mut live = self.parts.values().filter(|p| !p.ended).peekable();
        if live.peek().is_none() {
            return if self.parts.is_empty() {
                WATERMARK_MIN
            } else {
                WATERMARK_MAX
            };
        }
        let (mut active, mut largest) = (None::<i64>, WATERMARK_MIN);
        for p in live {
            largest = largest.max(p.watermark);
            if !self.is_idle(p, now) {
                active = Some(active.map_or(p.watermark, |m| m.min(p.watermark)));
            }
        }
        // Everything idle: the watermark may advance to the largest seen.
        active.unwrap_or(largest)
    }

    /// The watermark of the source's only partition, `id`, while it is live: then the source
    /// watermark is that partition's, so a batch's row watermarks are a running maximum
    /// without looking the partition up per row.
    pub fn only_live(&self, id: u32) -> Option<i64> {
        match (self.parts.len(), self.parts.get(&id)) {
            (1, Some(p)) if !p.ended => Some(p.watermark),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_partitions_ignoring_ended_and_idle() {
        let t0 = Instant::now();
        let mut w = PartitionWatermarks::new(Some(Duration::from_secs(5)));
        w.declare(&[0, 1, 2], t0);
        assert_eq!(w.current(t0), WATERMARK_MIN);
        w.advance(0, 100);
        w.advance(1, 50);
        w.touch(0, t0);
        w.touch(1, t0);
        assert_eq!(w.current(t0), WATERMARK_MIN, "partition 2 holds it back");
        w.end(2);
        assert_eq!(w.current(t0), 50);
        let later = t0 + Duration::from_secs(6);
        w.touch(0, later);
        assert_eq!(w.current(later), 100, "partition 1 is idle");
        w.touch(1, later);
        assert_eq!(w.current(later), 50, "partition 1 rejoins");
        w.end(0);
        w.end(1);
        assert_eq!(w.current(later), WATERMARK_MAX);
    }
}
