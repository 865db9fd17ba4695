//! The task of a lookup join: the join awaits its lookups (the table is asked over the
//! network), so it runs as its own async task rather than as a synchronous [`Operator`].
//! Batches are joined in order; watermarks, barriers, idleness and the end of the input pass
//! through after the batches before them, so a checkpoint barrier never overtakes a row. The
//! join holds no checkpointed state (its cache is only a cache).
//!
//! [`Operator`]: crate::operator::Operator

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::error::Result;
use crate::message::Message;
use crate::observe::op_metrics::OperatorMetrics;
use crate::operators::lookup_join::LookupJoin;
use crate::runtime::chain::Output;

/// Join the batches of `input` and pass them to `output` until the input ends.
pub async fn run_lookup_join(
    mut join: LookupJoin,
    mut input: mpsc::Receiver<Message>,
    mut output: Output,
    metrics: Arc<OperatorMetrics>,
) -> Result<()> {
    output.sent_by(metrics.clone());
    while let Some(m) = input.recv().await {
        let end = matches!(m, Message::EndOfStream);
        let out = match m {
            Message::Batch(b) => {
                OperatorMetrics::add(&metrics.rows_in, b.num_rows());
                let started = Instant::now();
                let joined = join.process(&b).await?;
                OperatorMetrics::add_time(&metrics.busy_ns, started);
                match joined {
                    Some(j) => {
                        OperatorMetrics::add(&metrics.rows_out, j.num_rows());
                        Message::Batch(j)
                    }
                    None => continue,
                }
            }
            Message::Watermark(w) => {
                metrics
                    .watermark
                    .store(w, std::sync::atomic::Ordering::Relaxed);
                Message::Watermark(w)
            }
            other => other,
        };
        if !output.send(out).await? || end {
            break;
        }
    }
    Ok(())
}
