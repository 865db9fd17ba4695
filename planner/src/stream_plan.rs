//! The streaming plan: what the engine instantiates as operators.
//!
//! Each node carries DataFusion physical expressions already bound to its input schema, so the
//! engine never sees SQL. Nodes form a tree from the sink down to the sources; every node knows
//! its output schema.

use std::fmt::{self, Write};
use std::sync::Arc;

use datafusion::arrow::datatypes::{SchemaRef, TimeUnit};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::PhysicalExpr;

use crate::catalog::TableDef;
pub use crate::join_plan::{
    IntervalBounds, JoinKind, JoinNode, JoinTime, LookupJoinNode, TemporalJoinNode,
};
pub use crate::over_plan::{OverFrame, OverNode};
use crate::window_spec::{format_duration, WindowSpec};

pub type PhysExpr = Arc<dyn PhysicalExpr>;

/// The event-time column of a window and how its values are read.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeInfo {
    pub unit: TimeUnit,
    /// Session time zone when the column is a TIMESTAMP_LTZ (windows align on its wall clock).
    pub tz: Option<String>,
}

/// A source table with its computed columns and watermark strategy.
#[derive(Debug, Clone)]
pub struct SourceNode {
    pub table: Arc<TableDef>,
    /// One expression per table column, evaluated over the decoded (physical) batch.
    pub columns: Vec<PhysExpr>,
    /// The watermark expression over the table's full schema and the rowtime column's index.
    pub watermark: Option<(PhysExpr, usize)>,
    /// Delay of a `ts - INTERVAL` watermark, for EXPLAIN.
    pub watermark_sql: Option<String>,
    /// Table columns to output (after the watermark was computed).
    pub projection: Vec<usize>,
    pub schema: SchemaRef,
}

/// Rows into their windows: adds `window_start`, `window_end`, `window_time`.
#[derive(Debug, Clone)]
pub struct WindowAssignNode {
    pub input: Box<StreamNode>,
    pub spec: WindowSpec,
    pub time_index: usize,
    pub time: TimeInfo,
    /// Rows of fired windows are still let through for this long (ns) after the window fired.
    pub allowed_lateness_ns: i64,
    pub schema: SchemaRef,
}

/// How a window aggregation emits beyond its one final row per group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmitConfig {
    /// `'window.allowed-lateness'`: a fired window keeps its state this long (ns of event time)
    /// and re-emits its rows as updates when late rows arrive.
    pub allowed_lateness_ns: i64,
    /// `'window.early-fire.delay'`: partial results of open windows every this long (ns of
    /// processing time), as updates.
    pub early_fire_ns: Option<i64>,
}

impl EmitConfig {
    /// True when the aggregation may correct rows it already emitted.
    pub fn is_updating(&self) -> bool {
        self.allowed_lateness_ns > 0 || self.early_fire_ns.is_some()
    }
}

/// A GROUP BY without a window: an updating result, one row per key, kept current.
#[derive(Debug, Clone)]
pub struct GroupAggregateNode {
    pub input: Box<StreamNode>,
    /// Group expressions over the input, with output names.
    pub group_exprs: Vec<(PhysExpr, String)>,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    pub filters: Vec<Option<PhysExpr>>,
    /// Output: group columns then aggregates.
    pub schema: SchemaRef,
}

/// `ROW_NUMBER() OVER (PARTITION BY .. ORDER BY ..)` filtered to the first `limit` rows:
/// deduplication (`limit` 1) and top-N, kept current as rows arrive.
#[derive(Debug, Clone)]
pub struct RankNode {
    pub input: Box<StreamNode>,
    pub partition: Vec<PhysExpr>,
    pub order: Vec<datafusion::physical_expr::PhysicalSortExpr>,
    pub limit: usize,
    /// Whether the row number is part of the output (the last column); when it is not, rows
    /// that only move within the top N are not re-emitted.
    pub output_rank: bool,
    /// Keep-last deduplication on event time: a row with the same time as the kept one
    /// replaces it (Flink's rule); otherwise earlier rows keep their place on ties.
    pub newest_wins_ties: bool,
    /// Output: the input's columns, then the row number.
    pub schema: SchemaRef,
}

/// A window aggregation (tumble, hop, cumulate or session).
#[derive(Debug, Clone)]
pub struct WindowAggregateNode {
    pub input: Box<StreamNode>,
    pub spec: WindowSpec,
    pub time: TimeInfo,
    /// Group expressions over the input, with output names.
    pub group_exprs: Vec<(PhysExpr, String)>,
    /// Positions in `group_exprs` of window_start / window_end / window_time.
    pub window_start: usize,
    pub window_end: usize,
    pub window_time: Option<usize>,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// `FILTER (WHERE ...)` per aggregate.
    pub filters: Vec<Option<PhysExpr>>,
    pub emit: EmitConfig,
    /// Output: group columns then aggregates.
    pub schema: SchemaRef,
}

/// One node of the streaming plan.
#[derive(Debug, Clone)]
pub enum StreamNode {
    Source(SourceNode),
    Filter {
        input: Box<StreamNode>,
        predicate: PhysExpr,
    },
    Project {
        input: Box<StreamNode>,
        exprs: Vec<PhysExpr>,
        schema: SchemaRef,
    },
    WindowAssign(WindowAssignNode),
    WindowAggregate(WindowAggregateNode),
    GroupAggregate(GroupAggregateNode),
    Rank(RankNode),
    Union {
        inputs: Vec<StreamNode>,
        schema: SchemaRef,
    },
    Join(JoinNode),
    TemporalJoin(TemporalJoinNode),
    LookupJoin(LookupJoinNode),
    Over(OverNode),
}

impl StreamNode {
    pub fn schema(&self) -> SchemaRef {
        match self {
            StreamNode::Source(s) => s.schema.clone(),
            StreamNode::Filter { input, .. } => input.schema(),
            StreamNode::Project { schema, .. } | StreamNode::Union { schema, .. } => schema.clone(),
            StreamNode::WindowAssign(w) => w.schema.clone(),
            StreamNode::WindowAggregate(a) => a.schema.clone(),
            StreamNode::GroupAggregate(a) => a.schema.clone(),
            StreamNode::Rank(r) => r.schema.clone(),
            StreamNode::Join(j) => j.schema.clone(),
            StreamNode::TemporalJoin(j) => j.schema.clone(),
            StreamNode::LookupJoin(j) => j.schema.clone(),
            StreamNode::Over(o) => o.schema.clone(),
        }
    }

    pub fn children(&self) -> Vec<&StreamNode> {
        match self {
            StreamNode::Source(_) => vec![],
            StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } => vec![input],
            StreamNode::WindowAssign(w) => vec![&w.input],
            StreamNode::WindowAggregate(a) => vec![&a.input],
            StreamNode::GroupAggregate(a) => vec![&a.input],
            StreamNode::Rank(r) => vec![&r.input],
            StreamNode::Union { inputs, .. } => inputs.iter().collect(),
            StreamNode::Join(j) => vec![&j.left, &j.right],
            StreamNode::TemporalJoin(j) => vec![&j.left, &j.right],
            StreamNode::LookupJoin(j) => vec![&j.left],
            StreamNode::Over(o) => vec![&o.input],
        }
    }

    pub fn children_mut(&mut self) -> Vec<&mut StreamNode> {
        match self {
            StreamNode::Source(_) => vec![],
            StreamNode::Filter { input, .. } | StreamNode::Project { input, .. } => vec![input],
            StreamNode::WindowAssign(w) => vec![&mut w.input],
            StreamNode::WindowAggregate(a) => vec![&mut a.input],
            StreamNode::GroupAggregate(a) => vec![&mut a.input],
            StreamNode::Rank(r) => vec![&mut r.input],
            StreamNode::Union { inputs, .. } => inputs.iter_mut().collect(),
            StreamNode::Join(j) => vec![&mut j.left, &mut j.right],
            StreamNode::TemporalJoin(j) => vec![&mut j.left, &mut j.right],
            StreamNode::LookupJoin(j) => vec![&mut j.left],
            StreamNode::Over(o) => vec![&mut o.input],
        }
    }

    /// The source tables this node reads.
    pub fn sources(&self) -> Vec<&SourceNode> {
        match self {
            StreamNode::Source(s) => vec![s],
            other => other
                .children()
                .into_iter()
                .flat_map(|c| c.sources())
                .collect(),
        }
    }

    /// What a checkpoint of this node's state depends on: the node and the columns it reads
    /// (for a source, the table it reads). A restore gives saved state only to a node whose
    /// layout is unchanged.
    pub fn state_layout(&self) -> String {
        let input: Vec<String> = match self {
            StreamNode::Source(s) => {
                let identity = ["topic", "topic-pattern", "path"]
                    .iter()
                    .filter_map(|k| Some(format!("{k}={}", s.table.option(k)?)))
                    .collect::<Vec<_>>();
                return format!("{} {}", self.describe(), identity.join(", "));
            }
            _ => self
                .children()
                .iter()
                .flat_map(|c| c.schema().fields().iter().cloned().collect::<Vec<_>>())
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect(),
        };
        unnumbered(&format!("{} [{}]", self.describe(), input.join(", ")))
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            StreamNode::Source(s) => describe_source(s),
            StreamNode::Filter { predicate, .. } => format!("Filter: {predicate}"),
            StreamNode::Project { exprs, schema, .. } => {
                let cols: Vec<String> = exprs
                    .iter()
                    .zip(schema.fields())
                    .map(|(e, f)| {
                        if e.to_string().starts_with(f.name()) {
                            f.name().to_string()
                        } else {
                            format!("{e} AS {}", f.name())
                        }
                    })
                    .collect();
                format!("Project: {}", cols.join(", "))
            }
            StreamNode::WindowAssign(w) => {
                format!("WindowAssign: {} on column #{}", w.spec, w.time_index)
            }
            StreamNode::WindowAggregate(a) => describe_agg(a),
            StreamNode::GroupAggregate(a) => describe_group_agg(a),
            StreamNode::Rank(r) => describe_rank(r),
            StreamNode::Union { .. } => "Union".to_string(),
            StreamNode::Join(j) => j.describe(),
            StreamNode::TemporalJoin(j) => j.describe(),
            StreamNode::LookupJoin(j) => j.describe(),
            StreamNode::Over(o) => o.describe(),
        }
    }

    /// Where each output row's event time can be read, best first: (column, ns to add). The
    /// source's rowtime carried through filters and projections, or a window result's end
    /// (`window_time` + 1 ms, `window_end`, or `window_start` + size for tumble and hop).
    /// End-to-end latency is measured from it; empty when the rows have no event time.
    pub fn event_time_columns(&self) -> Vec<(usize, i64)> {
        use crate::window_spec::WindowKind;
        use datafusion::physical_expr::expressions::Column;
        match self {
            StreamNode::Source(s) => s
                .watermark
                .as_ref()
                .and_then(|(_, rowtime)| s.projection.iter().position(|c| c == rowtime))
                .map(|i| vec![(i, 0)])
                .unwrap_or_default(),
            StreamNode::Filter { input, .. } => input.event_time_columns(),
            StreamNode::WindowAssign(w) => w.input.event_time_columns(),
            StreamNode::Rank(r) => r.input.event_time_columns(),
            StreamNode::Project { input, exprs, .. } => {
                let mut out = Vec::new();
                for (t, off) in input.event_time_columns() {
                    let found = exprs
                        .iter()
                        .position(|e| e.downcast_ref::<Column>().is_some_and(|c| c.index() == t));
                    out.extend(found.map(|i| (i, off)));
                }
                out
            }
            StreamNode::WindowAggregate(a) => {
                let mut v: Vec<(usize, i64)> =
                    a.window_time.map(|t| (t, 1_000_000)).into_iter().collect();
                v.push((a.window_end, 0));
                if let WindowKind::Tumble { size } | WindowKind::Hop { size, .. } = a.spec.kind {
                    v.push((a.window_start, size));
                }
                v
            }
            StreamNode::GroupAggregate(_) => vec![],
            StreamNode::Join(j) => j.event_time_columns(),
            StreamNode::TemporalJoin(j) => j.left.event_time_columns(),
            StreamNode::LookupJoin(j) => j.left.event_time_columns(),
            StreamNode::Over(o) => o.input.event_time_columns(),
            StreamNode::Union { inputs, .. } => {
                let Some(first) = inputs.first() else {
                    return vec![];
                };
                let mut common = first.event_time_columns();
                for i in &inputs[1..] {
                    let theirs = i.event_time_columns();
                    common.retain(|c| theirs.contains(c));
                }
                common
            }
        }
    }

    /// The best of [`StreamNode::event_time_columns`].
    pub fn event_time_column(&self) -> Option<(usize, i64)> {
        self.event_time_columns().into_iter().next()
    }

    /// True when every source the node reads ends.
    pub fn is_bounded(&self) -> bool {
        self.sources().iter().all(|s| s.table.is_bounded())
    }

    /// True when the node's output is a changelog (rows may be updated or deleted later).
    pub fn is_updating(&self) -> bool {
        match self {
            StreamNode::GroupAggregate(_) | StreamNode::Rank(_) => true,
            StreamNode::Join(j) if j.changelog => true,
            StreamNode::WindowAggregate(a) => a.emit.is_updating(),
            other => other.children().iter().any(|c| c.is_updating()),
        }
    }

    /// The output columns that identify a row of this changelog when every row leaves only
    /// through a `-D` and every `-U` is followed by its `+U` (Flink's upsert key): the group
    /// keys of a GROUP BY, or the partition of a deduplication, through projections that keep
    /// them. `None` when rows can leave otherwise (a filter over an aggregate, a top-N) or no
    /// key is known; an upsert sink then materializes the changelog.
    pub fn upsert_key(&self) -> Option<Vec<usize>> {
        use datafusion::physical_expr::expressions::Column;
        let column = |e: &PhysExpr| e.downcast_ref::<Column>().map(|c| c.index());
        match self {
            StreamNode::GroupAggregate(a) => Some((0..a.group_exprs.len()).collect()),
            StreamNode::Rank(r) if r.limit == 1 => r.partition.iter().map(column).collect(),
            StreamNode::Project { input, exprs, .. } => input
                .upsert_key()?
                .iter()
                .map(|k| exprs.iter().position(|e| column(e) == Some(*k)))
                .collect(),
            _ => None,
        }
    }

    /// An indented operator tree for EXPLAIN.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        self.explain_into(&mut out, 0);
        out
    }

    fn explain_into(&self, out: &mut String, depth: usize) {
        let _ = writeln!(out, "{}{}", "  ".repeat(depth), self.describe());
        for c in self.children() {
            c.explain_into(out, depth + 1);
        }
    }
}

/// `text` without the planner's numbered TVF aliases (`__weir_tvf_3.`), which differ from one
/// planning to the next.
fn unnumbered(text: &str) -> String {
    const ALIAS: &str = "__weir_tvf_";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(ALIAS) {
        out.push_str(&rest[..i]);
        let after = &rest[i + ALIAS.len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        rest = after[digits..]
            .strip_prefix('.')
            .unwrap_or(&after[digits..]);
    }
    out.push_str(rest);
    out
}

fn describe_source(s: &SourceNode) -> String {
    let wm = match &s.watermark_sql {
        Some(w) => format!(", watermark: {w}"),
        None => ", no watermark".to_string(),
    };
    format!(
        "Source: {} (connector={}{wm})",
        s.table.name,
        s.table.connector().unwrap_or("?")
    )
}

fn describe_agg(a: &WindowAggregateNode) -> String {
    let keys: Vec<&str> = a
        .group_exprs
        .iter()
        .enumerate()
        .filter(|(i, _)| ![a.window_start, a.window_end].contains(i) && Some(*i) != a.window_time)
        .map(|(_, (_, n))| n.as_str())
        .collect();
    let aggs: Vec<String> = a.aggregates.iter().map(|x| x.name().to_string()).collect();
    let kind = if a.spec.is_session() {
        "SessionWindowAggregate"
    } else {
        "WindowAggregate"
    };
    let mut emit = String::new();
    if a.emit.allowed_lateness_ns > 0 {
        emit += &format!(
            " allowed-lateness={}",
            format_duration(a.emit.allowed_lateness_ns)
        );
    }
    if let Some(d) = a.emit.early_fire_ns {
        emit += &format!(" early-fire={}", format_duration(d));
    }
    format!(
        "{kind}: {} keys=[{}] aggregates=[{}]{emit} state=per-window accumulators",
        a.spec,
        keys.join(", "),
        aggs.join(", ")
    )
}

fn describe_group_agg(a: &GroupAggregateNode) -> String {
    let keys: Vec<&str> = a.group_exprs.iter().map(|(_, n)| n.as_str()).collect();
    let aggs: Vec<String> = a.aggregates.iter().map(|x| x.name().to_string()).collect();
    format!(
        "GroupAggregate: keys=[{}] aggregates=[{}] emits=changelog state=per-key accumulators",
        keys.join(", "),
        aggs.join(", ")
    )
}

fn describe_rank(r: &RankNode) -> String {
    let part: Vec<String> = r.partition.iter().map(|e| e.to_string()).collect();
    let order: Vec<String> = r.order.iter().map(|e| e.to_string()).collect();
    let what = if r.limit == 1 { "Deduplicate" } else { "TopN" };
    format!(
        "{what}: partition=[{}] order=[{}] limit={} emits=changelog",
        part.join(", "),
        order.join(", "),
        r.limit
    )
}

/// A planned query: the operator tree and its output schema.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub root: StreamNode,
    pub schema: SchemaRef,
    /// The result is a changelog (`+I`/`-U`/`+U`/`-D`), not append-only rows.
    pub updating: bool,
    /// Things the user should know before running it (e.g. state that grows without a TTL).
    pub warnings: Vec<String>,
}

impl fmt::Display for StreamPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.updating {
            writeln!(f, "Result: changelog (+I, -U, +U, -D)")?;
        }
        write!(f, "{}", self.root.explain())
    }
}

/// For EXPLAIN of sources: `ts - INTERVAL '5' SECOND` as "ts - 5 s" when simple.
pub fn describe_delay(ns: i64) -> String {
    format_duration(ns)
}

#[cfg(test)]
mod tests {
    use super::unnumbered;

    /// The upsert key of `query` over `t (k STRING, f STRING, v BIGINT, ts TIMESTAMP(3))`.
    fn upsert_key(query: &str) -> Option<Vec<usize>> {
        let sql = format!(
            "CREATE TABLE t (k STRING, f STRING, v BIGINT, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts) WITH ('connector' = 'x'); {query}"
        );
        let root = crate::Planner::new().plan_script(&sql).unwrap();
        root.upsert_key()
    }

    #[test]
    fn generated_names_are_numbered_per_statement() {
        let sql = "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
                   WITH ('connector' = 'x');
                   SELECT k, AVG(v) AS a FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts),
                     INTERVAL '1' MINUTE)) GROUP BY k, window_start, window_end";
        let planner = crate::Planner::new();
        let first = planner.plan_script(sql).unwrap().explain();
        let second = planner.plan_script(sql).unwrap().explain();
        assert!(first.contains("__weir_tvf_0."), "{first}");
        assert_eq!(
            first, second,
            "the same statement plans the same, whatever came before"
        );
    }

    #[test]
    fn the_upsert_key_is_known_only_where_rows_leave_through_a_delete() {
        let by_k = "SELECT COUNT(*) AS n, k FROM t GROUP BY k";
        assert_eq!(upsert_key(by_k), Some(vec![1]));
        let two = "SELECT f, k, MAX(v) AS m FROM t GROUP BY k, f";
        assert_eq!(
            upsert_key(two).map(|mut k| {
                k.sort();
                k
            }),
            Some(vec![0, 1])
        );
        // HAVING and a WHERE over an aggregate take rows away with a lone -U.
        assert_eq!(
            upsert_key("SELECT k, COUNT(*) AS n FROM t GROUP BY k HAVING COUNT(*) < 3"),
            None
        );
        // A key computed from the group key is not the group key.
        assert_eq!(
            upsert_key("SELECT UPPER(k) AS u, COUNT(*) AS n FROM t GROUP BY k"),
            None
        );
        let dedup = "SELECT k, v FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k
                       ORDER BY ts DESC) AS rn FROM t) WHERE rn = 1";
        assert_eq!(upsert_key(dedup), Some(vec![0]));
        let top2 = "SELECT k, v FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k
                      ORDER BY v DESC) AS rn FROM t) WHERE rn <= 2";
        assert_eq!(upsert_key(top2), None);
    }

    #[test]
    fn layouts_do_not_depend_on_alias_numbers() {
        assert_eq!(
            unnumbered("aggregates=[max(__weir_tvf_12.t), count(x)] [__weir_tvf_3]"),
            "aggregates=[max(t), count(x)] []"
        );
    }
}
