//! The join nodes of the streaming plan: which rows of two inputs meet, and when the state
//! that waits for a match can go (see `docs/semantics.md`, "Joins and OVER aggregates").

use std::fmt;

use datafusion::arrow::datatypes::{SchemaRef, TimeUnit};

use crate::stream_plan::{PhysExpr, StreamNode};
use crate::window_spec::format_duration;

/// Which unmatched rows a join emits, NULL-padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Matched pairs only.
    Inner,
    /// Also left rows without a match.
    Left,
    /// Also right rows without a match.
    Right,
    /// Also unmatched rows of both sides.
    Full,
    /// Left rows with a match, once each, without the right's columns (`IN`, `EXISTS`).
    Semi,
    /// Left rows without a match, without the right's columns (`NOT IN`, `NOT EXISTS`).
    Anti,
}

impl JoinKind {
    /// Whether unmatched rows of input `side` (0 = left, 1 = right) are emitted.
    pub fn keeps_unmatched(self, side: usize) -> bool {
        matches!(
            (self, side),
            (JoinKind::Full, _) | (JoinKind::Left, 0) | (JoinKind::Right, 1) | (JoinKind::Anti, 0)
        )
    }

    /// Whether the output holds pairs (the columns of both inputs), as opposed to left rows.
    pub fn emits_pairs(self) -> bool {
        !matches!(self, JoinKind::Semi | JoinKind::Anti)
    }

    /// Whether the rows of input `side` must remember that they matched.
    pub fn tracks_matches(self, side: usize) -> bool {
        self.keeps_unmatched(side) || (self == JoinKind::Semi && side == 0)
    }
}

impl fmt::Display for JoinKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinKind::Inner => "INNER",
            JoinKind::Left => "LEFT",
            JoinKind::Right => "RIGHT",
            JoinKind::Full => "FULL",
            JoinKind::Semi => "SEMI",
            JoinKind::Anti => "ANTI",
        })
    }
}

/// The event-time column of one join input and its unit.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinTime {
    /// Column index in that input's schema.
    pub index: usize,
    pub unit: TimeUnit,
}

/// An interval join's time condition: `right.time - left.time` lies in `[lower, upper]` (ns,
/// both bounds inclusive; strict comparisons were made inclusive by one unit of the column).
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalBounds {
    pub left: JoinTime,
    pub right: JoinTime,
    pub lower_ns: i64,
    pub upper_ns: i64,
}

impl IntervalBounds {
    /// How far behind the inputs' watermark an output row's event time can be: the output
    /// watermark is held back this much so no joined row is late downstream.
    pub fn output_delay_ns(&self) -> i64 {
        0i64.max(self.upper_ns).max(self.lower_ns.saturating_neg())
    }
}

/// A join of two streams on equal keys.
#[derive(Debug, Clone)]
pub struct JoinNode {
    pub left: Box<StreamNode>,
    pub right: Box<StreamNode>,
    pub kind: JoinKind,
    /// Equi-join keys over each input, pairwise of one type.
    pub left_keys: Vec<PhysExpr>,
    pub right_keys: Vec<PhysExpr>,
    /// The time condition of an interval join; `None` for a regular join, whose rows are held
    /// until the other input ends (for ever when it does not).
    pub interval: Option<IntervalBounds>,
    /// The bounds come from equal `window_start` and `window_end` (a window join).
    pub window: bool,
    /// Whether each input ends (a regular join's rows of the other input can then go).
    pub bounded: [bool; 2],
    /// A regular join whose result is a changelog: an input updates, or an outer side's
    /// other input does not end.
    pub changelog: bool,
    /// Each input's state TTL from a `/*+ STATE_TTL(..) */` hint (ns), over
    /// `table.exec.state.ttl`.
    pub state_ttl: [Option<i64>; 2],
    /// The rest of the ON condition, over the columns of both inputs (left's, then right's).
    pub filter: Option<PhysExpr>,
    /// `NOT IN`: a left row whose key is NULL is not emitted.
    pub null_aware: bool,
    /// Output: the left input's columns, then the right input's (a semi or anti join: the
    /// left input's only).
    pub schema: SchemaRef,
    /// The key equalities and the two time columns as the query names them, for EXPLAIN.
    pub keys_sql: Vec<String>,
    pub times_sql: [String; 2],
}

impl JoinNode {
    /// The EXPLAIN line: kind, keys, time bounds and what the state holds.
    pub fn describe(&self) -> String {
        let filter = match &self.filter {
            Some(f) => format!(" filter={f}"),
            None => String::new(),
        };
        let Some(b) = &self.interval else {
            let held = |side: usize| match (
                self.bounded[1 - side] && !self.changelog,
                self.state_ttl[side],
            ) {
                (true, _) => "until the other input ends".to_string(),
                (false, Some(ns)) => format!(
                    "until idle for {} (STATE_TTL hint)",
                    crate::window_spec::format_duration(ns)
                ),
                (false, None) => {
                    "until table.exec.state.ttl drops them (for ever without it)".into()
                }
            };
            let emits = if self.changelog {
                " emits=changelog"
            } else {
                ""
            };
            return format!(
                "Join: {} keys=[{}]{filter}{emits} state=left rows {}, right rows {}",
                self.kind,
                self.keys_sql.join(", "),
                held(0),
                held(1)
            );
        };
        if self.window {
            return format!(
                "WindowJoin: {} keys=[{}]{filter} emits=when both watermarks pass the window end \
                 state=rows of windows not yet passed",
                self.kind,
                self.keys_sql.join(", "),
            );
        }
        format!(
            "IntervalJoin: {} keys=[{}] {} - {} in [{}, {}]{filter} state=rows within the bounds, \
             freed by watermark",
            self.kind,
            self.keys_sql.join(", "),
            self.times_sql[1],
            self.times_sql[0],
            signed_duration(b.lower_ns),
            signed_duration(b.upper_ns),
        )
    }

    /// Where output rows' event times can be read: both inputs' time columns.
    pub fn event_time_columns(&self) -> Vec<(usize, i64)> {
        let shift = self.left.schema().fields().len();
        let mut cols = self.left.event_time_columns();
        cols.extend(
            self.right
                .event_time_columns()
                .into_iter()
                .map(|(i, off)| (i + shift, off)),
        );
        cols
    }
}

/// An event-time temporal join: each left row with the right row of its key that was valid at
/// the left row's time (the newest version at or before it).
#[derive(Debug, Clone)]
pub struct TemporalJoinNode {
    pub left: Box<StreamNode>,
    /// The versions: each row is a version of its key from its time on.
    pub right: Box<StreamNode>,
    /// INNER or LEFT.
    pub kind: JoinKind,
    pub left_keys: Vec<PhysExpr>,
    pub right_keys: Vec<PhysExpr>,
    /// The left time the version is looked up at, and the versions' time.
    pub left_time: JoinTime,
    pub right_time: JoinTime,
    /// The rest of the ON condition, over both inputs' columns.
    pub filter: Option<PhysExpr>,
    /// Output: the left input's columns, then the right input's.
    pub schema: SchemaRef,
    pub keys_sql: Vec<String>,
    /// `t.ts` of `FOR SYSTEM_TIME AS OF t.ts`.
    pub time_sql: String,
}

impl TemporalJoinNode {
    /// The EXPLAIN line.
    pub fn describe(&self) -> String {
        let filter = match &self.filter {
            Some(f) => format!(" filter={f}"),
            None => String::new(),
        };
        format!(
            "TemporalJoin: {} keys=[{}] as of {}{filter} emits=each left row once the versions' \
             watermark passes it state=per key the versions newer than the watermark, and one",
            self.kind,
            self.keys_sql.join(", "),
            self.time_sql
        )
    }
}

/// A lookup join: each left row with the rows of a table looked up by key when the row comes
/// (`JOIN d FOR SYSTEM_TIME AS OF a.proc_time ON a.k = d.k`, `d` a `jdbc` table). The table is
/// not read as a stream: the operator asks it for the keys it meets, batch by batch.
#[derive(Debug, Clone)]
pub struct LookupJoinNode {
    pub left: Box<StreamNode>,
    /// The looked-up table.
    pub table: std::sync::Arc<crate::catalog::TableDef>,
    /// INNER or LEFT.
    pub kind: JoinKind,
    pub left_keys: Vec<PhysExpr>,
    /// The table's columns the left keys are matched to, in order.
    pub right_keys: Vec<String>,
    /// The table's columns in the output (after the left input's).
    pub right_schema: SchemaRef,
    /// The rest of the ON condition, over both inputs' columns.
    pub filter: Option<PhysExpr>,
    /// Output: the left input's columns, then `right_schema`'s.
    pub schema: SchemaRef,
    pub keys_sql: Vec<String>,
    /// `a.proc_time` of `FOR SYSTEM_TIME AS OF a.proc_time`.
    pub time_sql: String,
}

impl LookupJoinNode {
    /// The EXPLAIN line.
    pub fn describe(&self) -> String {
        let filter = match &self.filter {
            Some(f) => format!(" filter={f}"),
            None => String::new(),
        };
        let cache = match self.table.option("lookup.cache") {
            Some(c) if c.eq_ignore_ascii_case("partial") => format!(
                "partial, up to {} keys",
                self.table
                    .option("lookup.partial-cache.max-rows")
                    .unwrap_or("10000")
            ),
            _ => "none".to_string(),
        };
        format!(
            "LookupJoin: {} {} keys=[{}] as of {}{filter} cache={cache} emits=each left row \
             when it comes, with the table's rows of its key then state=none",
            self.kind,
            self.table.name,
            self.keys_sql.join(", "),
            self.time_sql
        )
    }
}

fn signed_duration(ns: i64) -> String {
    match ns {
        0 => "0".to_string(),
        n if n < 0 => format!("-{}", format_duration(n.saturating_neg())),
        n => format_duration(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmatched_rows_and_the_output_delay() {
        assert!(JoinKind::Left.keeps_unmatched(0) && !JoinKind::Left.keeps_unmatched(1));
        assert!(JoinKind::Full.keeps_unmatched(1) && !JoinKind::Inner.keeps_unmatched(0));
        let t = |index| JoinTime {
            index,
            unit: TimeUnit::Millisecond,
        };
        let b = IntervalBounds {
            left: t(0),
            right: t(1),
            lower_ns: -10_000_000_000,
            upper_ns: 5_000_000_000,
        };
        assert_eq!(b.output_delay_ns(), 10_000_000_000);
        assert_eq!(signed_duration(b.lower_ns), "-10 s");
    }
}
