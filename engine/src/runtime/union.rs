//! UNION ALL of several streams: batches pass through in arrival order; the watermark is the
//! minimum over the inputs that have not ended; checkpoint barriers are aligned (an input that
//! delivered barrier `n` is held back until every input has).

use datafusion::arrow::array::Int64Array;
use tokio::sync::mpsc;

use crate::checkpoint::aligner::{Aligner, Step};
use crate::error::Result;
use crate::message::{Message, StreamBatch, WATERMARK_MAX, WATERMARK_MIN};

/// Merge `inputs` into `tx`, aligning checkpoint barriers across them.
pub async fn run_union(
    inputs: Vec<mpsc::Receiver<Message>>,
    tx: mpsc::Sender<Message>,
) -> Result<()> {
    let n = inputs.len();
    let (mtx, mut mrx) = mpsc::channel::<(usize, Message)>(16);
    for (i, mut rx) in inputs.into_iter().enumerate() {
        let mtx = mtx.clone();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if mtx.send((i, m)).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(mtx);
    let mut u = Union {
        wms: vec![WATERMARK_MIN; n],
        ended: vec![false; n],
        current: WATERMARK_MIN,
        aligner: Aligner::new(n),
    };
    while let Some((i, m)) = mrx.recv().await {
        let mut next = Some((i, m));
        while let Some((i, m)) = next {
            let out = match u.aligner.on_message(i, m) {
                Step::Process(m) => u.process(i, m),
                Step::Held => None,
                Step::Aligned(b) => Some(Message::Barrier(b)),
            };
            if let Some(m) = out {
                if tx.send(m).await.is_err() {
                    return Ok(());
                }
            }
            if u.ended.iter().all(|e| *e) {
                let _ = tx.send(Message::EndOfStream).await;
                return Ok(());
            }
            next = u.aligner.released();
        }
    }
    Ok(())
}

struct Union {
    wms: Vec<i64>,
    ended: Vec<bool>,
    current: i64,
    aligner: Aligner,
}

impl Union {
    /// What one message from input `i` becomes downstream.
    fn process(&mut self, i: usize, m: Message) -> Option<Message> {
        match m {
            Message::Batch(b) => Some(Message::Batch(clamp(b, i, &self.wms))),
            Message::Watermark(w) => {
                self.wms[i] = self.wms[i].max(w);
                let min = *self.wms.iter().min().unwrap_or(&WATERMARK_MAX);
                (min > self.current).then(|| {
                    self.current = min;
                    Message::Watermark(min)
                })
            }
            Message::Barrier(b) => Some(Message::Barrier(b)),
            Message::EndOfStream => {
                self.ended[i] = true;
                self.wms[i] = WATERMARK_MAX;
                None
            }
        }
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
