//! Joins of two streams on equal keys. With a time condition that bounds one input's event
//! time by the other's (`b.ts BETWEEN a.ts - INTERVAL .. AND a.ts + INTERVAL ..`, or `>`, `>=`,
//! `<`, `<=` bounds either way round) it is an interval join, whose state is freed by
//! watermark. Without one it is a regular join: its rows wait for the other input to end, so
//! an outer join is append-only when the other input is bounded (a file of metadata), and the
//! unbounded input keeps its event time. Otherwise (an updating input, or an outer side whose
//! other input does not end) a regular join gives a changelog. The rest of the ON condition
//! stays a filter on pairs.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::JoinType;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, ExprSchemable, Join, LogicalPlan, Operator,
};

use super::window_join::window_bounds;
use super::{Converted, Converter, Role};
use crate::error::{PlanError, Result};
use crate::stream_plan::{IntervalBounds, JoinKind, JoinNode, JoinTime, StreamNode};

/// An input's event-time column plus a constant: `a.ts - INTERVAL '10' SECOND`.
#[derive(Debug, Clone, Copy)]
struct TimeTerm {
    side: usize,
    time: usize,
    offset_ns: i64,
}

/// The bounds found so far on `right.time - left.time`, and the columns they are on.
#[derive(Default, Clone, Copy)]
struct Bounds {
    columns: Option<(usize, usize)>,
    lower: Option<i64>,
    upper: Option<i64>,
}

impl Converter<'_> {
    /// An interval join (the only join that runs as a stream so far).
    pub(super) fn join(&mut self, j: &Join) -> Result<Converted> {
        let kind = join_kind(j.join_type)?;
        let conjuncts: Vec<&Expr> = j.filter.iter().flat_map(split_conjunction).collect();
        let (on, conjuncts) = equi_pairs(j, conjuncts);
        if on.is_empty() {
            return Err(PlanError::unsupported(
                "a join without an equality between the two inputs",
                "Join on equal keys, e.g. ON a.sensor_id = b.sensor_id",
            ));
        }
        if let Some(t) = self.temporal_ref(j) {
            let rest = conjuncts.into_iter().cloned().collect();
            if let Some(table) = super::lookup_join::lookup_table(&j.right) {
                return self.lookup_join(j, kind, &on, rest, &t, table);
            }
            return self.temporal_join(j, kind, &on, rest, &t);
        }
        let (left, right) = self.join_inputs(j)?;
        let window = window_bounds(j, &on, &left.node, &right.node);
        let (interval, rest) = match window.clone() {
            Some(w) => (Some(w), conjuncts.into_iter().cloned().collect()),
            None => time_condition(j, [&left, &right], conjuncts)?,
        };
        let bounded = [left.node.is_bounded(), right.node.is_bounded()];
        let updating = left.node.is_updating() || right.node.is_updating();
        if interval.is_some() && updating {
            return Err(PlanError::unsupported(
                "an interval or window join of an updating input (a GROUP BY without a window, \
                 a deduplication or a top-N)",
                "Join the raw rows, then aggregate; or join without time bounds (a regular join \
                 gives a changelog)",
            ));
        }
        let name = |p: &LogicalPlan, i: usize| {
            let (q, f) = p.schema().qualified_field(i);
            q.map_or(f.name().clone(), |q| format!("{q}.{}", f.name()))
        };
        let times_sql = match &interval {
            Some(b) => [name(&j.left, b.left.index), name(&j.right, b.right.index)],
            None => Default::default(),
        };
        // A regular join whose input updates, or whose outer side's row could later find a
        // partner in an input that does not end, gives a changelog (as Flink).
        let changelog = interval.is_none() && (updating || !appends(kind, bounded));
        let (left_keys, right_keys) = self.join_keys(j, &on)?;
        let filter = self.pair_filter(j, rest)?;
        let keep = |other_bounded: bool| !changelog && (interval.is_some() || other_bounded);
        let mut roles = kept_roles(left.roles, keep(bounded[1]));
        if kind.emits_pairs() {
            roles.extend(kept_roles(right.roles, keep(bounded[0])));
        }
        let null_aware = null_aware(j, &on)?;
        let node = StreamNode::Join(JoinNode {
            left: Box::new(left.node),
            right: Box::new(right.node),
            kind,
            left_keys,
            right_keys,
            interval,
            window: window.is_some(),
            bounded,
            changelog,
            state_ttl: self.state_ttl_of(j),
            filter,
            null_aware,
            schema: Arc::new(j.schema.as_arrow().clone()),
            keys_sql: on.iter().map(|(l, r)| format!("{l} = {r}")).collect(),
            times_sql,
        });
        Ok(Converted { node, roles })
    }

    /// Each input's `STATE_TTL` hint, found by the name it goes by (its alias, else its table).
    fn state_ttl_of(&self, j: &Join) -> [Option<i64>; 2] {
        let ttl = |p: &LogicalPlan| {
            let name = match p {
                LogicalPlan::SubqueryAlias(a) => a.alias.table().to_string(),
                LogicalPlan::TableScan(s) => s.table_name.table().to_string(),
                _ => return None,
            };
            self.hints
                .state_ttl
                .get(&name.to_ascii_lowercase())
                .copied()
        };
        [ttl(&j.left), ttl(&j.right)]
    }

    /// Both inputs of a join.
    fn join_inputs(&mut self, j: &Join) -> Result<(Converted, Converted)> {
        Ok((self.convert(&j.left)?, self.convert(&j.right)?))
    }

    /// The rest of a join's condition, bound to both inputs' columns.
    pub(super) fn pair_filter(&self, j: &Join, rest: Vec<Expr>) -> Result<Option<super::PhysExpr>> {
        let pair_schema = j.left.schema().join(j.right.schema())?;
        match conjunction(rest) {
            Some(f) => Ok(Some(self.phys(&f, &pair_schema)?)),
            None => Ok(None),
        }
    }

    pub(super) fn join_keys(
        &self,
        j: &Join,
        on: &[(Expr, Expr)],
    ) -> Result<(Vec<super::PhysExpr>, Vec<super::PhysExpr>)> {
        let mut left = Vec::with_capacity(on.len());
        let mut right = Vec::with_capacity(on.len());
        for (l, r) in on {
            left.push(self.phys(l, j.left.schema())?);
            right.push(self.phys(r, j.right.schema())?);
        }
        Ok((left, right))
    }
}

/// The join's key pairs: its `on` list, plus equalities of the filter between an expression of
/// the left input and one of the right (a join planned without the optimizer's extraction, as
/// inside a window TVF's input); and the filter's other conjuncts.
fn equi_pairs<'a>(j: &Join, conjuncts: Vec<&'a Expr>) -> (Vec<(Expr, Expr)>, Vec<&'a Expr>) {
    let mut on = j.on.clone();
    let mut rest = Vec::new();
    let only = |e: &Expr, p: &LogicalPlan| {
        let cols = e.column_refs();
        !cols.is_empty() && cols.iter().all(|c| p.schema().has_column(c))
    };
    for c in conjuncts {
        match c {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) if only(left, &j.left) && only(right, &j.right) => {
                on.push((*left.clone(), *right.clone()))
            }
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) if only(right, &j.left) && only(left, &j.right) => {
                on.push((*right.clone(), *left.clone()))
            }
            other => rest.push(other),
        }
    }
    (on, rest)
}

/// An interval join's bounds among `conjuncts` (`None` without a bound on each side), and the
/// conjuncts left for the filter.
fn time_condition(
    j: &Join,
    inputs: [&Converted; 2],
    conjuncts: Vec<&Expr>,
) -> Result<(Option<IntervalBounds>, Vec<Expr>)> {
    let units = inputs.map(time_units);
    if let Some(b) = equal_times(j, &units) {
        return Ok((Some(b), conjuncts.into_iter().cloned().collect()));
    }
    let mut bounds = Bounds::default();
    let (mut rest, mut bounding) = (Vec::new(), Vec::new());
    for c in conjuncts {
        match bounds.add(c, j, &units) {
            true => bounding.push(c.clone()),
            false => rest.push(c.clone()),
        }
    }
    let interval = bounds.finish(&units)?;
    if interval.is_none() {
        rest.extend(bounding);
    }
    Ok((interval, rest))
}

/// Whether a `NOT IN` (a null-aware anti join) must drop left rows with a NULL key. A NULL
/// among the subquery's keys would empty the whole result, which a stream cannot take back:
/// such a subquery must have a key that cannot be NULL.
fn null_aware(j: &Join, on: &[(Expr, Expr)]) -> Result<bool> {
    if !j.null_aware {
        return Ok(false);
    }
    for (_, r) in on {
        if r.nullable(j.right.schema())? {
            return Err(PlanError::unsupported(
                "NOT IN over a stream whose subquery column can be NULL (one NULL would empty \
                 the whole result)",
                "Use NOT EXISTS, or declare the subquery's column NOT NULL",
            ));
        }
    }
    Ok(true)
}

/// Equal event times of the two inputs among the join's keys (`BETWEEN x AND x` becomes one):
/// an interval join with bounds `[0, 0]`, whose state the watermark frees.
fn equal_times(j: &Join, units: &[Vec<Option<TimeUnit>>; 2]) -> Option<IntervalBounds> {
    j.on.iter().find_map(|(l, r)| {
        let (l, r) = (term(l, j, units)?, term(r, j, units)?);
        let (l, r) = if l.side == 0 { (l, r) } else { (r, l) };
        if l.side == r.side || l.offset_ns != 0 || r.offset_ns != 0 {
            return None;
        }
        let time = |side: usize, index: usize| JoinTime {
            index,
            unit: units[side][index].unwrap_or(TimeUnit::Millisecond),
        };
        Some(IntervalBounds {
            left: time(0, l.time),
            right: time(1, r.time),
            lower_ns: 0,
            upper_ns: 0,
        })
    })
}

fn join_kind(t: JoinType) -> Result<JoinKind> {
    Ok(match t {
        JoinType::Inner => JoinKind::Inner,
        JoinType::Left => JoinKind::Left,
        JoinType::Right => JoinKind::Right,
        JoinType::Full => JoinKind::Full,
        JoinType::LeftSemi => JoinKind::Semi,
        JoinType::LeftAnti => JoinKind::Anti,
        other => {
            return Err(PlanError::unsupported(
                format!("a {other} join does not run as a stream yet"),
                "Write it as IN/EXISTS (or NOT IN/NOT EXISTS) on the other table",
            ));
        }
    })
}

/// Per column of a converted input: its time unit when it is the input's event time.
fn time_units(c: &Converted) -> Vec<Option<TimeUnit>> {
    let schema = c.node.schema();
    c.roles
        .iter()
        .zip(schema.fields())
        .map(|(role, f)| match (role, f.data_type()) {
            (Role::Rowtime, DataType::Timestamp(unit, _)) => Some(*unit),
            _ => None,
        })
        .collect()
}

impl Bounds {
    /// Take `e` if it bounds one input's event time by the other's; false otherwise.
    fn add(&mut self, e: &Expr, j: &Join, units: &[Vec<Option<TimeUnit>>; 2]) -> bool {
        match e {
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                let ge = binary(expr, Operator::GtEq, low);
                let le = binary(expr, Operator::LtEq, high);
                let mut copy = *self;
                if copy.add(&ge, j, units) && copy.add(&le, j, units) {
                    *self = copy;
                    return true;
                }
                false
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (Some(a), Some(b)) = (term(left, j, units), term(right, j, units)) else {
                    return false;
                };
                self.compare(a, *op, b, units)
            }
            _ => false,
        }
    }

    /// `a op b` with `a` and `b` on different inputs: a bound on right - left.
    fn compare(
        &mut self,
        a: TimeTerm,
        op: Operator,
        b: TimeTerm,
        units: &[Vec<Option<TimeUnit>>; 2],
    ) -> bool {
        if a.side == b.side {
            return false;
        }
        // Normalise to `right.time - left.time  op'  c`.
        let (r, l, op) = if a.side == 1 {
            (a, b, op)
        } else {
            (b, a, flip(op))
        };
        let columns = (l.time, r.time);
        if self.columns.is_some_and(|c| c != columns) {
            return false;
        }
        let c = l.offset_ns - r.offset_ns;
        let step = unit_ns(units[0][l.time]).max(unit_ns(units[1][r.time]));
        let (lower, upper) = match op {
            Operator::GtEq => (Some(c), None),
            Operator::Gt => (Some(c + step), None),
            Operator::LtEq => (None, Some(c)),
            Operator::Lt => (None, Some(c - step)),
            _ => return false,
        };
        self.columns = Some(columns);
        self.lower = lower
            .map(|x| self.lower.map_or(x, |y| y.max(x)))
            .or(self.lower);
        self.upper = upper
            .map(|x| self.upper.map_or(x, |y| y.min(x)))
            .or(self.upper);
        true
    }

    /// The interval join's bounds; `None` without a bound on each side (a regular join).
    fn finish(self, units: &[Vec<Option<TimeUnit>>; 2]) -> Result<Option<IntervalBounds>> {
        let (Some((l, r)), Some(lower), Some(upper)) = (self.columns, self.lower, self.upper)
        else {
            return Ok(None);
        };
        if lower > upper {
            return Err(PlanError::unsupported(
                "an interval join whose time bounds admit no pair",
                "Make the lower bound at most the upper bound",
            ));
        }
        let time = |side: usize, index: usize| JoinTime {
            index,
            unit: units[side][index].unwrap_or(TimeUnit::Millisecond),
        };
        Ok(Some(IntervalBounds {
            left: time(0, l),
            right: time(1, r),
            lower_ns: lower,
            upper_ns: upper,
        }))
    }
}

/// Whether a regular join of append-only inputs is append-only: its unmatched rows are only
/// emitted once the other input has ended, so every outer side needs a bounded other input.
fn appends(kind: JoinKind, bounded: [bool; 2]) -> bool {
    (0..2).all(|side| !kind.keeps_unmatched(side) || bounded[1 - side])
}

/// An input's column roles after a join: event times stay event times when `keep` (the other
/// input's rows cannot make a joined row late), window columns become plain columns.
fn kept_roles(roles: Vec<Role>, keep: bool) -> Vec<Role> {
    roles
        .into_iter()
        .map(|r| match r {
            Role::Rowtime if keep => Role::Rowtime,
            _ => Role::Plain,
        })
        .collect()
}

fn binary(l: &Expr, op: Operator, r: &Expr) -> Expr {
    Expr::BinaryExpr(BinaryExpr::new(
        Box::new(l.clone()),
        op,
        Box::new(r.clone()),
    ))
}

/// `a op b` as `b op' a`.
fn flip(op: Operator) -> Operator {
    match op {
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        other => other,
    }
}

fn unit_ns(unit: Option<TimeUnit>) -> i64 {
    match unit {
        Some(TimeUnit::Second) => 1_000_000_000,
        Some(TimeUnit::Millisecond) | None => 1_000_000,
        Some(TimeUnit::Microsecond) => 1_000,
        Some(TimeUnit::Nanosecond) => 1,
    }
}

/// `e` as an input's event-time column plus a constant interval, if it is one.
fn term(e: &Expr, j: &Join, units: &[Vec<Option<TimeUnit>>; 2]) -> Option<TimeTerm> {
    match e {
        Expr::Cast(c) => term(&c.expr, j, units),
        Expr::TryCast(c) => term(&c.expr, j, units),
        Expr::Column(c) => {
            let (side, time) = match j.left.schema().index_of_column(c) {
                Ok(i) => (0, i),
                Err(_) => (1, j.right.schema().index_of_column(c).ok()?),
            };
            units[side].get(time)?.as_ref()?;
            Some(TimeTerm {
                side,
                time,
                offset_ns: 0,
            })
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let sign = match op {
                Operator::Plus => 1,
                Operator::Minus => -1,
                _ => return None,
            };
            let (t, lit) = match (term(left, j, units), interval_ns(right)) {
                (Some(t), Some(n)) => (t, sign * n),
                _ if sign == 1 => (term(right, j, units)?, interval_ns(left)?),
                _ => return None,
            };
            Some(TimeTerm {
                offset_ns: t.offset_ns + lit,
                ..t
            })
        }
        _ => None,
    }
}

/// A constant day-time interval in nanoseconds.
fn interval_ns(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    crate::interval::scalar_ns(v)
}
