//! The exactly-once sink's recovery scan: which rows of a pending checkpoint a `read_committed`
//! reader already sees. Each partition is read up to its end when the scan starts (records
//! written later cannot be the crashed run's: its producers were fenced before the scan).
//! First the scan waits until no open transaction lies before that end (its last stable
//! offset has reached it): an open transaction of a crashed producer whose abort is still
//! under way, or of another subtask, would otherwise hide rows committed after it, which the
//! sink would then produce twice. A slow or paused broker, or a transaction that stays open,
//! is waited for, with backoff, up to a deadline; then the scan fails with what it could not
//! read, never a guess (a guess would produce rows twice or lose them).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::metadata::header_value;

/// How long recovery waits for the broker before failing the job.
pub(crate) const RECOVERY_DEADLINE: Duration = Duration::from_secs(120);

/// How far each partition has been read, against where it must get to.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ScanProgress {
    /// Partition -> end of the log when the scan started (exclusive end), which the last
    /// stable offset had reached before reading began.
    ends: BTreeMap<i32, i64>,
    /// Partition -> next offset to read.
    at: BTreeMap<i32, i64>,
}

impl ScanProgress {
    /// Start at `from`, read up to `ends`.
    pub(crate) fn new(from: &BTreeMap<i32, i64>, ends: BTreeMap<i32, i64>) -> Self {
        Self {
            ends,
            at: from.clone(),
        }
    }

    /// A record (or the consumer's position, which also passes transaction markers) at
    /// `offset` of partition `p` was read.
    pub(crate) fn advance(&mut self, p: i32, next: i64) {
        if let Some(at) = self.at.get_mut(&p) {
            *at = (*at).max(next);
        }
    }

    /// The partition reached the end of what the broker has (an EOF event).
    pub(crate) fn reached_end(&mut self, p: i32) {
        if let (Some(at), Some(end)) = (self.at.get_mut(&p), self.ends.get(&p)) {
            *at = (*at).max(*end);
        }
    }

    /// Partitions not yet read to their end: (partition, at, end).
    pub(crate) fn missing(&self) -> Vec<(i32, i64, i64)> {
        self.at
            .iter()
            .filter_map(|(p, at)| {
                let end = *self.ends.get(p)?;
                (*at < end).then_some((*p, *at, end))
            })
            .collect()
    }
}

/// The `weir.seq` of every record of `topic` from `from` to the end of the log that is
/// marked `marker`. `config` must read with `isolation.level = read_committed`.
pub fn visible_seqs(
    config: &ClientConfig,
    topic: &str,
    from: &BTreeMap<i32, i64>,
    marker: &str,
    deadline: Duration,
) -> Result<HashSet<u64>, String> {
    let give_up = Instant::now() + deadline;
    let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    let mut uncommitted = config.clone();
    uncommitted.set("isolation.level", "read_uncommitted");
    let probe: BaseConsumer = uncommitted.create().map_err(|e| e.to_string())?;
    let ends = log_ends(&probe, topic, from, give_up)?;
    settle(&consumer, topic, &ends, give_up)?;
    let mut progress = ScanProgress::new(from, ends);
    let mut tpl = TopicPartitionList::new();
    for (p, o) in from {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut seen = HashSet::new();
    while !progress.missing().is_empty() {
        if Instant::now() > give_up {
            return Err(format!(
                "recovery could not read topic '{topic}' to its end within {deadline:?} \
                 (partition, at, end): {:?}; the job fails rather than guess which rows the \
                 crashed run committed",
                progress.missing()
            ));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => progress.reached_end(p),
            Some(Err(e)) => tracing::warn!("kafka recovery scan of '{topic}': {e}; retrying"),
            Some(Ok(m)) => {
                progress.advance(m.partition(), m.offset() + 1);
                seen.extend(marked_seq(&m, marker));
            }
        }
        for (p, next) in positions(&consumer, topic) {
            progress.advance(p, next);
        }
    }
    Ok(seen)
}

/// The record's `weir.seq` when its `weir.txn` is `marker`.
fn marked_seq<M: Message<Headers = rdkafka::message::BorrowedHeaders>>(
    m: &M,
    marker: &str,
) -> Option<u64> {
    let h = m.headers()?;
    if header_value(h, b"weir.txn")? != marker.as_bytes() {
        return None;
    }
    std::str::from_utf8(header_value(h, b"weir.seq")?)
        .ok()?
        .parse()
        .ok()
}

/// The consumer's next fetch offsets (past transaction markers).
fn positions(consumer: &BaseConsumer, topic: &str) -> Vec<(i32, i64)> {
    let Ok(tpl) = consumer.position() else {
        return vec![];
    };
    tpl.elements_for_topic(topic)
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// One partition's end offset as `consumer` sees it (the high watermark, or the last stable
/// offset when it reads committed records), asking again with backoff while the broker is slow.
fn end_of(consumer: &BaseConsumer, topic: &str, p: i32, give_up: Instant) -> Result<i64, String> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match consumer.fetch_watermarks(topic, p, Duration::from_secs(5)) {
            Ok((_, high)) => return Ok(high),
            Err(e) if Instant::now() + backoff > give_up => {
                return Err(format!(
                    "recovery could not read the end offset of '{topic}' partition {p}: {e}"
                ))
            }
            Err(e) => {
                tracing::warn!("kafka recovery: end offset of '{topic}'/{p}: {e}; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Each scanned partition's end of the log (`probe` reads uncommitted records).
fn log_ends(
    probe: &BaseConsumer,
    topic: &str,
    from: &BTreeMap<i32, i64>,
    give_up: Instant,
) -> Result<BTreeMap<i32, i64>, String> {
    from.keys()
        .map(|p| Ok((*p, end_of(probe, topic, *p, give_up)?)))
        .collect()
}

/// Wait until every partition's last stable offset has reached `ends`: no transaction that
/// began before them is still open.
fn settle(
    consumer: &BaseConsumer,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
    give_up: Instant,
) -> Result<(), String> {
    for (p, end) in ends {
        let mut backoff = Duration::from_millis(50);
        loop {
            let stable = end_of(consumer, topic, *p, give_up)?;
            if stable >= *end {
                break;
            }
            if Instant::now() + backoff > give_up {
                return Err(format!(
                    "recovery waited in vain for an open transaction on '{topic}' partition \
                     {p} to end (stable up to {stable}, written up to {end}); the job fails \
                     rather than guess which rows the crashed run committed"
                ));
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_done_at_its_stable_end_or_eof_only() {
        let from = BTreeMap::from([(0, 10), (1, 5)]);
        let mut p = ScanProgress::new(&from, BTreeMap::from([(0, 20), (1, 5)]));
        assert_eq!(
            p.missing(),
            vec![(0, 10, 20)],
            "partition 1 has nothing to read"
        );
        p.advance(0, 15);
        p.advance(0, 12); // an older position never moves back
        assert_eq!(p.missing(), vec![(0, 15, 20)]);
        p.advance(7, 100); // not scanned
        p.reached_end(0);
        assert!(p.missing().is_empty());
    }
}
