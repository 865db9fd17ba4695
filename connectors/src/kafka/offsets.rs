//! Partition discovery and offset resolution for the Kafka source: which partitions a topic
//! has, where each read starts (`scan.startup.*`) and where a bounded read ends
//! (`scan.bounded.*`). These calls block, so the source runs them on the blocking pool.

use std::collections::BTreeMap;
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

/// Where one partition's read starts and ends.
pub(super) struct Resolved {
    pub topic: String,
    pub partition: i32,
    /// The first offset to read: always concrete, so a checkpoint records it even when the
    /// partition stays quiet.
    pub from: i64,
    /// The exclusive end offset of a bounded read.
    pub until: Option<i64>,
}

/// What a group without a committed offset falls back to (`properties.auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reset {
    Earliest,
    Latest,
    /// Fail: the group must have committed offsets.
    None,
}

impl Reset {
    /// `properties.auto.offset.reset` (earliest when not set).
    pub(super) fn parse(v: Option<&str>) -> Result<Reset, String> {
        match v.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("earliest" | "smallest" | "beginning") => Ok(Reset::Earliest),
            Some("latest" | "largest" | "end") => Ok(Reset::Latest),
            Some("none" | "error") => Ok(Reset::None),
            Some(other) => Err(format!(
                "option 'properties.auto.offset.reset' must be 'earliest', 'latest' or 'none', \
                 not '{other}'"
            )),
        }
    }
}

/// How a job's partitions start: the startup mode on a job's first start; on a restart, the
/// checkpointed offsets, and the earliest offset for partitions the checkpoint does not know
/// (created since), as Flink does.
pub(super) struct StartPlan<'a> {
    pub startup: &'a Startup,
    pub reset: Reset,
    /// `topic/partition` -> offset, when the job restores from a checkpoint.
    pub restored: Option<&'a BTreeMap<String, i64>>,
}

/// Start offset and exclusive end offset of each partition.
pub(super) fn resolve_offsets(
    c: &StreamConsumer,
    parts: &[(String, i32)],
    start: &StartPlan,
    end: &Bounded,
) -> Result<Vec<Resolved>, String> {
    let mut out = Vec::with_capacity(parts.len());
    for (t, p) in parts {
        let from = match start.restored {
            Some(r) => match r.get(&format!("{t}/{p}")) {
                Some(o) => *o,
                None => low_watermark(c, t, *p)?,
            },
            None => start_offset(c, t, *p, start.startup, start.reset)?,
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
        out.push(Resolved {
            topic: t.clone(),
            partition: *p,
            from,
            until,
        });
    }
    Ok(out)
}

/// The concrete first offset `startup` means for partition `t/p`.
fn start_offset(
    c: &StreamConsumer,
    t: &str,
    p: i32,
    startup: &Startup,
    reset: Reset,
) -> Result<i64, String> {
    match startup {
        Startup::Earliest => low_watermark(c, t, p),
        Startup::Latest => high_watermark(c, t, p),
        Startup::Specific(m) => match m.get(&p) {
            Some(o) => Ok(*o),
            None => low_watermark(c, t, p),
        },
        Startup::Timestamp(ms) => match offset_for_time(c, t, p, *ms)? {
            Offset::Offset(o) => Ok(o),
            _ => high_watermark(c, t, p),
        },
        Startup::GroupOffsets => match committed(c, t, p)? {
            Some(o) => Ok(o),
            None => match reset {
                Reset::Earliest => low_watermark(c, t, p),
                Reset::Latest => high_watermark(c, t, p),
                Reset::None => Err(format!(
                    "the consumer group has no committed offset for {t}/{p} and \
                     'properties.auto.offset.reset' = 'none'"
                )),
            },
        },
    }
}

/// The offset the consumer's group committed for `t/p`, if any.
fn committed(c: &StreamConsumer, t: &str, p: i32) -> Result<Option<i64>, String> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(t, p);
    let r = c
        .committed_offsets(tpl, REQUEST_TIMEOUT)
        .map_err(|e| format!("cannot read the group's committed offset of {t}/{p}: {e}"))?;
    Ok(match r.find_partition(t, p).map(|e| e.offset()) {
        Some(Offset::Offset(o)) if o >= 0 => Some(o),
        _ => None,
    })
}

fn low_watermark(c: &StreamConsumer, t: &str, p: i32) -> Result<i64, String> {
    c.fetch_watermarks(t, p, REQUEST_TIMEOUT)
        .map(|(low, _)| low)
        .map_err(|e| format!("cannot read the start offset of {t}/{p}: {e}"))
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
