//! UNION ALL of several streams: batches pass through in arrival order; the watermark is the
//! minimum over the inputs that have not ended (an idle input follows the others, see
//! [`Idleness`]); checkpoint barriers are aligned (an input that delivered barrier `n` is held
//! back until every input has).

use datafusion::arrow::array::Int64Array;
use tokio::sync::mpsc;

use crate::checkpoint::aligner::{Aligner, Step};
use crate::error::Result;
use crate::message::{Message, StreamBatch, WATERMARK_MAX, WATERMARK_MIN};
use crate::runtime::chain::Output;
use crate::runtime::idleness::Idleness;
use crate::runtime::ordered::EpochOrder;

/// Merge `inputs` into `tx`, aligning checkpoint barriers across them. An input that delivered
/// the barrier being aligned is not read until the others have: its bounded channel fills and
/// its producer waits, so alignment costs no memory here.
pub async fn run_union(
    inputs: Vec<mpsc::Receiver<Message>>,
    tx: mpsc::Sender<Message>,
) -> Result<()> {
    run_merge(inputs, Output::channel(tx), Merge::Union).await
}

/// How [`run_merge`] treats the rows of its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// UNION ALL of different streams: rows pass in arrival order, each row's watermark
    /// limited by the other inputs'.
    Union,
    /// The subtasks of one input, for an operator's subtask: rows pass in arrival order and
    /// keep their own watermarks (computed over the whole input by its source).
    Subtasks,
    /// The subtasks of one input, for a sink or a query: as `Subtasks`, but in watermark-epoch
    /// and subtask order ([`EpochOrder`]), so the output does not depend on scheduling.
    Ordered,
}

/// Merge channels into one: the minimum watermark, aligned barriers, one end; rows as `merge`
/// says.
pub async fn run_merge(
    mut inputs: Vec<mpsc::Receiver<Message>>,
    mut output: Output,
    merge: Merge,
) -> Result<()> {
    let n = inputs.len();
    let mut u = Union::new(n, merge);
    let mut closed = vec![false; n];
    let mut start = 0;
    loop {
        let readable: Vec<bool> = (0..n).map(|i| !closed[i] && u.aligner.accepts(i)).collect();
        let Some((i, m)) = next_message(&mut inputs, &readable, &mut start).await else {
            return Ok(()); // every input closed without ending (the job is stopping)
        };
        let Some(m) = m else {
            closed[i] = true;
            continue;
        };
        let mut next = Some((i, m));
        while let Some((i, m)) = next {
            let out = match u.aligner.on_message(i, m) {
                Step::Process(m) => u.process(i, m),
                Step::Held => vec![],
                Step::Aligned(b) => u.flushed(Message::Barrier(b)),
            };
            for m in out {
                if !output.send(m).await? {
                    return Ok(());
                }
            }
            if u.all_ended() {
                for m in u.flushed(Message::EndOfStream) {
                    output.send(m).await?;
                }
                return Ok(());
            }
            next = u.aligner.released();
        }
    }
}

/// The next message of a readable input, taking the inputs in turn from `start` so a busy one
/// does not starve the others: `(input, None)` when that input's channel closed, `None` when no
/// input is readable.
pub(crate) async fn next_message(
    inputs: &mut [mpsc::Receiver<Message>],
    readable: &[bool],
    start: &mut usize,
) -> Option<(usize, Option<Message>)> {
    let n = inputs.len();
    if !readable.iter().any(|r| *r) {
        return None;
    }
    std::future::poll_fn(|cx| {
        for k in 0..n {
            let i = (*start + k) % n;
            if !readable[i] {
                continue;
            }
            if let std::task::Poll::Ready(m) = inputs[i].poll_recv(cx) {
                *start = (i + 1) % n;
                return std::task::Poll::Ready(Some((i, m)));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// The merge of several channels into one, as decisions: what each message becomes.
pub(crate) struct Union {
    /// Limit each row's watermark by the other inputs' (a union of different streams).
    clamp: bool,
    /// Hold rows to give them in watermark-epoch order (a sink's merge of subtasks).
    order: Option<EpochOrder>,
    wms: Vec<i64>,
    ended: Vec<bool>,
    current: i64,
    aligner: Aligner,
    idleness: Idleness,
}

impl Union {
    /// A merge of `n` channels whose rows `merge` treats.
    pub(crate) fn new(n: usize, merge: Merge) -> Self {
        Self {
            clamp: merge == Merge::Union,
            order: (merge == Merge::Ordered).then(|| EpochOrder::new(n)),
            wms: vec![WATERMARK_MIN; n],
            ended: vec![false; n],
            current: WATERMARK_MIN,
            aligner: Aligner::new(n),
            idleness: Idleness::new(n),
        }
    }

    /// Whether every channel has ended.
    pub(crate) fn all_ended(&self) -> bool {
        self.ended.iter().all(|e| *e)
    }

    /// What one message from input `i` becomes downstream (barriers aligned already).
    pub(crate) fn process(&mut self, i: usize, m: Message) -> Vec<Message> {
        let given = self.idleness.on_message(i, m);
        given
            .into_iter()
            .flat_map(|(j, m)| self.given(j, m))
            .collect()
    }

    /// The rows held for ordering, then `m` (a barrier or the end).
    pub(crate) fn flushed(&mut self, m: Message) -> Vec<Message> {
        let mut out = self.order.as_mut().map(|o| o.flush()).unwrap_or_default();
        out.push(m);
        out
    }

    /// What one message given for input `i` (see [`Idleness`]) becomes downstream.
    fn given(&mut self, i: usize, m: Message) -> Vec<Message> {
        match m {
            Message::Batch(b) => match (&mut self.order, self.clamp) {
                (Some(o), _) => {
                    o.hold(i, b);
                    vec![]
                }
                (None, true) => vec![Message::Batch(clamp(b, i, &self.wms))],
                (None, false) => vec![Message::Batch(b)],
            },
            Message::Watermark(w) => {
                self.wms[i] = self.wms[i].max(w);
                if let Some(o) = &mut self.order {
                    o.close(i, w);
                }
                self.advanced()
            }
            Message::Barrier(b) => vec![Message::Barrier(b)],
            Message::Idle => vec![Message::Idle],
            Message::EndOfStream => {
                self.ended[i] = true;
                self.wms[i] = WATERMARK_MAX;
                if let Some(o) = &mut self.order {
                    o.close(i, WATERMARK_MAX);
                }
                self.advanced()
            }
        }
    }

    /// The merged watermark, when it advanced, after the rows it releases.
    fn advanced(&mut self) -> Vec<Message> {
        let min = *self.wms.iter().min().unwrap_or(&WATERMARK_MAX);
        if min <= self.current {
            return vec![];
        }
        self.current = min;
        let mut out = self
            .order
            .as_mut()
            .map(|o| o.release(min))
            .unwrap_or_default();
        if min != WATERMARK_MAX || !self.ended.iter().all(|e| *e) {
            out.push(Message::Watermark(min));
        }
        out
    }
}

/// A row's watermark after the union is at most the other inputs' watermarks.
fn clamp(b: StreamBatch, input: usize, wms: &[i64]) -> StreamBatch {
    let others = wms
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != input)
        .map(|(_, w)| *w)
        .min();
    let Some(limit) = others else { return b };
    let row_watermarks = b
        .row_watermarks
        .map(|w| Int64Array::from_iter_values(w.values().iter().map(|v| (*v).min(limit))));
    StreamBatch {
        batch: b.batch,
        row_watermarks,
        kinds: b.kinds,
        ingest_ns: b.ingest_ns,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;

    use super::*;
    use crate::message::Barrier;

    fn batch() -> Message {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let col = Arc::new(Int64Array::from(vec![1]));
        Message::Batch(StreamBatch::new(
            RecordBatch::try_new(schema, vec![col]).unwrap(),
        ))
    }

    #[tokio::test]
    async fn an_input_ahead_at_a_barrier_is_backpressured_not_buffered() {
        let (fast_tx, fast_rx) = mpsc::channel(4);
        let (slow_tx, slow_rx) = mpsc::channel(4);
        let (out_tx, mut out_rx) = mpsc::channel(1024);
        tokio::spawn(run_union(vec![fast_rx, slow_rx], out_tx));
        let barrier = Message::Barrier(Barrier { checkpoint_id: 1 });
        fast_tx.send(barrier.clone()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // The union no longer reads the fast input: its channel fills and its sender must wait.
        let mut sent = 0;
        while fast_tx.try_send(batch()).is_ok() {
            sent += 1;
            assert!(
                sent <= 4,
                "the union kept reading an input waiting at the barrier"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(
            out_rx.try_recv().is_err(),
            "nothing passes before alignment"
        );
        slow_tx.send(batch()).await.unwrap();
        slow_tx.send(barrier).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 2 + sent {
            got.push(out_rx.recv().await.unwrap());
        }
        assert!(
            matches!(got[0], Message::Batch(_)),
            "the slow input's row first"
        );
        assert!(
            matches!(got[1], Message::Barrier(_)),
            "then the aligned barrier"
        );
        assert!(got[2..].iter().all(|m| matches!(m, Message::Batch(_))));
    }
}
