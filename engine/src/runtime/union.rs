//! UNION ALL of several streams: batches pass through in arrival order; the watermark is the
//! minimum over the inputs that have not ended.

use datafusion::arrow::array::Int64Array;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::message::{Message, StreamBatch, WATERMARK_MAX, WATERMARK_MIN};

/// Merge `inputs` into `tx`.
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
    let mut wms = vec![WATERMARK_MIN; n];
    let mut ended = vec![false; n];
    let mut current = WATERMARK_MIN;
    while let Some((i, m)) = mrx.recv().await {
        let out = match m {
            Message::Batch(b) => Some(Message::Batch(clamp(b, i, &wms))),
            Message::Watermark(w) => {
                wms[i] = wms[i].max(w);
                let min = *wms.iter().min().unwrap_or(&WATERMARK_MAX);
                (min > current).then(|| {
                    current = min;
                    Message::Watermark(min)
                })
            }
            Message::Barrier(b) => Some(Message::Barrier(b)),
            Message::EndOfStream => {
                ended[i] = true;
                wms[i] = WATERMARK_MAX;
                None
            }
        };
        if let Some(m) = out {
            if tx.send(m).await.is_err() {
                return Ok(());
            }
        }
        if ended.iter().all(|e| *e) {
            let _ = tx.send(Message::EndOfStream).await;
            return Ok(());
        }
    }
    Ok(())
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
    }
}
