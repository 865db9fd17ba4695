//! Which rows of the generated sequence are done, as a checkpoint position that restores at
//! any parallelism.
//!
//! A row's values are a function of its number, so "done" is a set of row-number ranges. A
//! subtask's position lists the ranges it generated (and those of its share it was restored
//! with); a restore at another parallelism unions every old subtask's ranges
//! ([`merge`]), and each new subtask generates the rows of its own share outside them
//! ([`todo`]). Positions of checkpoints taken before ranges were kept (a plain count of rows
//! generated) still read, at their own parallelism and at any other.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Row-number ranges, sorted, not overlapping, not touching.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// `[first, end)` row numbers.
    pub done: Vec<(u64, u64)>,
}

impl Done {
    /// Add rows `r`, joining neighbouring ranges.
    pub fn add(&mut self, r: Range<u64>) {
        if r.is_empty() {
            return;
        }
        if let Some(last) = self.done.last_mut().filter(|l| l.1 == r.start) {
            last.1 = r.end; // the next batch of a run: nothing to sort
            return;
        }
        self.done.push((r.start, r.end));
        self.done.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(self.done.len());
        for &(lo, hi) in &self.done {
            match out.last_mut() {
                Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        self.done = out;
    }

    /// The ranges that overlap `share`, cut to it.
    pub fn within(&self, share: &Range<u64>) -> Done {
        let mut out = Done::default();
        for &(lo, hi) in &self.done {
            out.add(lo.max(share.start)..hi.min(share.end));
        }
        out
    }

    /// How many rows are done.
    pub fn rows(&self) -> u64 {
        self.done.iter().map(|(lo, hi)| hi - lo).sum()
    }

    /// The rows of `share` not done, in order.
    pub fn todo(&self, share: &Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut at = share.start;
        for &(lo, hi) in &self.done {
            if hi <= at || lo >= share.end {
                continue;
            }
            if lo > at {
                out.push(at..lo);
            }
            at = at.max(hi);
        }
        if at < share.end {
            out.push(at..share.end);
        }
        out
    }

    /// The position text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("ranges serialise")
    }

    /// Read a position: ranges, or (older checkpoints) the count of rows generated from the
    /// start of `share`, the share of the subtask that wrote it.
    pub fn parse(text: &str, share: &Range<u64>) -> Result<Done, String> {
        let text = text.trim();
        if let Ok(count) = text.parse::<u64>() {
            let mut d = Done::default();
            d.add(share.start..share.start.saturating_add(count).min(share.end));
            return Ok(d);
        }
        serde_json::from_str(text).map_err(|e| format!("unreadable datagen position '{text}': {e}"))
    }
}

/// One position holding every old subtask's done rows; `share(i, n)` is the rows subtask `i`
/// of `n` generates. `None` when no subtask saved a position.
pub fn merge(
    positions: &[Option<String>],
    share: impl Fn(usize, usize) -> Range<u64>,
) -> Result<Option<String>, String> {
    let n = positions.len();
    let mut all = Done::default();
    let mut any = false;
    for (i, p) in positions.iter().enumerate() {
        let Some(p) = p else { continue };
        any = true;
        for (lo, hi) in Done::parse(p, &share(i, n))?.done {
            all.add(lo..hi);
        }
    }
    Ok(any.then(|| all.to_text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_join_and_the_rest_of_a_share_is_todo() {
        let mut d = Done::default();
        d.add(10..20);
        d.add(30..40);
        d.add(20..25);
        d.add(5..5);
        assert_eq!(d.done, vec![(10, 25), (30, 40)]);
        assert_eq!(d.rows(), 25);
        assert_eq!(d.todo(&(0..50)), vec![0..10, 25..30, 40..50]);
        assert_eq!(d.todo(&(12..35)), vec![25..30]);
        assert_eq!(d.within(&(12..35)).done, vec![(12, 25), (30, 35)]);
        assert!(d.todo(&(10..25)).is_empty());
    }

    #[test]
    fn old_counts_and_ranges_merge_into_one_position() {
        let share =
            |i: usize, n: usize| (100 * i as u64 / n as u64)..(100 * (i as u64 + 1) / n as u64);
        let merged = merge(
            &[
                Some("20".into()),
                None,
                Some(r#"{"done":[[70,80]]}"#.into()),
            ],
            share,
        )
        .unwrap()
        .unwrap();
        let d = Done::parse(&merged, &(0..0)).unwrap();
        assert_eq!(d.done, vec![(0, 20), (70, 80)]);
        assert_eq!(merge(&[None, None], share).unwrap(), None);
        assert!(Done::parse("{bad", &(0..1)).is_err());
    }
}
