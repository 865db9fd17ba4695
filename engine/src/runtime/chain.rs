//! Operator chaining: where a task's messages go.
//!
//! A stateless operator (filter, projection, window assignment) whose input comes forward
//! from subtasks of its own parallelism does not get a task of its own: it runs inside its
//! input's task, as Flink chains operators. The producing task hands each message to its
//! [`Output`], which passes it through the chained operators ([`Link`]s) and then either into a
//! channel or to the exchange's [`Router`], which deals it out to the next operator's subtasks.
//! A batch then goes from decoding through filtering, projection, window assignment and the
//! local aggregation step while it is still in the core's cache, with no channel or task
//! switch between them. Each chained operator keeps its own metrics (rows, busy time,
//! watermark, late rows) and its late-data output, so EXPLAIN ANALYZE and the metrics read as
//! before.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::error::Result;
use crate::message::Message;
use crate::observe::op_metrics::OperatorMetrics;
use crate::operator::Operator;
use crate::runtime::exchange::Router;
use crate::runtime::task::{feed, send_late, OperatorTask};

/// One chained operator and its task's counters.
pub struct Link {
    op: Box<dyn Operator>,
    task: OperatorTask,
    /// The latest ingestion time among its input batches, stamped on its outputs.
    ingest_ns: i64,
}

impl Link {
    /// Chain `op` (stateless, one input), counting into `task`.
    pub fn new(op: Box<dyn Operator>, task: OperatorTask) -> Self {
        Self {
            op,
            task,
            ingest_ns: 0,
        }
    }

    /// Pass `input` through the operator into `out`. `false` once its late-data sink is gone.
    async fn pass(&mut self, input: &mut Vec<Message>, out: &mut Vec<Message>) -> Result<bool> {
        let metrics = self.task.metrics.clone();
        for m in input.drain(..) {
            let marker = matches!(m, Message::Barrier(_) | Message::EndOfStream).then(|| m.clone());
            if let Message::Batch(b) = &m {
                self.ingest_ns = self.ingest_ns.max(b.ingest_ns);
            }
            let start = out.len();
            let started = Instant::now();
            // Stateless: a barrier has nothing to snapshot and passes on.
            feed(&mut *self.op, &metrics, 1, 0, m, out)?;
            metrics.set_counts(self.op.counts(), &self.task.job);
            OperatorMetrics::add_time(&metrics.busy_ns, started);
            for m in &mut out[start..] {
                if let Message::Batch(b) = m {
                    OperatorMetrics::add(&metrics.rows_out, b.num_rows());
                    if b.ingest_ns == 0 {
                        b.ingest_ns = self.ingest_ns;
                    }
                }
            }
            if !send_late_of(&mut *self.op, &self.task, marker).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Send the late rows the operator dropped (and the marker after them) to its late-data
/// output, when it has one. `false` once that output is gone.
async fn send_late_of(
    op: &mut dyn Operator,
    task: &OperatorTask,
    marker: Option<Message>,
) -> Result<bool> {
    match &task.late {
        Some(late) => send_late(op, late, marker).await,
        None => Ok(true),
    }
}

/// Where the messages go after the chain.
enum Target {
    /// One channel (a forward exchange, a merge, a sink).
    Channel(mpsc::Sender<Message>),
    /// The next operator's subtasks, through an exchange router.
    Routed(Router, Vec<mpsc::Sender<Message>>),
}

/// A task's output: the operators chained after it, then a channel or a router.
pub struct Output {
    links: Vec<Link>,
    target: Target,
    /// The counters that time waiting on a full channel: the producer's (the head of the
    /// chain, which is what waits, as Flink reports a chain's backpressure at its task), or
    /// the last chained operator's until the producer names itself.
    sender: Option<Arc<OperatorMetrics>>,
    /// Scratch buffers the messages move through, kept between messages.
    bufs: [Vec<Message>; 2],
}

impl Output {
    /// Straight into `tx`.
    pub fn channel(tx: mpsc::Sender<Message>) -> Self {
        Self::to(Target::Channel(tx))
    }

    /// Dealt out by `router` to `txs`, one per subtask of the next operator.
    pub fn routed(router: Router, txs: Vec<mpsc::Sender<Message>>) -> Self {
        Self::to(Target::Routed(router, txs))
    }

    fn to(target: Target) -> Self {
        Self {
            links: Vec::new(),
            target,
            sender: None,
            bufs: [Vec::new(), Vec::new()],
        }
    }

    /// Run `link` before everything already chained (chains are built from the consumer back
    /// towards the producer).
    pub fn chain_before(&mut self, link: Link) {
        if self.links.is_empty() {
            self.sender = Some(link.task.metrics.clone());
        }
        self.links.insert(0, link);
    }

    /// Time waiting on a full channel against `metrics`, the producer's.
    pub fn sent_by(&mut self, metrics: Arc<OperatorMetrics>) {
        self.sender = Some(metrics);
    }

    /// Pass `m` through the chain and on. `Ok(false)` once nothing downstream listens (the job
    /// is stopping); an error of a chained operator fails the producer's task.
    pub async fn send(&mut self, m: Message) -> Result<bool> {
        if self.links.is_empty() {
            return self.deliver(m).await;
        }
        let [mut input, mut out] = std::mem::take(&mut self.bufs);
        input.push(m);
        let mut open = true;
        for link in &mut self.links {
            open &= link.pass(&mut input, &mut out).await?;
            std::mem::swap(&mut input, &mut out);
        }
        for m in input.drain(..) {
            open &= self.deliver(m).await?;
        }
        self.bufs = [input, out];
        Ok(open)
    }

    /// Send `m` to the target. `false` once nothing there listens.
    async fn deliver(&mut self, m: Message) -> Result<bool> {
        Ok(match &mut self.target {
            Target::Channel(tx) => match &self.sender {
                Some(metrics) => metrics.send(tx, m).await.is_ok(),
                None => tx.send(m).await.is_ok(),
            },
            Target::Routed(router, txs) => route(router, txs, m).await?,
        })
    }
}

/// Deal `m` out: a batch's rows by the route, anything else to every subtask. `false` once
/// every subtask has gone (a subtask that has gone just stops receiving).
async fn route(router: &mut Router, txs: &[mpsc::Sender<Message>], m: Message) -> Result<bool> {
    match m {
        Message::Batch(b) if b.num_rows() > 0 => {
            for (to, piece) in router.split(b)? {
                let _ = txs[to].send(Message::Batch(piece)).await;
            }
            Ok(true)
        }
        Message::Batch(_) => Ok(true),
        other => {
            for (to, piece) in router.due_before(&other)? {
                let _ = txs[to].send(Message::Batch(piece)).await;
            }
            let mut open = false;
            for tx in txs {
                open |= tx.send(other.clone()).await.is_ok();
            }
            Ok(open)
        }
    }
}
