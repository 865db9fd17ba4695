//! Barrier alignment for operators with several inputs (UNION ALL).
//!
//! Once barrier `n` arrives on one input, that input's later messages belong to the next
//! checkpoint and must not reach the operator until barrier `n` has arrived on every other
//! input; they are held back here. When the last input delivers the barrier the checkpoint is
//! aligned: the operator snapshots, forwards the barrier, then replays what was held. Inputs that
//! have ended count as aligned. The decisions are pure so they can be tested without channels.
//!
//! A caller that can choose which input to read (the union task) does not read an input that
//! [`Aligner::accepts`] refuses: its messages then wait in its bounded channel and its producer
//! blocks (backpressure), so nothing is held in memory here.

use std::collections::VecDeque;

use crate::message::{Barrier, Message};

/// What the caller does with a message that arrived on an input.
#[derive(Debug)]
pub enum Step {
    /// Process it now.
    Process(Message),
    /// Held back (its input is past the barrier being aligned).
    Held,
    /// Every input delivered this barrier: snapshot, forward it, then drain [`Aligner::released`].
    Aligned(Barrier),
}

/// Alignment state of one multi-input operator.
#[derive(Debug)]
pub struct Aligner {
    /// Per input: has it delivered the barrier being aligned?
    arrived: Vec<bool>,
    ended: Vec<bool>,
    current: Option<Barrier>,
    held: Vec<VecDeque<Message>>,
    released: VecDeque<(usize, Message)>,
}

impl Aligner {
    /// Alignment state for an operator with `inputs` inputs, none aligning yet.
    pub fn new(inputs: usize) -> Self {
        Self {
            arrived: vec![false; inputs],
            ended: vec![false; inputs],
            current: None,
            held: (0..inputs).map(|_| VecDeque::new()).collect(),
            released: VecDeque::new(),
        }
    }

    /// Whether a message from `input` would be processed now (false while `input` waits at
    /// the barrier being aligned: leave it unread).
    pub fn accepts(&self, input: usize) -> bool {
        self.current.is_none() || !self.arrived[input]
    }

    /// Messages held back so far (zero for a caller that reads only accepted inputs).
    pub fn held_len(&self) -> usize {
        self.held.iter().map(VecDeque::len).sum()
    }

    /// Decide what happens to `m`, which arrived on `input`.
    pub fn on_message(&mut self, input: usize, m: Message) -> Step {
        if self.current.is_some() && self.arrived[input] {
            self.held[input].push_back(m);
            return Step::Held;
        }
        match m {
            Message::Barrier(b) => self.on_barrier(input, b),
            Message::EndOfStream => {
                self.ended[input] = true;
                // An ended input cannot deliver the barrier: it may complete the alignment.
                match self.current {
                    Some(b) if self.complete() => {
                        self.release();
                        self.pending_end(input);
                        Step::Aligned(b)
                    }
                    _ => Step::Process(Message::EndOfStream),
                }
            }
            other => Step::Process(other),
        }
    }

    fn pending_end(&mut self, input: usize) {
        self.released.push_front((input, Message::EndOfStream));
    }

    fn on_barrier(&mut self, input: usize, b: Barrier) -> Step {
        self.current = Some(b);
        self.arrived[input] = true;
        if self.complete() {
            self.release();
            Step::Aligned(b)
        } else {
            Step::Held
        }
    }

    fn complete(&self) -> bool {
        self.arrived.iter().zip(&self.ended).all(|(a, e)| *a || *e)
    }

    fn release(&mut self) {
        self.current = None;
        self.arrived.iter_mut().for_each(|a| *a = false);
        for (i, q) in self.held.iter_mut().enumerate() {
            self.released.extend(q.drain(..).map(|m| (i, m)));
        }
    }

    /// Messages held during the last alignment, to be fed back through [`Aligner::on_message`]
    /// in order (they may contain the next barrier).
    pub fn released(&mut self) -> Option<(usize, Message)> {
        self.released.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: u64) -> Message {
        Message::Barrier(Barrier { checkpoint_id: n })
    }

    fn is_wm(s: &Step, w: i64) -> bool {
        matches!(s, Step::Process(Message::Watermark(x)) if *x == w)
    }

    #[test]
    fn holds_the_fast_input_until_every_input_has_the_barrier() {
        let mut a = Aligner::new(3);
        assert!(is_wm(&a.on_message(0, Message::Watermark(1)), 1));
        assert!(matches!(a.on_message(0, b(1)), Step::Held));
        assert!(matches!(a.on_message(0, Message::Watermark(5)), Step::Held));
        assert!(is_wm(&a.on_message(1, Message::Watermark(2)), 2));
        assert!(matches!(a.on_message(1, b(1)), Step::Held));
        assert!(is_wm(&a.on_message(2, Message::Watermark(3)), 3));
        assert!(matches!(
            a.on_message(2, b(1)),
            Step::Aligned(Barrier { checkpoint_id: 1 })
        ));
        let (i, m) = a.released().unwrap();
        assert_eq!(i, 0);
        assert!(matches!(m, Message::Watermark(5)));
        assert!(a.released().is_none());
    }

    #[test]
    fn an_input_at_the_barrier_is_not_accepted_until_alignment() {
        let mut a = Aligner::new(2);
        assert!(a.accepts(0) && a.accepts(1));
        assert!(matches!(a.on_message(0, b(1)), Step::Held));
        assert!(!a.accepts(0), "input 0 waits unread");
        assert!(a.accepts(1));
        assert!(matches!(a.on_message(1, b(1)), Step::Aligned(_)));
        assert!(a.accepts(0) && a.accepts(1));
        assert_eq!(a.held_len(), 0);
    }

    #[test]
    fn held_messages_may_carry_the_next_barrier() {
        let mut a = Aligner::new(2);
        a.on_message(0, b(1));
        a.on_message(0, b(2));
        assert!(matches!(
            a.on_message(1, b(1)),
            Step::Aligned(Barrier { checkpoint_id: 1 })
        ));
        let (i, m) = a.released().unwrap();
        assert!(
            matches!(a.on_message(i, m), Step::Held),
            "barrier 2 now waits for input 1"
        );
        assert!(matches!(
            a.on_message(1, b(2)),
            Step::Aligned(Barrier { checkpoint_id: 2 })
        ));
    }

    #[test]
    fn an_ended_input_does_not_block_alignment() {
        let mut a = Aligner::new(2);
        assert!(matches!(
            a.on_message(1, Message::EndOfStream),
            Step::Process(Message::EndOfStream)
        ));
        assert!(matches!(
            a.on_message(0, b(7)),
            Step::Aligned(Barrier { checkpoint_id: 7 })
        ));
        // The other input ends while the first waits at the barrier.
        let mut a = Aligner::new(2);
        assert!(matches!(a.on_message(0, b(3)), Step::Held));
        assert!(matches!(
            a.on_message(1, Message::EndOfStream),
            Step::Aligned(Barrier { checkpoint_id: 3 })
        ));
        assert!(matches!(a.released(), Some((1, Message::EndOfStream))));
    }
}
