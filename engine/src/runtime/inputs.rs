//! The inputs of an operator task, read as one sequence of `(input, message)`.
//!
//! One input is read as it is. Several (a join's two) are read in turn, with checkpoint
//! barriers aligned ([`Aligner`]): an input that delivered barrier `n` is not read again until
//! every input has, and the barrier is then given once. An input that ends gives the final
//! watermark (`WATERMARK_MAX`) in place of its end; the end of stream comes once every input
//! has ended. An idle input follows the others' watermark ([`Idleness`]).
//!
//! An input may arrive on several channels, one per subtask of the node before an exchange:
//! they are merged here, in the operator's task ([`Union`] with [`Merge::Subtasks`]: rows as
//! they come, the minimum watermark, one end), with barriers aligned over every channel of
//! every input.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use crate::checkpoint::aligner::{Aligner, Step};
use crate::message::{Message, WATERMARK_MAX};
use crate::runtime::idleness::Idleness;
use crate::runtime::union::{next_message, Merge, Union};

/// The channels an operator task reads.
pub struct Inputs {
    /// Every channel of every input.
    rxs: Vec<mpsc::Receiver<Message>>,
    /// Each channel's input, and its place among that input's channels.
    input_of: Vec<(usize, usize)>,
    /// The merge of each input that has several channels.
    merges: Vec<Option<Union>>,
    aligner: Aligner,
    closed: Vec<bool>,
    /// Per input.
    ended: Vec<bool>,
    start: usize,
    idleness: Idleness,
    /// Messages decided but not yet given.
    ready: VecDeque<(usize, Message)>,
}

impl Inputs {
    /// Read `rxs` (at least one), one channel per input.
    pub fn new(rxs: Vec<mpsc::Receiver<Message>>) -> Self {
        Self::merged(rxs.into_iter().map(|rx| vec![rx]).collect())
    }

    /// Read `inputs` (at least one), each on one or more channels.
    pub fn merged(inputs: Vec<Vec<mpsc::Receiver<Message>>>) -> Self {
        let n = inputs.len();
        let mut rxs = Vec::new();
        let mut input_of = Vec::new();
        let mut merges = Vec::with_capacity(n);
        for (i, channels) in inputs.into_iter().enumerate() {
            let k = channels.len();
            merges.push((k > 1).then(|| Union::new(k, Merge::Subtasks)));
            input_of.extend((0..k).map(|j| (i, j)));
            rxs.extend(channels);
        }
        let channels = rxs.len();
        Self {
            rxs,
            input_of,
            merges,
            aligner: Aligner::new(channels),
            closed: vec![false; channels],
            ended: vec![false; n],
            start: 0,
            idleness: Idleness::new(n),
            ready: VecDeque::new(),
        }
    }

    /// How many inputs there are.
    pub fn len(&self) -> usize {
        self.merges.len()
    }

    /// Whether there are none (never: an operator has at least one input).
    pub fn is_empty(&self) -> bool {
        self.merges.is_empty()
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

    /// Queue what a message of channel `c` gives the operator, after alignment and the
    /// merge of its input's channels.
    fn step(&mut self, c: usize, m: Message) {
        let (i, j) = self.input_of[c];
        let m = match self.aligner.on_message(c, m) {
            Step::Held => return,
            Step::Aligned(b) => Message::Barrier(b),
            Step::Process(m) => m,
        };
        let Some(merge) = self.merges[i].as_mut() else {
            return self.given(i, m);
        };
        if matches!(m, Message::Barrier(_)) {
            return self.given(i, m);
        }
        let mut out = merge.process(j, m);
        if merge.all_ended() {
            out.extend(merge.flushed(Message::EndOfStream));
        }
        for m in out {
            self.given(i, m);
        }
    }

    /// Queue what a message of input `i` (its channels merged) gives the operator.
    fn given(&mut self, i: usize, m: Message) {
        let m = match m {
            Message::EndOfStream if self.ended[i] => return,
            Message::EndOfStream => {
                self.ended[i] = true;
                if self.ended.iter().all(|e| *e) {
                    self.ready.push_back((i, Message::EndOfStream));
                    return;
                }
                Message::Watermark(WATERMARK_MAX)
            }
            m => m,
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

    #[tokio::test]
    async fn an_input_on_several_channels_is_merged_with_the_minimum_watermark() {
        let (a_tx, a_rx) = mpsc::channel(8);
        let (b_tx, b_rx) = mpsc::channel(8);
        let (c_tx, c_rx) = mpsc::channel(8);
        // Input 0 arrives from two subtasks (a, b), input 1 on one channel (c).
        let mut inputs = Inputs::merged(vec![vec![a_rx, b_rx], vec![c_rx]]);
        assert_eq!(inputs.len(), 2);
        a_tx.send(Message::Watermark(10)).await.unwrap();
        b_tx.send(Message::Watermark(4)).await.unwrap();
        assert!(matches!(
            inputs.next().await,
            Some((0, Message::Watermark(4)))
        ));
        b_tx.send(Message::Watermark(20)).await.unwrap();
        assert!(matches!(
            inputs.next().await,
            Some((0, Message::Watermark(10)))
        ));
        // A barrier is given once, after every channel of every input delivered it.
        let barrier = Message::Barrier(Barrier { checkpoint_id: 7 });
        for tx in [&a_tx, &b_tx] {
            tx.send(barrier.clone()).await.unwrap();
        }
        c_tx.send(Message::Watermark(1)).await.unwrap();
        assert!(matches!(
            inputs.next().await,
            Some((1, Message::Watermark(1)))
        ));
        c_tx.send(barrier).await.unwrap();
        assert!(matches!(
            inputs.next().await,
            Some((_, Message::Barrier(_)))
        ));
        // Input 0 ends when both its channels have.
        a_tx.send(Message::EndOfStream).await.unwrap();
        assert!(matches!(
            inputs.next().await,
            Some((0, Message::Watermark(20)))
        ));
        b_tx.send(Message::EndOfStream).await.unwrap();
        let ended = inputs.next().await.unwrap();
        assert!(
            matches!(ended, (0, Message::Watermark(WATERMARK_MAX))),
            "{ended:?}"
        );
        c_tx.send(Message::EndOfStream).await.unwrap();
        assert!(matches!(
            inputs.next().await,
            Some((1, Message::EndOfStream))
        ));
    }
}
