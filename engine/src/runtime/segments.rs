//! Ordered segments: one stream (a file, a directory's files in name order) read by several
//! source subtasks, each taking every `n`-th segment, with the watermarks of a single reader.
//!
//! Read alone, a row's watermark is the running maximum of everything before it in the
//! stream. Read in segments, it is the maximum of two parts: the *prefix* (every row of the
//! segments before the row's segment) and the running maximum within its own segment. Each
//! subtask posts a segment's maximum to the [`SegmentBoard`] its node's subtasks share when
//! it has read the segment, and starts a segment only once every earlier one is posted. So
//! which rows are late never depends on how many subtasks read the stream, and decoding runs
//! in parallel: a subtask waits only for the segments just before its own.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::message::WATERMARK_MIN;

/// The maxima of a stream's finished segments, shared by the subtasks reading it.
#[derive(Debug)]
pub struct SegmentBoard {
    inner: Mutex<Posted>,
    /// How many leading segments are all posted (raised as they complete).
    complete: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Posted {
    /// Posted segments beyond the complete prefix.
    pending: BTreeMap<u64, i64>,
    /// `prefix[i]`: the largest maximum of segments `0..i`; its length - 1 segments are all
    /// posted.
    prefix: Vec<i64>,
}

impl Default for SegmentBoard {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Posted {
                pending: BTreeMap::new(),
                prefix: vec![WATERMARK_MIN],
            }),
            complete: watch::channel(0).0,
        }
    }
}

impl SegmentBoard {
    /// Segment `segment` is read; `max` is the largest watermark value among its rows
    /// ([`WATERMARK_MIN`] when it had none). Posting a segment twice keeps the larger value.
    pub fn post(&self, segment: u64, max: i64) {
        let mut p = self.inner.lock().expect("lock");
        let done = p.prefix.len() as u64 - 1;
        if segment < done {
            return;
        }
        let slot = p.pending.entry(segment).or_insert(max);
        *slot = (*slot).max(max);
        let mut next = done;
        while let Some(m) = p.pending.remove(&next) {
            let before = *p.prefix.last().expect("prefix");
            p.prefix.push(before.max(m));
            next += 1;
        }
        drop(p);
        if next > done {
            self.complete.send_replace(next);
        }
    }

    /// The largest watermark value of segments `0..segment`, once they are all posted.
    pub fn prefix(&self, segment: u64) -> Option<i64> {
        let p = self.inner.lock().expect("lock");
        p.prefix.get(segment as usize).copied()
    }

    /// A receiver that changes whenever more leading segments are complete.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.complete.subscribe()
    }
}

/// A source subtask's segments: the one it reads and the maxima of those it has read (its part
/// of a checkpoint, so a restored job knows every earlier segment's maximum).
#[derive(Debug, Default)]
pub struct SubtaskSegments {
    /// The segment being read and its running maximum so far.
    pub current: Option<(u64, i64)>,
    /// Maxima of segments read, and of partly read ones a checkpoint restored.
    pub known: BTreeMap<u64, SegmentMax>,
}

/// What a checkpoint records of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SegmentMax {
    /// The largest watermark value among the segment's rows read.
    pub max: i64,
    /// Whether the segment was read to its end.
    pub ended: bool,
}

impl SubtaskSegments {
    /// Start segment `segment`, continuing a running maximum a checkpoint restored.
    pub fn start(&mut self, segment: u64) {
        let max = self.known.get(&segment).map_or(WATERMARK_MIN, |s| s.max);
        self.current = Some((segment, max));
    }

    /// Segment `segment` is read to its end: its maximum (the running one when it is the
    /// current segment, else what a checkpoint recorded), to post.
    pub fn end(&mut self, segment: u64) -> i64 {
        let max = match self.current {
            Some((s, m)) if s == segment => {
                self.current = None;
                m
            }
            _ => self.known.get(&segment).map_or(WATERMARK_MIN, |s| s.max),
        };
        self.known.insert(segment, SegmentMax { max, ended: true });
        max
    }

    /// Every segment this subtask knows, for a checkpoint (the current one as not ended).
    pub fn snapshot(&self) -> BTreeMap<u64, SegmentMax> {
        let mut all = self.known.clone();
        if let Some((s, max)) = self.current {
            all.insert(s, SegmentMax { max, ended: false });
        }
        all
    }

    /// Back to a checkpoint's segments: the ended ones are posted to `board`.
    pub fn restore(&mut self, saved: &BTreeMap<u64, SegmentMax>, board: &SegmentBoard) {
        for (s, m) in saved {
            if m.ended {
                board.post(*s, m.max);
            }
            let known = self.known.entry(*s).or_insert(*m);
            known.max = known.max.max(m.max);
            known.ended |= m.ended;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_known_once_every_earlier_segment_is_posted() {
        let b = SegmentBoard::default();
        assert_eq!(b.prefix(0), Some(WATERMARK_MIN));
        assert_eq!(b.prefix(1), None);
        b.post(1, 50);
        assert_eq!(b.prefix(1), None, "segment 0 is missing");
        assert_eq!(*b.subscribe().borrow(), 0);
        b.post(0, 10);
        assert_eq!(b.prefix(1), Some(10));
        assert_eq!(b.prefix(2), Some(50));
        assert_eq!(*b.subscribe().borrow(), 2);
        b.post(3, 5);
        b.post(2, WATERMARK_MIN);
        assert_eq!(
            b.prefix(4),
            Some(50),
            "a smaller later maximum keeps the prefix"
        );
        b.post(0, 99);
        assert_eq!(
            b.prefix(1),
            Some(10),
            "a completed segment is not posted again"
        );
    }

    #[test]
    fn a_subtask_keeps_its_segments_maxima_across_a_restore() {
        let board = SegmentBoard::default();
        let mut s = SubtaskSegments::default();
        s.start(0);
        s.current = Some((0, 7));
        assert_eq!(s.end(0), 7);
        s.start(2);
        s.current = Some((2, 3));
        let saved = s.snapshot();
        assert_eq!(
            saved[&2],
            SegmentMax {
                max: 3,
                ended: false
            }
        );

        let mut again = SubtaskSegments::default();
        again.restore(&saved, &board);
        assert_eq!(board.prefix(1), Some(7), "the ended segment is posted");
        again.start(2);
        assert_eq!(again.current, Some((2, 3)), "the running maximum continues");
        assert_eq!(
            again.end(1),
            WATERMARK_MIN,
            "a segment never seen has no rows"
        );
    }
}
