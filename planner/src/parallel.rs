//! Data parallelism: how many subtasks run each plan node, and how rows travel between them.
//!
//! Every node runs as one or more subtasks. A keyed operator (GROUP BY keys, join keys,
//! PARTITION BY) reads its input through a hash exchange: each row's key is hashed into one of
//! `max_parallelism` key groups, and subtask `i` of `p` owns the contiguous range of key groups
//! `g` with `g * p / max_parallelism == i` (Flink's rule), so every row of a key meets the same
//! subtask and a later run can re-split the same key groups over another number of subtasks.
//! Stateless operators run beside their input (forward); an operator without keys runs once
//! (single). The decisions are pure functions of the plan and the configuration, so EXPLAIN
//! shows exactly what runs.

use std::fmt::Write;
use std::ops::Range;

use crate::stream_plan::{PhysExpr, SourceNode, StreamNode};

/// `parallelism.default` when a job does not set it: one subtask per core.
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `pipeline.max-parallelism` when a job does not set it: the number of key groups.
pub const DEFAULT_MAX_PARALLELISM: usize = 128;

/// The largest `pipeline.max-parallelism` (key groups are numbered in 15 bits, as Flink's).
pub const MAX_KEY_GROUPS: usize = 32_768;

/// How parallel a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParallelConfig {
    /// Subtasks of each keyed operator (`parallelism.default`).
    pub parallelism: usize,
    /// Key groups (`pipeline.max-parallelism`): the most subtasks a keyed operator can have.
    pub max_parallelism: usize,
    /// Whether window aggregations behind a hash exchange pre-aggregate each batch before it
    /// (`table.optimizer.agg-phase-strategy`; one phase with a `table.exec.late-data.sink`,
    /// since late rows must reach it whole).
    pub agg_phase: AggPhase,
    /// Whether stateless operators run inside their input's task (`pipeline.operator-chaining`,
    /// Flink's option; on by default).
    pub chaining: bool,
}

/// `table.optimizer.agg-phase-strategy`, as Flink names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggPhase {
    /// Two phases where every aggregate merges exactly (results are then the same as one
    /// phase's to the last digit): COUNT, MIN and MAX, and SUM and AVG of exact numbers.
    Auto,
    /// Never pre-aggregate.
    OnePhase,
    /// Pre-aggregate wherever it applies; sums of `DOUBLE` may then differ in the last digits
    /// with the batching.
    TwoPhase,
}

impl Default for ParallelConfig {
    fn default() -> Self {
        Self {
            parallelism: 1,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            agg_phase: AggPhase::Auto,
            chaining: true,
        }
    }
}

impl ParallelConfig {
    /// Read `parallelism.default` and `pipeline.max-parallelism` from the session's options.
    pub fn from_settings(
        settings: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let number = |key: &str, default: usize| -> Result<usize, String> {
            match settings.get(key) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) if n >= 1 => Ok(n),
                    _ => Err(format!(
                        "'{key}' must be a whole number of at least 1, not '{v}'"
                    )),
                },
            }
        };
        let max_parallelism = number("pipeline.max-parallelism", DEFAULT_MAX_PARALLELISM)?;
        if max_parallelism > MAX_KEY_GROUPS {
            return Err(format!(
                "'pipeline.max-parallelism' is at most {MAX_KEY_GROUPS}, not {max_parallelism}"
            ));
        }
        // One subtask per core, but never more than there are key groups unless asked for.
        let cores = default_parallelism().min(max_parallelism);
        let parallelism = number("parallelism.default", cores)?;
        if parallelism > max_parallelism {
            return Err(format!(
                "'parallelism.default' ({parallelism}) is more than 'pipeline.max-parallelism' \
                 ({max_parallelism}): each subtask needs at least one key group"
            ));
        }
        Ok(Self {
            parallelism,
            max_parallelism,
            agg_phase: agg_phase(settings)?,
            chaining: flag(settings, OPERATOR_CHAINING, true)?,
        })
    }

    /// The key group a key hash falls into.
    pub fn key_group(&self, hash: u64) -> usize {
        (hash % self.max_parallelism as u64) as usize
    }

    /// The subtask (of `p`) owning key group `group`.
    pub fn subtask_of(&self, group: usize, p: usize) -> usize {
        group * p / self.max_parallelism
    }

    /// The contiguous key groups subtask `i` of `p` owns.
    pub fn key_groups_of(&self, i: usize, p: usize) -> Range<usize> {
        let max = self.max_parallelism;
        // The smallest g with g * p / max >= i, for i and i + 1.
        let first = |i: usize| (i * max).div_ceil(p);
        first(i)..first(i + 1)
    }
}

/// `table.optimizer.agg-phase-strategy` (Flink's option): `AUTO` (the default), `ONE_PHASE` or
/// `TWO_PHASE`. A job with a late-data sink runs one phase, so that a row the global step finds
/// late can be written there whole.
fn agg_phase(settings: &std::collections::BTreeMap<String, String>) -> Result<AggPhase, String> {
    let strategy = settings
        .get(AGG_PHASE_STRATEGY)
        .map(|v| v.trim().to_ascii_uppercase());
    let phase = match strategy.as_deref() {
        None | Some("AUTO") => AggPhase::Auto,
        Some("TWO_PHASE") => AggPhase::TwoPhase,
        Some("ONE_PHASE") => AggPhase::OnePhase,
        Some(other) => {
            return Err(format!(
                "'{AGG_PHASE_STRATEGY}' is AUTO, ONE_PHASE or TWO_PHASE, not '{other}'"
            ))
        }
    };
    match settings.contains_key("table.exec.late-data.sink") {
        true => Ok(AggPhase::OnePhase),
        false => Ok(phase),
    }
}

/// Whether every aggregate of `a` merges partial states exactly, whatever the grouping of
/// rows into partial states: COUNT, MIN and MAX always, SUM and AVG when their state holds no
/// rounded floating-point number. Weir's SUM and AVG of `DOUBLE` keep exact sums (their state
/// is a count and a list of partials, [`crate::exact_aggs`]), so they qualify; a UDAF's
/// `DOUBLE` sum state would depend on the order of additions.
fn merges_exactly(a: &crate::stream_plan::WindowAggregateNode) -> bool {
    use datafusion::arrow::datatypes::DataType;
    a.aggregates.iter().all(|agg| {
        let name = agg.fun().name().to_ascii_lowercase();
        let float = agg.state_fields().map_or(true, |fields| {
            fields.iter().any(|f| {
                matches!(
                    f.data_type(),
                    DataType::Float16 | DataType::Float32 | DataType::Float64
                )
            })
        });
        match name.as_str() {
            "count" | "min" | "max" => true,
            "sum" | "avg" => !float,
            _ => false,
        }
    })
}

/// The option turning operator chaining off (`false`), as Flink's.
pub const OPERATOR_CHAINING: &str = "pipeline.operator-chaining";

/// A `true`/`false` option; `default` when it is not set.
fn flag(
    settings: &std::collections::BTreeMap<String, String>,
    key: &str,
    default: bool,
) -> Result<bool, String> {
    match settings.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => Err(format!("'{key}' is true or false, not '{v}'")),
    }
}

/// The option choosing whether aggregations pre-aggregate before their exchange.
pub const AGG_PHASE_STRATEGY: &str = "table.optimizer.agg-phase-strategy";

/// How rows travel from an input's subtasks to an operator's subtasks.
#[derive(Debug, Clone)]
pub enum Exchange {
    /// Subtask `i` of the input feeds subtask `i` (same parallelism, no shuffle).
    Forward,
    /// Each row goes to the subtask owning its key's key group.
    Hash(Vec<PhysExpr>),
    /// Every input subtask feeds the operator's one subtask.
    Single,
    /// Whole batches are dealt to the operator's subtasks in turn (no key to respect).
    Rebalance,
}

impl Exchange {
    /// The EXPLAIN text; `None` for a forward exchange, which is not shown.
    fn describe(&self) -> Option<String> {
        match self {
            Exchange::Forward => None,
            Exchange::Hash(keys) => {
                let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
                Some(format!("hash [{}]", keys.join(", ")))
            }
            Exchange::Single => Some("single".into()),
            Exchange::Rebalance => Some("rebalance".into()),
        }
    }
}

/// How many subtasks can read a source table; the engine answers from its connectors (Kafka
/// partitions and the datagen sequence are split, a file is read by one task).
pub trait SourceSplits {
    /// The most subtasks that can share the reading of `source` (1: it is read as one).
    fn splits(&self, source: &SourceNode) -> usize;
}

/// Every source is read by one task.
pub struct Unsplit;

impl SourceSplits for Unsplit {
    fn splits(&self, _source: &SourceNode) -> usize {
        1
    }
}

/// The parallel shape of a plan: the configuration and the sources' splits.
#[derive(Clone, Copy)]
pub struct Shape<'a> {
    pub config: ParallelConfig,
    pub sources: &'a dyn SourceSplits,
}

impl Shape<'_> {
    /// How many subtasks run `node`.
    pub fn parallelism(&self, node: &StreamNode) -> usize {
        let p = self.config.parallelism;
        match node {
            StreamNode::Source(s) => self.sources.splits(s).clamp(1, p),
            StreamNode::Union { inputs, .. } => inputs
                .iter()
                .map(|i| self.parallelism(i))
                .max()
                .unwrap_or(1),
            _ => match keys(node, 0) {
                Some(k) if k.is_empty() => 1,
                Some(_) => p,
                None => node.children().first().map_or(1, |c| self.parallelism(c)),
            },
        }
    }

    /// How input `i` of `node` reaches its subtasks.
    pub fn exchange(&self, node: &StreamNode, i: usize) -> Exchange {
        let input = node.children()[i];
        let (mine, theirs) = (self.parallelism(node), self.parallelism(input));
        match keys(node, i) {
            Some(k) if !k.is_empty() && mine > 1 => Exchange::Hash(k),
            _ if mine == theirs => Exchange::Forward,
            _ if mine == 1 => Exchange::Single,
            _ => Exchange::Rebalance,
        }
    }

    /// Whether `node` is a window aggregation whose input subtasks pre-aggregate each batch
    /// before the hash exchange (local-global): TUMBLE, HOP or CUMULATE, results that are
    /// final (no allowed lateness or early firing), and no late-data topic on its sources,
    /// since late rows folded into partial rows could not be written out.
    pub fn pre_aggregates(&self, node: &StreamNode) -> bool {
        let StreamNode::WindowAggregate(a) = node else {
            return false;
        };
        let wanted = match self.config.agg_phase {
            AggPhase::OnePhase => false,
            AggPhase::TwoPhase => true,
            AggPhase::Auto => merges_exactly(a),
        };
        wanted
            && !a.spec.is_session()
            && !a.emit.is_updating()
            && matches!(self.exchange(node, 0), Exchange::Hash(_))
            && node
                .sources()
                .iter()
                .all(|s| s.table.option("late-data.topic").is_none())
    }

    /// Whether `node` runs inside its input's task (operator chaining): a stateless operator
    /// (filter, projection, window assignment) whose one input comes forward.
    pub fn chains(&self, node: &StreamNode) -> bool {
        let stateless = matches!(
            node,
            StreamNode::Filter { .. } | StreamNode::Project { .. } | StreamNode::WindowAssign(_)
        );
        self.config.chaining && stateless && matches!(self.exchange(node, 0), Exchange::Forward)
    }

    /// EXPLAIN's operator tree with each node's parallelism and the exchanges between them.
    pub fn explain(&self, root: &StreamNode) -> String {
        let mut out = String::new();
        self.explain_into(root, &mut out, 0);
        out
    }

    /// EXPLAIN of a sink (`header`) fed by `root`'s subtasks: one task behind a single
    /// exchange, or with `parallel` one subtask per subtask of `root`.
    pub fn explain_sink(&self, header: &str, root: &StreamNode, parallel: bool) -> String {
        let p = self.parallelism(root);
        if parallel && p > 1 {
            let mut out = format!("{header} [parallelism {p}]\n");
            self.explain_into(root, &mut out, 1);
            return out;
        }
        let mut out = format!("{header} [parallelism 1]\n");
        match p {
            1 => self.explain_into(root, &mut out, 1),
            _ => {
                out.push_str("  Exchange: single\n");
                self.explain_into(root, &mut out, 2);
            }
        }
        out
    }

    fn explain_into(&self, node: &StreamNode, out: &mut String, depth: usize) {
        let pad = "  ".repeat(depth);
        let p = self.parallelism(node);
        let _ = writeln!(out, "{pad}{} [parallelism {p}]", node.describe());
        for (i, c) in node.children().into_iter().enumerate() {
            match self.exchange(node, i).describe() {
                Some(e) if self.pre_aggregates(node) => {
                    let _ = writeln!(out, "{pad}  Exchange: {e}");
                    let q = self.parallelism(c);
                    let _ = writeln!(out, "{pad}    LocalWindowAggregate [parallelism {q}]");
                    self.explain_into(c, out, depth + 3);
                }
                Some(e) => {
                    let _ = writeln!(out, "{pad}  Exchange: {e}");
                    self.explain_into(c, out, depth + 2);
                }
                None => self.explain_into(c, out, depth + 1),
            }
        }
    }
}

/// The keys input `i` of a keyed operator is partitioned by (empty: the operator has no key
/// and runs once); `None` for an operator that is not keyed.
pub fn keys(node: &StreamNode, i: usize) -> Option<Vec<PhysExpr>> {
    match node {
        StreamNode::WindowAggregate(a) => Some(
            a.group_exprs
                .iter()
                .enumerate()
                .filter(|(j, _)| {
                    ![a.window_start, a.window_end].contains(j) && Some(*j) != a.window_time
                })
                .map(|(_, (e, _))| e.clone())
                .collect(),
        ),
        StreamNode::GroupAggregate(a) => {
            Some(a.group_exprs.iter().map(|(e, _)| e.clone()).collect())
        }
        StreamNode::Rank(r) => Some(r.partition.clone()),
        StreamNode::Over(o) => Some(o.partition.clone()),
        StreamNode::Join(j) => Some(match i {
            0 => j.left_keys.clone(),
            _ => j.right_keys.clone(),
        }),
        StreamNode::TemporalJoin(j) => Some(match i {
            0 => j.left_keys.clone(),
            _ => j.right_keys.clone(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(p: usize, max: usize) -> ParallelConfig {
        ParallelConfig {
            parallelism: p,
            max_parallelism: max,
            agg_phase: AggPhase::Auto,
            chaining: true,
        }
    }

    #[test]
    fn each_subtask_owns_a_contiguous_range_and_every_group_has_one_owner() {
        for max in [1, 7, 128, 1000] {
            for p in 1..=max.min(20) {
                let c = config(p, max);
                let mut next = 0;
                for i in 0..p {
                    let r = c.key_groups_of(i, p);
                    assert_eq!(r.start, next, "p={p} max={max} subtask {i}");
                    assert!(!r.is_empty(), "p={p} max={max}: subtask {i} owns no group");
                    for g in r.clone() {
                        assert_eq!(c.subtask_of(g, p), i);
                    }
                    next = r.end;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn settings_are_checked() {
        let s = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let c = ParallelConfig::from_settings(&s(&[("parallelism.default", "4")])).unwrap();
        assert_eq!(c, config(4, 128));
        let one = ParallelConfig::from_settings(&s(&[(AGG_PHASE_STRATEGY, "one_phase")])).unwrap();
        assert_eq!(one.agg_phase, AggPhase::OnePhase);
        let late = s(&[("table.exec.late-data.sink", "late")]);
        assert_eq!(
            ParallelConfig::from_settings(&late).unwrap().agg_phase,
            AggPhase::OnePhase
        );
        let e = ParallelConfig::from_settings(&s(&[(AGG_PHASE_STRATEGY, "three")])).unwrap_err();
        assert!(e.contains("ONE_PHASE"), "{e}");
        let e = ParallelConfig::from_settings(&s(&[("parallelism.default", "0")])).unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
        let e = ParallelConfig::from_settings(&s(&[
            ("parallelism.default", "8"),
            ("pipeline.max-parallelism", "4"),
        ]))
        .unwrap_err();
        assert!(e.contains("key group"), "{e}");
    }
}
