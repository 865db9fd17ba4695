//! The order in which a sink or a query sees the rows of several subtasks: by watermark epoch,
//! then by subtask. A batch that arrived on channel `i` is held until channel `i`'s next
//! watermark `w` and the merged watermark reach `w`; then the batches closed by watermarks up
//! to the merged one go out ordered by (closing watermark, channel, arrival). So the output
//! never depends on how the subtasks' threads were scheduled: what a window firing emits comes
//! out together, subtask by subtask. A barrier or the end flushes everything held (rows before
//! a barrier belong to its checkpoint). Pure code, tested without channels.

use std::collections::VecDeque;

use crate::message::{Message, StreamBatch};

/// Batches held per channel, each with the watermark that closed it (`None`: still open).
#[derive(Debug, Default)]
pub struct EpochOrder {
    held: Vec<VecDeque<(Option<i64>, StreamBatch)>>,
}

impl EpochOrder {
    /// Ordering for `channels` input channels.
    pub fn new(channels: usize) -> Self {
        Self {
            held: (0..channels).map(|_| VecDeque::new()).collect(),
        }
    }

    /// A batch arrived on channel `i`.
    pub fn hold(&mut self, i: usize, b: StreamBatch) {
        self.held[i].push_back((None, b));
    }

    /// Channel `i`'s watermark reached `w`: it closes the batches that came before it.
    pub fn close(&mut self, i: usize, w: i64) {
        for (closed, _) in self.held[i].iter_mut().rev() {
            if closed.is_some() {
                break;
            }
            *closed = Some(w);
        }
    }

    /// The batches closed at or below the merged watermark `merged`, in output order.
    pub fn release(&mut self, merged: i64) -> Vec<Message> {
        self.take(|closed| closed.is_some_and(|w| w <= merged))
    }

    /// Everything held, in output order (open batches last).
    pub fn flush(&mut self) -> Vec<Message> {
        self.take(|_| true)
    }

    fn take(&mut self, due: impl Fn(Option<i64>) -> bool) -> Vec<Message> {
        let mut out: Vec<(i64, usize, usize, StreamBatch)> = Vec::new();
        for (i, q) in self.held.iter_mut().enumerate() {
            let mut k = 0;
            while q.front().is_some_and(|(c, _)| due(*c)) {
                let (c, b) = q.pop_front().expect("front");
                out.push((c.unwrap_or(i64::MAX), i, k, b));
                k += 1;
            }
        }
        out.sort_by_key(|(w, i, k, _)| (*w, *i, *k));
        out.into_iter().map(|(.., b)| Message::Batch(b)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;

    use super::*;

    fn batch(v: i64) -> StreamBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![v]))]);
        StreamBatch::new(b.unwrap())
    }

    fn values(ms: &[Message]) -> Vec<i64> {
        ms.iter()
            .map(|m| match m {
                Message::Batch(b) => b
                    .batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .value(0),
                _ => -1,
            })
            .collect()
    }

    #[test]
    fn batches_go_out_by_epoch_then_channel_whatever_the_arrival_order() {
        let mut o = EpochOrder::new(2);
        // Channel 1 is faster: its epoch-10 rows and epoch-20 rows arrive first.
        o.hold(1, batch(11));
        o.close(1, 10);
        o.hold(1, batch(21));
        o.close(1, 20);
        assert!(
            o.release(5).is_empty(),
            "nothing is due before watermark 10"
        );
        o.hold(0, batch(10));
        o.close(0, 10);
        assert_eq!(values(&o.release(10)), vec![10, 11]);
        o.hold(0, batch(20));
        o.close(0, 20);
        o.hold(0, batch(30));
        assert_eq!(values(&o.release(20)), vec![20, 21]);
        // An open batch waits for its watermark; a barrier or the end takes it anyway.
        assert_eq!(values(&o.flush()), vec![30]);
    }
}
