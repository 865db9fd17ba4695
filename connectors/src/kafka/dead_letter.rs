//! `'dead-letter.topic'`: records the source cannot use are written, byte for byte, to a Kafka
//! topic with the reason and their origin as headers (`weir.reason`, `weir.source.topic`,
//! `weir.source.partition`, `weir.source.offset`), so nothing is lost and it can be replayed.

use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use weir_engine::{EngineError, Result};

use super::{KafkaOptions, NAME};

/// A producer to the dead-letter topic; deliveries are awaited before the batch moves on.
pub(crate) struct DeadLetterTopic {
    producer: FutureProducer,
    topic: String,
    pending: Vec<DeliveryFuture>,
}

/// Where a record came from.
pub(crate) struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl DeadLetterTopic {
    pub(crate) fn new(options: &KafkaOptions, topic: &str) -> Result<Self> {
        let producer: FutureProducer = options
            .client_config()
            .create()
            .map_err(|e| EngineError::connector(NAME, format!("dead-letter producer: {e}")))?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
            pending: Vec::new(),
        })
    }

    /// Queue one bad record.
    pub(crate) fn send(
        &mut self,
        value: &[u8],
        key: Option<&[u8]>,
        reason: &str,
        from: Origin,
    ) -> Result<()> {
        let (partition, offset) = (from.partition.to_string(), from.offset.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "weir.reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "weir.source.topic",
                value: Some(from.topic),
            })
            .insert(Header {
                key: "weir.source.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "weir.source.offset",
                value: Some(&offset),
            });
        let mut rec = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .payload(value)
            .headers(headers);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        let f = self
            .producer
            .send_result(rec)
            .map_err(|(e, _)| EngineError::connector(NAME, format!("dead-letter topic: {e}")))?;
        self.pending.push(f);
        Ok(())
    }

    /// Block (at most 30 s) until every queued record is acknowledged, for callers that cannot
    /// await (a checkpoint's position).
    pub(crate) fn flush_now(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        use rdkafka::producer::Producer;
        self.producer
            .flush(std::time::Duration::from_secs(30))
            .map_err(|e| EngineError::connector(NAME, format!("dead-letter delivery: {e}")))?;
        for f in self.pending.drain(..) {
            match futures::FutureExt::now_or_never(f) {
                Some(Ok(Ok(_))) => {}
                Some(Ok(Err((e, _)))) => {
                    return Err(EngineError::connector(
                        NAME,
                        format!("dead-letter delivery: {e}"),
                    ))
                }
                _ => {
                    return Err(EngineError::connector(
                        NAME,
                        "dead-letter delivery not acknowledged",
                    ))
                }
            }
        }
        Ok(())
    }

    /// Wait until every queued record is acknowledged.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        for r in join_all(self.pending.drain(..)).await {
            r.map_err(|_| EngineError::connector(NAME, "dead-letter producer went away"))?
                .map_err(|(e, _)| {
                    EngineError::connector(NAME, format!("dead-letter delivery: {e}"))
                })?;
        }
        Ok(())
    }
}
