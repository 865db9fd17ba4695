//! Idle inputs of a task with several inputs (a join's two, a union's many).
//!
//! A source whose partitions have all been quiet for the table's
//! `'scan.watermark.idle-timeout'` sends [`Message::Idle`]; single-input operators pass it on.
//! An idle input must not hold the task's watermark back (`docs/semantics.md`), so while input
//! `i` is idle its watermark follows the smallest watermark of the inputs that are not idle:
//! each advance of theirs is given for input `i` too. Its next batch or watermark makes it
//! active again; as its watermark followed the others, its rows at or below it are late (sent
//! to the late-data destination, not lost). When every input is idle or ended the task itself
//! is idle and passes [`Message::Idle`] on.
//!
//! Decisions only: [`Idleness::on_message`] returns what the operator is given, so the rules
//! are tested without channels.

use crate::message::{Message, WATERMARK_MAX, WATERMARK_MIN};

/// The watermark and idleness of each input.
#[derive(Debug)]
pub struct Idleness {
    wms: Vec<i64>,
    idle: Vec<bool>,
    ended: Vec<bool>,
}

impl Idleness {
    /// `n` active inputs, no watermark yet.
    pub fn new(n: usize) -> Self {
        Self {
            wms: vec![WATERMARK_MIN; n],
            idle: vec![false; n],
            ended: vec![false; n],
        }
    }

    /// What a message of input `i` gives the operator, in order: the message itself (not an
    /// `Idle`, unless every input is now idle or ended), then the watermarks idle inputs follow.
    pub fn on_message(&mut self, i: usize, m: Message) -> Vec<(usize, Message)> {
        match m {
            Message::Idle => self.went_idle(i),
            Message::Watermark(w) => {
                self.idle[i] = false;
                self.ended[i] |= w == WATERMARK_MAX;
                self.wms[i] = self.wms[i].max(w);
                let mut out = vec![(i, Message::Watermark(w))];
                out.extend(self.follow());
                out
            }
            Message::Batch(_) => {
                self.idle[i] = false;
                vec![(i, m)]
            }
            Message::EndOfStream => {
                self.ended[i] = true;
                vec![(i, m)]
            }
            Message::Barrier(_) => vec![(i, m)],
        }
    }

    /// Input `i` went idle: it follows the others' watermark now, or, with every input idle or
    /// ended, the task is idle.
    fn went_idle(&mut self, i: usize) -> Vec<(usize, Message)> {
        self.idle[i] = true;
        if (0..self.wms.len()).all(|j| self.idle[j] || self.ended[j]) {
            // Every input is idle: the watermark moves to the highest of theirs (Flink's rule),
            // so what the last active input passed fires before the task goes quiet.
            let mut out = self.raise_idle_to_highest();
            out.push((i, Message::Idle));
            return out;
        }
        self.follow()
    }

    /// The watermarks the idle inputs take: the smallest of the active inputs' (not the final
    /// one of inputs that ended: an idle input still has rows to come).
    fn raise_idle_to_highest(&mut self) -> Vec<(usize, Message)> {
        let highest = (0..self.wms.len())
            .filter(|j| !self.ended[*j])
            .map(|j| self.wms[j])
            .max()
            .unwrap_or(WATERMARK_MIN);
        self.raise_idle_to(highest)
    }

    fn follow(&mut self) -> Vec<(usize, Message)> {
        let active = (0..self.wms.len())
            .filter(|j| !self.idle[*j] && !self.ended[*j])
            .map(|j| self.wms[j])
            .min();
        match active {
            Some(target) => self.raise_idle_to(target),
            None => vec![],
        }
    }

    /// Move every idle input below `target` up to it.
    fn raise_idle_to(&mut self, target: i64) -> Vec<(usize, Message)> {
        let mut out = Vec::new();
        for j in 0..self.wms.len() {
            if self.idle[j] && self.wms[j] < target {
                self.wms[j] = target;
                out.push((j, Message::Watermark(target)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wms(out: &[(usize, Message)]) -> Vec<(usize, i64)> {
        out.iter()
            .filter_map(|(i, m)| match m {
                Message::Watermark(w) => Some((*i, *w)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_idle_input_follows_the_other_inputs_watermark_until_it_speaks_again() {
        let mut s = Idleness::new(2);
        assert_eq!(wms(&s.on_message(1, Message::Watermark(5))), vec![(1, 5)]);
        assert_eq!(wms(&s.on_message(0, Message::Watermark(10))), vec![(0, 10)]);
        // Input 1 goes idle: it takes input 0's watermark, then follows it.
        assert_eq!(wms(&s.on_message(1, Message::Idle)), vec![(1, 10)]);
        let out = s.on_message(0, Message::Watermark(20));
        assert_eq!(wms(&out), vec![(0, 20), (1, 20)]);
        // It speaks again: no longer follows.
        assert_eq!(wms(&s.on_message(1, Message::Watermark(21))), vec![(1, 21)]);
        assert_eq!(wms(&s.on_message(0, Message::Watermark(30))), vec![(0, 30)]);
    }

    #[test]
    fn every_input_idle_or_ended_makes_the_task_idle() {
        let mut s = Idleness::new(2);
        let out = s.on_message(0, Message::Idle);
        assert!(out.is_empty(), "input 1 is active: {out:?}");
        let out = s.on_message(1, Message::Idle);
        assert!(matches!(out.as_slice(), [(1, Message::Idle)]), "{out:?}");
        // An ended input's final watermark is not followed, and counts as idle.
        let mut s = Idleness::new(2);
        s.on_message(0, Message::Watermark(WATERMARK_MAX));
        let out = s.on_message(1, Message::Idle);
        assert!(matches!(out.as_slice(), [(1, Message::Idle)]), "{out:?}");
    }
}
