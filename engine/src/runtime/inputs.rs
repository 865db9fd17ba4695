//! The inputs of an operator task, read as one sequence of `(input, message)`.
//!
//! One input is read as it is. Several (a join's two) are read in turn, with checkpoint
//! barriers aligned ([`Aligner`]): an input that delivered barrier `n` is not read again until
//! every input has, and the barrier is then given once. An input that ends gives the final
//! watermark (`WATERMARK_MAX`) in place of its end; the end of stream comes once every input
//! has ended. An idle input follows the others' watermark ([`Idleness`]).

use std::collections::VecDeque;

use tokio::sync::mpsc;

use crate::checkpoint::aligner::{Aligner, Step};
use crate::message::{Message, WATERMARK_MAX};
use crate::runtime::idleness::Idleness;
use crate::runtime::union::next_message;

/// The channels an operator task reads.
pub struct Inputs {
    rxs: Vec<mpsc::Receiver<Message>>,
    aligner: Aligner,
    closed: Vec<bool>,
    ended: Vec<bool>,
    start: usize,
    idleness: Idleness,
    /// Messages decided but not yet given.
    ready: VecDeque<(usize, Message)>,
}

impl Inputs {
    /// Read `rxs` (at least one).
    pub fn new(rxs: Vec<mpsc::Receiver<Message>>) -> Self {
        let n = rxs.len();
        Self {
            rxs,
            aligner: Aligner::new(n),
            closed: vec![false; n],
            ended: vec![false; n],
            start: 0,
            idleness: Idleness::new(n),
            ready: VecDeque::new(),
        }
    }

    /// How many inputs there are.
    pub fn len(&self) -> usize {
        self.rxs.len()
    }

    /// Whether there are none (never: an operator has at least one input).
    pub fn is_empty(&self) -> bool {
        self.rxs.is_empty()
    }

    /// The next message and the input it belongs to; `None` once the inputs are closed
    /// (the job is stopping) or the end of stream was given.
    pub async fn next(&mut self) -> Option<(usize, Message)> {
        if self.rxs.len() == 1 {
            return self.rxs[0].recv().await.map(|m| (0, m));
        }
        loop {
            if let Some(out) = self.ready.pop_front() {
                return Some(out);
            }
            if let Some((i, m)) = self.aligner.released() {
                self.step(i, m);
                continue;
            }
            let n = self.rxs.len();
            let readable: Vec<bool> = (0..n)
                .map(|i| !self.closed[i] && self.aligner.accepts(i))
                .collect();
            let (i, m) = next_message(&mut self.rxs, &readable, &mut self.start).await?;
            match m {
                None => self.closed[i] = true,
                Some(m) => self.step(i, m),
            }
        }
    }

    /// Queue what a message of input `i` gives the operator, after alignment.
    fn step(&mut self, i: usize, m: Message) {
        let m = match self.aligner.on_message(i, m) {
            Step::Held => return,
            Step::Aligned(b) => Message::Barrier(b),
            Step::Process(Message::EndOfStream) => {
                self.ended[i] = true;
                if self.ended.iter().all(|e| *e) {
                    self.ready.push_back((i, Message::EndOfStream));
                    return;
                }
                Message::Watermark(WATERMARK_MAX)
            }
            Step::Process(m) => m,
        };
        self.ready.extend(self.idleness.on_message(i, m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Barrier;

    #[tokio::test]
    async fn two_inputs_give_aligned_barriers_and_one_end() {
        let (a_tx, a_rx) = mpsc::channel(8);
        let (b_tx, b_rx) = mpsc::channel(8);
        let mut inputs = Inputs::new(vec![a_rx, b_rx]);
        let barrier = Message::Barrier(Barrier { checkpoint_id: 1 });
        a_tx.send(barrier.clone()).await.unwrap();
        a_tx.send(Message::Watermark(5)).await.unwrap();
        b_tx.send(Message::Watermark(3)).await.unwrap();
        let first = inputs.next().await.unwrap();
        assert!(matches!(first, (1, Message::Watermark(3))), "{first:?}");
        b_tx.send(barrier).await.unwrap();
        assert!(matches!(
            inputs.next().await,
            Some((_, Message::Barrier(_)))
        ));
        assert!(matches!(
            inputs.next().await,
            Some((0, Message::Watermark(5)))
        ));
        a_tx.send(Message::EndOfStream).await.unwrap();
        let ended = inputs.next().await.unwrap();
        assert!(matches!(ended, (0, Message::Watermark(WATERMARK_MAX))));
        b_tx.send(Message::EndOfStream).await.unwrap();
        assert!(matches!(
            inputs.next().await,
            Some((1, Message::EndOfStream))
        ));
    }
}
