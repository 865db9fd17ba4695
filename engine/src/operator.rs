//! The operator contract: one required method, defaulted hooks.
//!
//! An operator is a synchronous state machine. Its task feeds it messages in order and sends what
//! it pushes into `out` downstream, so operators never deal with channels, backpressure or
//! cancellation themselves.

use crate::error::Result;
use crate::message::{Message, StreamBatch};

pub trait Operator: Send {
    /// A short name for logs and EXPLAIN ANALYZE.
    fn name(&self) -> &'static str;

    /// Process one batch of rows.
    fn process_batch(&mut self, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()>;

    /// Event time advanced to `watermark` (ns). By default the watermark is forwarded.
    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<Message>) -> Result<()> {
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    /// The input ended (after its final watermark). Nothing to do by default.
    fn on_end(&mut self, _out: &mut Vec<Message>) -> Result<()> {
        Ok(())
    }
}
