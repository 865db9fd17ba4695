//! The operator contract: one required method, defaulted hooks.
//!
//! An operator is a synchronous state machine. Its task feeds it messages in order and sends what
//! it pushes into `out` downstream, so operators never deal with channels, backpressure or
//! cancellation themselves.

use crate::error::Result;
use crate::message::{Message, StreamBatch};
use crate::state::{SharedState, StateBackend};

/// A streaming operator: turns the messages of its input into messages for its output.
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

    /// A batch of input `input` of a two-input operator (a join: 0 is the left input, 1 the
    /// right). By default inputs are not told apart.
    fn process_input(
        &mut self,
        _input: usize,
        batch: StreamBatch,
        out: &mut Vec<Message>,
    ) -> Result<()> {
        self.process_batch(batch, out)
    }

    /// Input `input` of a two-input operator advanced to `watermark`. The task calls it with
    /// each input's own watermark; the operator decides its output watermark. By default this
    /// is [`Operator::on_watermark`].
    fn on_input_watermark(
        &mut self,
        _input: usize,
        watermark: i64,
        out: &mut Vec<Message>,
    ) -> Result<()> {
        self.on_watermark(watermark, out)
    }

    /// How much state the operator holds now (for metrics; read at most twice a second, so it
    /// may walk the state).
    fn state_size(&self) -> crate::observe::op_metrics::StateSize {
        crate::observe::op_metrics::StateSize::default()
    }

    /// What the operator counted since it started: late rows dropped or accepted, expired keys
    /// (for metrics; read after each message). Nothing by default.
    fn counts(&self) -> crate::observe::op_metrics::EventCounts {
        crate::observe::op_metrics::EventCounts::default()
    }

    /// The rows the operator dropped as late, for the job's late-data destination (see
    /// [`crate::late`]); `None` for an operator that never drops late rows.
    fn late_rows(&mut self) -> Option<&mut crate::late::LateRows> {
        None
    }

    /// Whether the operator keeps state across batches (and so takes part in checkpoints).
    fn is_stateful(&self) -> bool {
        false
    }

    /// The operator's state backend, which it may also use while running (to keep state
    /// larger than `memory_limit` bytes out of memory). Called before [`Operator::restore`].
    fn attach_state(&mut self, _state: SharedState, _memory_limit: usize) -> Result<()> {
        Ok(())
    }

    /// A checkpoint barrier is passing: bring `state` up to date with everything a restart
    /// needs (what changed since the last snapshot is enough; the backend keeps the rest).
    fn snapshot(&mut self, _state: &mut dyn StateBackend) -> Result<()> {
        Ok(())
    }

    /// How the operator's state divides by key, so that a checkpoint taken at one parallelism
    /// restores at another (see [`crate::state::rescale`]); `None` (the default): it restores
    /// only at the checkpoint's parallelism.
    fn state_shape(&self) -> Option<crate::state::rescale::StateShape> {
        None
    }

    /// Load the state a previous run's [`Operator::snapshot`] wrote (before any message).
    fn restore(&mut self, _state: &dyn StateBackend) -> Result<()> {
        Ok(())
    }
}
