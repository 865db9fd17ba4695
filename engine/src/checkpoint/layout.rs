//! What a checkpoint was taken of, and what changed since: each sink's query, each source
//! table's options and each task's state layout, by name. A restore into a changed job is
//! refused with these differences; `--allow-changed-query` restores only the tasks whose
//! layout is unchanged. Pure code, tested without a job.

use std::collections::BTreeMap;
use std::fmt;

/// Entries that describe the job rather than one task.
const JOB_PREFIXES: [&str; 3] = ["query ", "table ", "job "];

/// The entry of the job's parallelism and key groups: a checkpoint restores at another
/// parallelism (its subtasks' state divided anew), but only with the same key groups.
pub const PARALLELISM: &str = "job parallelism";

/// Whether `name` is a task (`source-0`, `op-2`, `sink-1`) rather than a job entry.
pub fn is_task(name: &str) -> bool {
    !JOB_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The job's entries, known before it is built: each sink's query (whitespace runs collapsed,
/// so re-indenting a job file changes nothing) and each table it reads or writes (columns and
/// options).
pub(crate) fn job_layouts(
    inserts: &[crate::session::statements::PlannedInsert],
    parallel: weir_planner::parallel::ParallelConfig,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert(PARALLELISM.to_string(), parallelism_layout(parallel));
    for i in inserts {
        let query = i.query_sql.split_whitespace().collect::<Vec<_>>().join(" ");
        out.insert(format!("query {}", i.table.name), query);
        out.insert(format!("table {}", i.table.name), table_layout(&i.table));
        for s in i.plan.root.sources() {
            out.insert(format!("table {}", s.table.name), table_layout(&s.table));
        }
    }
    out
}

fn parallelism_layout(p: weir_planner::parallel::ParallelConfig) -> String {
    format!(
        "{} subtasks, {} key groups",
        p.parallelism, p.max_parallelism
    )
}

/// The key groups of a [`PARALLELISM`] entry.
fn key_groups(entry: &str) -> Option<&str> {
    entry.split_once(", ").map(|(_, groups)| groups)
}

/// Refuse, even with `--allow-changed-query`, a restore with other key groups
/// (`pipeline.max-parallelism`) than the checkpoint's: keyed state is divided by key group.
/// Another parallelism is fine. (A checkpoint from before parallelism was recorded was taken
/// with the default key groups.)
pub fn check_key_groups(
    r: &super::CheckpointMeta,
    job: &BTreeMap<String, String>,
    dir: &std::path::Path,
) -> crate::error::Result<()> {
    let default = || parallelism_layout(weir_planner::parallel::ParallelConfig::default());
    let was = r.layouts.get(PARALLELISM).cloned().unwrap_or_else(default);
    let now = job.get(PARALLELISM).cloned().unwrap_or_default();
    if r.layouts.is_empty() || key_groups(&was) == key_groups(&now) {
        return Ok(());
    }
    Err(crate::error::EngineError::State(format!(
        "checkpoint {} in '{}' was taken with {was}; this job runs with {now}. Keyed state is \
         kept by key group, so 'pipeline.max-parallelism' must stay as it was; use a new \
         checkpoint directory to change it",
        r.id,
        dir.display()
    )))
}

/// A task name's node and subtask: `op-2.1` is subtask 1 of `op-2`; `op-2` is the node's
/// only task.
pub fn node_of(name: &str) -> (&str, Option<usize>) {
    match name.rsplit_once('.') {
        Some((node, i)) if is_task(name) => match i.parse() {
            Ok(i) => (node, Some(i)),
            Err(_) => (name, None),
        },
        _ => (name, None),
    }
}

/// Layouts with each node's subtasks as one entry (its subtasks share one layout), for
/// comparing jobs at different parallelism.
pub fn by_node(layouts: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    layouts
        .iter()
        .map(|(n, l)| (node_of(n).0.to_string(), l.clone()))
        .collect()
}

fn table_layout(t: &weir_planner::TableDef) -> String {
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("{} {}", c.name, c.sql_type))
        .collect();
    let opts: Vec<String> = t.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("({}) WITH ({})", cols.join(", "), opts.join(", "))
}

/// A job's fingerprint: a hash of its layouts.
pub fn fingerprint_of(layouts: &BTreeMap<String, String>) -> String {
    let text: Vec<String> = layouts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    super::fingerprint(&text.join("\n"))
}

/// One difference between a checkpoint's layouts and the job's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The entry (`query out`, `table t`, `op-2`).
    pub name: String,
    /// Its layout in the checkpoint (`None`: new since).
    pub was: Option<String>,
    /// Its layout now (`None`: gone).
    pub now: Option<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        match (&self.was, &self.now) {
            (Some(was), Some(now)) => write!(f, "{name}: was `{was}`, now `{now}`"),
            (None, Some(now)) => write!(f, "{name} is new: `{now}`"),
            (Some(was), None) => write!(f, "{name} is gone: `{was}`"),
            (None, None) => write!(f, "{name}"),
        }
    }
}

/// The differences between `old` and `new` among the names `keep` selects.
pub fn changes(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    keep: impl Fn(&str) -> bool,
) -> Vec<Change> {
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|n| keep(n))
        .filter(|n| old.get(*n) != new.get(*n))
        .map(|n| Change {
            name: n.clone(),
            was: old.get(n).cloned(),
            now: new.get(n).cloned(),
        })
        .collect()
}

/// The refusal message for a restore into a changed job.
pub fn refusal(dir: &str, id: u64, changes: &[Change]) -> String {
    let list: Vec<String> = changes.iter().map(|c| format!("  - {c}")).collect();
    format!(
        "checkpoint directory '{dir}' holds checkpoint {id} of a different job:\n{}\nuse a new \
         directory, or --allow-changed-query to restore the operators whose state still fits \
         (the others start empty)",
        list.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn subtasks_of_a_node_compare_as_the_node() {
        assert_eq!(node_of("op-2.1"), ("op-2", Some(1)));
        assert_eq!(node_of("op-2"), ("op-2", None));
        assert_eq!(node_of("table db.t"), ("table db.t", None));
        let at2 = map(&[("op-2.0", "W"), ("op-2.1", "W"), ("sink-3", "out")]);
        let at1 = map(&[("op-2", "W"), ("sink-3", "out")]);
        assert_eq!(by_node(&at2), at1);
        assert!(changes(&by_node(&at2), &by_node(&at1), is_task).is_empty());
        let meta = |p: &str| super::super::CheckpointMeta {
            id: 3,
            fingerprint: String::new(),
            finished: false,
            snapshots: BTreeMap::new(),
            layouts: map(&[(PARALLELISM, p)]),
        };
        let job = map(&[(PARALLELISM, "4 subtasks, 128 key groups")]);
        let dir = std::path::Path::new("/ck");
        assert!(check_key_groups(&meta("2 subtasks, 128 key groups"), &job, dir).is_ok());
        let err = check_key_groups(&meta("2 subtasks, 64 key groups"), &job, dir).unwrap_err();
        assert!(
            err.to_string().contains("'pipeline.max-parallelism'"),
            "{err}"
        );
    }

    #[test]
    fn job_entries_and_tasks_are_compared_apart() {
        let old = map(&[
            ("query out", "SELECT a FROM t"),
            ("table t", "connector=kafka, topic=a"),
            ("op-1", "GroupAggregate: k [k Utf8]"),
            ("sink-0", "out"),
        ]);
        let new = map(&[
            ("query out", "SELECT a FROM t WHERE a > 1"),
            ("table t", "connector=kafka, topic=a"),
            ("op-1", "GroupAggregate: k, j [k Utf8, j Int64]"),
            ("op-2", "WindowAggregate"),
        ]);
        let job = changes(&old, &new, |n| !is_task(n));
        assert_eq!(job.len(), 1);
        assert!(job[0]
            .to_string()
            .starts_with("query out: was `SELECT a FROM t`"));
        let tasks = changes(&old, &new, is_task);
        let shown: Vec<String> = tasks.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            [
                "op-1: was `GroupAggregate: k [k Utf8]`, now `GroupAggregate: k, j [k Utf8, j Int64]`",
                "op-2 is new: `WindowAggregate`",
                "sink-0 is gone: `out`",
            ]
        );
        assert!(changes(&old, &old, |_| true).is_empty());
        assert!(refusal("/ck", 7, &tasks).contains("checkpoint 7 of a different job:\n  - op-1"));
    }
}
