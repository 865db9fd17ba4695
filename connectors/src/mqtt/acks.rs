//! When the MQTT source acknowledges a message: every message handed to the engine gets a
//! sequence number; a checkpoint's position is the last number handed out before it, and when
//! that checkpoint completes every held message up to it is due, in the order received (MQTT
//! wants PUBACKs in that order). Messages of a connection that broke are forgotten: the broker
//! sends them again on the resumed session, and they are acknowledged then.

use std::collections::VecDeque;

/// A checkpoint position: the run it belongs to and the last sequence number in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) run: u64,
    pub(crate) seq: u64,
}

impl Position {
    /// `<run>:<seq>`, as stored in a checkpoint.
    pub(crate) fn encode(&self) -> String {
        format!("{}:{}", self.run, self.seq)
    }

    /// A position written by [`Position::encode`]; `None` when unreadable.
    pub(crate) fn decode(text: &str) -> Option<Position> {
        let (run, seq) = text.split_once(':')?;
        Some(Position {
            run: run.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// One held message.
struct Held<T> {
    seq: u64,
    /// The connection it arrived on (an ack is only valid there).
    connection: u64,
    item: T,
}

/// The messages received but not yet acknowledged, in order.
pub(crate) struct AckQueue<T> {
    run: u64,
    last_seq: u64,
    connection: u64,
    /// Everything up to this sequence number may be acknowledged.
    due: u64,
    held: VecDeque<Held<T>>,
}

impl<T> AckQueue<T> {
    /// An empty queue for this run of the source (`run` tells its positions from those of an
    /// earlier run).
    pub(crate) fn new(run: u64) -> Self {
        Self {
            run,
            last_seq: 0,
            connection: 0,
            due: 0,
            held: VecDeque::new(),
        }
    }

    /// A message was handed to the engine; `item` is what acknowledges it (`None` for a message
    /// that needs no acknowledgement, QoS 0).
    pub(crate) fn handed(&mut self, item: Option<T>) {
        self.last_seq += 1;
        if let Some(item) = item {
            self.held.push_back(Held {
                seq: self.last_seq,
                connection: self.connection,
                item,
            });
        }
    }

    /// The position after everything handed so far.
    pub(crate) fn position(&self) -> Position {
        Position {
            run: self.run,
            seq: self.last_seq,
        }
    }

    /// The checkpoint holding `position` completed: what it holds is due. Positions of another
    /// run are ignored.
    pub(crate) fn completed(&mut self, position: Position) {
        if position.run == self.run {
            self.due = self.due.max(position.seq);
        }
    }

    /// Everything handed so far is due (a job without checkpoints).
    pub(crate) fn all_due(&mut self) {
        self.due = self.last_seq;
    }

    /// The next message to acknowledge now, if any; a held message of a broken connection
    /// is dropped on the way.
    pub(crate) fn pop_due(&mut self) -> Option<T> {
        while let Some(front) = self.held.front() {
            if front.seq > self.due {
                return None;
            }
            let held = self.held.pop_front()?;
            if held.connection == self.connection {
                return Some(held.item);
            }
        }
        None
    }

    /// Put back a message [`AckQueue::pop_due`] gave but that could not be sent yet.
    pub(crate) fn put_back(&mut self, item: T) {
        let seq = self.due.min(self.held.front().map_or(self.due, |h| h.seq));
        self.held.push_front(Held {
            seq,
            connection: self.connection,
            item,
        });
    }

    /// A new connection to the broker: what is held from earlier ones will come again.
    /// Returns how many were held.
    pub(crate) fn reconnected(&mut self) -> usize {
        self.connection += 1;
        let n = self.held.len();
        self.held.clear();
        n
    }

    /// How many messages are held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut AckQueue<u32>) -> Vec<u32> {
        std::iter::from_fn(|| q.pop_due()).collect()
    }

    #[test]
    fn messages_are_due_only_when_their_checkpoint_completed() {
        let mut q = AckQueue::new(7);
        q.handed(Some(1));
        q.handed(Some(2));
        let ck1 = q.position();
        q.handed(None); // QoS 0
        q.handed(Some(4));
        let ck2 = q.position();
        q.handed(Some(5));
        assert_eq!(drain(&mut q), Vec::<u32>::new());
        q.completed(ck1);
        assert_eq!(drain(&mut q), vec![1, 2]);
        q.completed(ck2);
        assert_eq!(drain(&mut q), vec![4]);
        assert_eq!(q.held(), 1);
        q.completed(ck1); // an older one changes nothing
        assert_eq!(drain(&mut q), Vec::<u32>::new());
    }

    #[test]
    fn positions_of_another_run_ack_nothing() {
        let mut q = AckQueue::new(2);
        q.handed(Some(1));
        q.completed(Position { run: 1, seq: 5 });
        assert_eq!(drain(&mut q), Vec::<u32>::new());
        assert_eq!(Position::decode(&q.position().encode()), Some(q.position()));
        assert_eq!(Position::decode("x:1"), None);
        assert_eq!(Position::decode("{}"), None);
    }

    #[test]
    fn a_reconnect_forgets_what_the_broker_sends_again() {
        let mut q = AckQueue::new(1);
        q.handed(Some(1));
        q.handed(Some(2));
        assert_eq!(q.reconnected(), 2);
        q.handed(Some(3));
        q.all_due();
        assert_eq!(drain(&mut q), vec![3]);
    }

    #[test]
    fn a_message_put_back_comes_first_again() {
        let mut q = AckQueue::new(1);
        q.handed(Some(1));
        q.handed(Some(2));
        q.all_due();
        let first = q.pop_due().unwrap();
        q.put_back(first);
        assert_eq!(drain(&mut q), vec![1, 2]);
    }
}
