//! The `mqtt` source: a persistent MQTT 5 session (client id `weir-<table>` by default) that
//! subscribes to the table's topic filters and acknowledges each message only once the
//! checkpoint holding its effects has completed ([`super::acks`]); a crash before that makes
//! the broker send it again to the restarted job: at-least-once end to end. Without
//! checkpoints a message is acknowledged when it is handed to the engine.
//!
//! The client's event loop runs in a task of its own ([`super::client`]); `next` drains what
//! it received into batches of up to the context's batch size, waiting at most [`LINGER`]
//! after the first message, and is `Idle` when nothing came.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ClientError};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::task::JoinHandle;
use weir_engine::connector::{Source, SourceContext, SourceEvent, SourceFactory};
use weir_engine::observe::dead_letter::OnError;
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::acks::{AckQueue, Position};
use super::client::{connect, spawn_source_loop, Inbound};
use super::decode::{Line, Poll};
use super::options::{on_error, payload_format, MqttOptions, PayloadFormat, NAME};
use crate::filesystem::decode::SegmentDecoder;
use crate::timestamps::TimePolicy;

/// How long a poll gathers messages for one batch after the first arrives.
const LINGER: Duration = Duration::from_millis(20);

/// How long `next` waits for a first message before it reports `Idle`.
const WAIT: Duration = Duration::from_millis(100);

/// The metadata keys the source provides.
pub(crate) const KEYS: &[&str] = &["topic", "qos", "retain", "message_id"];

/// Creates `mqtt` sources.
#[derive(Debug, Default, Clone, Copy)]
pub struct MqttSourceFactory;

impl SourceFactory for MqttSourceFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn metadata_keys(&self) -> &'static [&'static str] {
        KEYS
    }

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        MqttOptions::parse(table, "source")?;
        payload_format(table)?;
        on_error(table)?;
        TimePolicy::parse(table, &table.physical_schema())?;
        Ok(())
    }

    fn is_bounded(&self, _table: &TableDef) -> bool {
        false
    }

    fn create(&self, ctx: SourceContext) -> Result<Box<dyn Source>> {
        Ok(Box::new(MqttSource::new(ctx)?))
    }
}

/// The client, the channel its event-loop task fills, and the task (stopped on drop).
struct Link {
    client: AsyncClient,
    rx: mpsc::Receiver<Inbound>,
    task: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) struct MqttSource {
    pub(super) ctx: SourceContext,
    options: MqttOptions,
    pub(super) format: PayloadFormat,
    pub(super) on_error: OnError,
    pub(super) dead_letter_topic: Option<String>,
    pub(super) decoder: SegmentDecoder,
    pub(super) time_policy: Option<TimePolicy>,
    link: Option<Link>,
    acks: AckQueue<Publish>,
    /// The last poll's messages (see [`Poll`]).
    pub(super) last: Poll,
}

pub(super) fn mqtt_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::connector(NAME, e.to_string())
}

impl MqttSource {
    fn new(ctx: SourceContext) -> Result<Self> {
        let options = MqttOptions::parse(&ctx.table, "source").map_err(mqtt_err)?;
        let format = payload_format(&ctx.table).map_err(mqtt_err)?;
        let on_error = on_error(&ctx.table).map_err(mqtt_err)?;
        let time_policy = TimePolicy::parse(&ctx.table, &ctx.schema).map_err(mqtt_err)?;
        let decode_schema = time_policy
            .as_ref()
            .map_or(ctx.schema.clone(), |p| p.decode_schema(&ctx.schema));
        let decoder = SegmentDecoder::new(decode_schema, format.format, format.csv, ctx.batch_size)
            .map_err(mqtt_err)?;
        let dead_letter_topic = match on_error {
            OnError::DeadLetter => ctx.table.option("dead-letter.topic").map(str::to_string),
            _ => None,
        };
        Ok(MqttSource {
            ctx,
            options,
            format,
            on_error,
            dead_letter_topic,
            decoder,
            time_policy,
            link: None,
            acks: AckQueue::new(run_id()),
            last: Poll::default(),
        })
    }

    /// Start the client and its event-loop task (it connects, and reconnects, by itself).
    fn start(&self) -> Link {
        let (client, eventloop) = connect(&self.options, true);
        let capacity = self.ctx.batch_size.clamp(64, 4096) * 4;
        let (tx, rx) = mpsc::channel(capacity);
        let task = spawn_source_loop(eventloop, client.clone(), &self.options, tx);
        Link { client, rx, task }
    }
}

/// A number telling this run's checkpoint positions from an earlier run's.
fn run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id())
}

impl Source for MqttSource {
    fn next(&mut self) -> BoxFuture<'_, Result<SourceEvent>> {
        Box::pin(self.next_event())
    }

    /// The position after every message handed so far (`<run>:<sequence>`). A restart does not
    /// resume from it: the broker sends again what was not acknowledged.
    fn snapshot(&mut self) -> Result<Option<String>> {
        Ok(Some(self.acks.position().encode()))
    }

    /// Acknowledge, in order, every message up to `position` (those still waiting for room in
    /// the client's queue go with the next poll).
    fn checkpoint_complete(&mut self, position: &str) -> Result<()> {
        let Some(p) = Position::decode(position) else {
            return Err(EngineError::State(format!(
                "unreadable mqtt position '{position}'"
            )));
        };
        self.acks.completed(p);
        self.try_send_acks()
    }

    fn reject(&mut self, rows: &[usize], reason: &str) -> Result<bool> {
        self.reject_rows(rows, reason)
    }
}

impl MqttSource {
    async fn next_event(&mut self) -> Result<SourceEvent> {
        if self.link.is_none() {
            self.link = Some(self.start());
        }
        self.send_acks().await?;
        let mut poll = std::mem::take(&mut self.last);
        poll.clear();
        let mut link = self.link.take();
        let gathered = match link.as_mut() {
            Some(l) => self.gather(l, &mut poll).await,
            None => Ok(false),
        };
        self.link = link;
        if !gathered? {
            self.last = poll;
            return Ok(SourceEvent::Idle);
        }
        let event = self.decode(poll)?;
        if !self.ctx.checkpointing {
            self.acks.all_due();
            self.send_acks().await?;
        }
        Ok(event)
    }

    /// Receive up to a batch of messages (waiting at most [`LINGER`] after the first); false
    /// when nothing arrived within [`WAIT`].
    async fn gather(&mut self, link: &mut Link, poll: &mut Poll) -> Result<bool> {
        let first = match tokio::time::timeout(WAIT, link.rx.recv()).await {
            Err(_) => return Ok(false),
            Ok(m) => m.ok_or_else(|| mqtt_err("the client's event loop stopped"))?,
        };
        let mut next = Some(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while poll.lines.len() < self.ctx.batch_size {
            let m = match next.take().map_or_else(|| link.rx.try_recv(), Ok) {
                Ok(m) => m,
                Err(TryRecvError::Disconnected) => {
                    return Err(mqtt_err("the client's event loop stopped"))
                }
                Err(TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, link.rx.recv()).await {
                        Ok(Some(m)) => m,
                        Ok(None) => return Err(mqtt_err("the client's event loop stopped")),
                        Err(_) => break,
                    }
                }
            };
            self.take(m, poll)?;
        }
        Ok(true)
    }

    /// One message from the event loop into the poll.
    fn take(&mut self, m: Inbound, poll: &mut Poll) -> Result<()> {
        match m {
            Inbound::Publish(p) => {
                poll.push(&p, self.format.raw);
                self.acks
                    .handed((p.qos != QoS::AtMostOnce).then(|| ack_only(*p)));
            }
            Inbound::Connected => {
                let again = self.acks.reconnected();
                if again > 0 {
                    tracing::info!(
                        table = %self.ctx.table.name,
                        "mqtt: reconnected; {again} unacknowledged messages come again"
                    );
                }
            }
            Inbound::Failed(m) => return Err(mqtt_err(m)),
        }
        Ok(())
    }

    /// Send the acknowledgements that are due, waiting for room in the client's queue.
    async fn send_acks(&mut self) -> Result<()> {
        let Some(link) = &self.link else {
            return Ok(());
        };
        while let Some(p) = self.acks.pop_due() {
            link.client.ack(&p).await.map_err(mqtt_err)?;
        }
        Ok(())
    }

    /// Send the acknowledgements that are due while the client's queue has room.
    fn try_send_acks(&mut self) -> Result<()> {
        let Some(link) = &self.link else {
            return Ok(());
        };
        while let Some(p) = self.acks.pop_due() {
            match link.client.try_ack(&p) {
                Ok(()) => {}
                Err(ClientError::TryRequest(_)) => {
                    self.acks.put_back(p);
                    break;
                }
                Err(e) => return Err(mqtt_err(e)),
            }
        }
        Ok(())
    }

    /// Publish a dead letter to `'dead-letter.topic'` with its reason and origin as MQTT 5
    /// user properties (`weir.reason`, `weir.source.topic`, `weir.source.message-id`).
    pub(super) fn publish_dead_letter(&self, raw: &[u8], reason: &str, line: &Line) -> Result<()> {
        let (Some(topic), Some(link)) = (&self.dead_letter_topic, &self.link) else {
            return Ok(());
        };
        let props = super::decode::dead_letter_properties(reason, line);
        link.client
            .try_publish_with_properties(
                topic.clone(),
                QoS::AtLeastOnce,
                false,
                raw.to_vec(),
                props,
            )
            .map_err(|e| mqtt_err(format!("dead-letter topic '{topic}': {e}")))
    }
}

/// What acknowledging `p` needs (its packet id and QoS), without the payload.
fn ack_only(mut p: Publish) -> Publish {
    p.payload = p.payload.slice(0..0);
    p.topic = p.topic.slice(0..0);
    p.properties = None;
    p
}
