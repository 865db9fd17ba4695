//! The Kafka source's decoding driven without a broker (cargo feature `fuzzing`): messages
//! built in memory go through the same `take_message` and decode steps as polled ones.

use std::collections::HashMap;

use rdkafka::message::OwnedMessage;
use weir_engine::connector::SourceEvent;
use weir_engine::Result;

use super::{KafkaSource, Part};

/// Partitions `0..PARTITIONS` of topic `topic` are assigned.
pub(crate) const PARTITIONS: i32 = 4;

impl KafkaSource {
    /// Decode `messages` as one poll: assign partitions `0..PARTITIONS` of `topic` afresh
    /// (partition 3 ends at offset 100, as a bounded read would), lay the messages out and
    /// decode them.
    pub(crate) fn decode_messages(
        &mut self,
        topic: &str,
        messages: &[OwnedMessage],
    ) -> Result<SourceEvent> {
        self.parts = (0..PARTITIONS)
            .map(|partition| Part {
                topic: topic.to_string(),
                partition,
                end: (partition == 3).then_some(100),
                done: false,
                next: None,
            })
            .collect();
        self.index = HashMap::from([(
            topic.to_string(),
            (0..PARTITIONS as u32).map(Some).collect(),
        )]);
        self.keys.clear();
        self.headers.clear();
        let (mut region, mut meta) = (Vec::new(), Vec::new());
        for m in messages {
            self.take_message(m, &mut region, &mut meta);
        }
        if self.options.raw {
            self.decode_raw(region, meta)
        } else {
            self.decode(region, meta)
        }
    }
}
