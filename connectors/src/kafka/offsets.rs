//! Partition discovery and offset resolution for the Kafka source: which partitions a topic
//! has, where each read starts (`scan.startup.*`) and where a bounded read ends
//! (`scan.bounded.*`). These calls block, so the source runs them on the blocking pool.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use weir_engine::EngineError;

use super::scan::{Bounded, Startup};
use super::{set_default, KafkaOptions, NAME};

/// How long one metadata or offsets request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) enum Retry {
    /// Worth trying again (broker not reachable yet).
    Again(String),
    Fatal(EngineError),
}

impl From<Retry> for EngineError {
    fn from(r: Retry) -> Self {
        match r {
            Retry::Again(m) => EngineError::connector(NAME, m),
            Retry::Fatal(e) => e,
        }
    }
}

/// Every partition of `topics`; an unknown topic is fatal, an unreachable broker is not.
pub(super) fn discover(
    consumer: &StreamConsumer,
    topics: &[String],
) -> Result<Vec<(String, i32)>, Retry> {
    let mut out = Vec::new();
    for t in topics {
        let md = consumer
            .fetch_metadata(Some(t), REQUEST_TIMEOUT)
            .map_err(|e| Retry::Again(format!("cannot reach the brokers: {e}")))?;
        let Some(topic) = md.topics().iter().find(|x| x.name() == t) else {
            return Err(Retry::Fatal(EngineError::connector(
                NAME,
                format!("topic '{t}' does not exist"),
            )));
        };
        if topic.error().is_some() || topic.partitions().is_empty() {
            return Err(Retry::Fatal(EngineError::connector(
                NAME,
                format!("topic '{t}' does not exist"),
            )));
        }
        out.extend(topic.partitions().iter().map(|p| (t.clone(), p.id())));
    }
    Ok(out)
}

/// At planning time: a topic the brokers say does not exist is an error naming it. When the
/// brokers cannot be reached the check is left to the running job, which retries.
pub(super) fn check_topics_exist(options: &KafkaOptions) -> Result<(), String> {
    let mut config = options.client_config();
    set_default(&mut config, "group.id", "weir-planner");
    let consumer: rdkafka::consumer::BaseConsumer = config.create().map_err(|e| e.to_string())?;
    for t in &options.topics {
        let Ok(md) = consumer.fetch_metadata(Some(t), Duration::from_secs(3)) else {
            return Ok(());
        };
        let missing = md
            .topics()
            .iter()
            .find(|x| x.name() == t)
            .is_none_or(|x| x.error().is_some() || x.partitions().is_empty());
        if missing {
            let brokers = options
                .properties
                .get("bootstrap.servers")
                .map_or("?", String::as_str);
            return Err(format!(
                "option 'topic': topic '{t}' does not exist on broker {brokers}"
            ));
        }
    }
    Ok(())
}

pub(super) type Resolved = Vec<(String, i32, Offset, Option<i64>)>;

/// Start offset and exclusive end offset of each partition.
pub(super) fn resolve_offsets(
    c: &StreamConsumer,
    parts: &[(String, i32)],
    start: &Startup,
    end: &Bounded,
) -> Result<Resolved, String> {
    let mut out = Vec::with_capacity(parts.len());
    for (t, p) in parts {
        let from = match start {
            Startup::Earliest => Offset::Beginning,
            Startup::Latest => Offset::End,
            Startup::GroupOffsets => Offset::Stored,
            Startup::Specific(m) => m.get(p).map_or(Offset::Beginning, |o| Offset::Offset(*o)),
            Startup::Timestamp(ms) => offset_for_time(c, t, *p, *ms)?,
        };
        let until = match end {
            Bounded::Unbounded => None,
            Bounded::Latest => Some(high_watermark(c, t, *p)?),
            Bounded::Specific(m) => Some(m.get(p).copied().unwrap_or(0)),
            Bounded::Timestamp(ms) => Some(match offset_for_time(c, t, *p, *ms)? {
                Offset::Offset(o) => o,
                _ => high_watermark(c, t, *p)?,
            }),
        };
        out.push((t.clone(), *p, from, until));
    }
    Ok(out)
}

fn high_watermark(c: &StreamConsumer, t: &str, p: i32) -> Result<i64, String> {
    c.fetch_watermarks(t, p, REQUEST_TIMEOUT)
        .map(|(_, high)| high)
        .map_err(|e| format!("cannot read the end offset of {t}/{p}: {e}"))
}

fn offset_for_time(c: &StreamConsumer, t: &str, p: i32, ms: i64) -> Result<Offset, String> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(t, p, Offset::Offset(ms))
        .map_err(|e| e.to_string())?;
    let r = c
        .offsets_for_times(tpl, REQUEST_TIMEOUT)
        .map_err(|e| format!("cannot look up offsets by time: {e}"))?;
    Ok(r.find_partition(t, p)
        .map(|e| e.offset())
        .unwrap_or(Offset::End))
}
