//! What a restored exactly-once Kafka sink inherits: every subtask of the checkpoint it
//! restarts from, with its transactional id, state directory and sealed intervals.
//!
//! The sink runs one subtask per subtask of its input, each with its own transactional id
//! (`<prefix>-sink-<n>.<subtask>`, or `<prefix>-sink-<n>` for one) and state directory. A
//! restore, at the same parallelism or another, is finished by the first subtask alone, in
//! order, as a sink of one task would: when it opens (before any subtask runs) it fences every
//! old transactional id, so no transaction of the crashed run is still open; when it first
//! runs it publishes each old subtask's intervals, skipping the rows the crashed run already
//! committed (recognised by the old subtask's `weir.txn` marker). No other subtask touches
//! Kafka until a checkpoint completes, which waits for the first one's recovery, so no
//! transaction of the new run overlaps the recovery scans. Each subtask clears the files of its
//! own directory that the checkpoint does not refer to; the first also clears old directories
//! no subtask owns now.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::producer::Producer;
use rdkafka::ClientConfig;
use weir_engine::connector::SinkContext;
use weir_engine::Result;

use super::transactional::{err, parse_pending, Pending};
use super::KafkaOptions;

/// A subtask of the restored checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct OldSubtask {
    /// Its transactional id (the `weir.txn` marker of its records).
    pub(super) txn_id: String,
    /// Its state directory.
    pub(super) dir: PathBuf,
    /// Its sealed intervals waiting for their commit.
    pub(super) pending: Vec<Pending>,
}

/// The state directory leaf of subtask `index` of `count` of the sink whose one-task leaf is
/// `base` (the checkpoint's task names: `sink-2`, `sink-2.0`, ...).
fn leaf(base: &str, index: usize, count: usize) -> String {
    match count {
        1 => base.to_string(),
        _ => format!("{base}.{index}"),
    }
}

/// This sink's one-task leaf (`sink-2` for `sink-2.1`) and the directory holding every
/// subtask's directory.
fn base_and_parent<'a>(ctx: &SinkContext, dir: &'a Path) -> (String, &'a Path) {
    let own = dir
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().to_string());
    let base = match ctx.subtask.count {
        1 => own.as_str(),
        _ => own.rsplit_once('.').map_or(own.as_str(), |(b, _)| b),
    };
    (base.to_string(), dir.parent().unwrap_or(dir))
}

/// Every subtask of the restored checkpoint, by index (none without a restore). This sink's
/// state directory is `dir`; `prefix` is its transactional ids' prefix.
pub(super) fn old_subtasks(ctx: &SinkContext, prefix: &str, dir: &Path) -> Result<Vec<OldSubtask>> {
    let Some(r) = &ctx.restore else {
        return Ok(Vec::new());
    };
    if r.subtasks.is_empty() {
        // One subtask restored as one: its own snapshot.
        let own = dir.file_name().map(|n| n.to_string_lossy().to_string());
        return Ok(vec![OldSubtask {
            txn_id: format!("{prefix}-{}", own.unwrap_or_default()),
            dir: dir.to_path_buf(),
            pending: parse_pending(&r.pending)?,
        }]);
    }
    let (base, parent) = base_and_parent(ctx, dir);
    let n = r.subtasks.len();
    let old = r.subtasks.iter().enumerate().map(|(i, text)| {
        let leaf = leaf(&base, i, n);
        Ok(OldSubtask {
            txn_id: format!("{prefix}-{leaf}"),
            dir: parent.join(&leaf),
            pending: parse_pending(text)?,
        })
    });
    old.collect()
}

/// The state directories of the sink's subtasks now.
pub(super) fn current_dirs(ctx: &SinkContext, dir: &Path) -> HashSet<PathBuf> {
    let (base, parent) = base_and_parent(ctx, dir);
    let n = ctx.subtask.count;
    (0..n).map(|i| parent.join(leaf(&base, i, n))).collect()
}

/// The files the restored checkpoint's intervals are in: kept until they are published.
pub(super) fn referenced(old: &[OldSubtask]) -> HashSet<PathBuf> {
    old.iter()
        .flat_map(|o| o.pending.iter().map(|p| p.file.clone()))
        .collect()
}

/// Remove the files of `dir` other than `keep` (a missing directory has none): a crashed run's
/// open interval, and intervals of checkpoints that never completed.
pub(super) fn clear_dir(dir: &Path, keep: &HashSet<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !keep.contains(&e.path()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Abort the open transactions of the restored checkpoint's producers (the crashed run's) by
/// initialising their transactional ids. The first subtask does it when it opens, before any
/// subtask runs, so no producer of the new run is fenced.
pub(super) fn fence_all(ctx: &SinkContext, old: &[OldSubtask], timeout: Duration) -> Result<()> {
    let options = KafkaOptions::parse(&ctx.table).map_err(err)?;
    for o in old {
        let mut config: ClientConfig = options.client_config();
        config.set("transactional.id", &o.txn_id);
        let producer: rdkafka::producer::BaseProducer = config.create().map_err(err)?;
        producer.init_transactions(timeout).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::datatypes::DataType;
    use weir_engine::checkpoint::{pending, TaskSlot};
    use weir_engine::connector::SinkRestore;

    use super::*;

    /// A sink context restored from a checkpoint whose sink ran as `count` subtasks.
    fn restored(count: usize) -> SinkContext {
        let t = crate::test_util::table(&[("connector", "kafka")], &[("v", DataType::Int64)]);
        let mut ctx = crate::test_util::sink_ctx(t, &[]);
        let snapshot = |i: usize| {
            let p = Pending {
                checkpoint: 7,
                file: PathBuf::from(format!("/ck/sinks/sink-2.{i}/00000007.arrow")),
                from: BTreeMap::new(),
            };
            pending::write(&[p]).unwrap()
        };
        ctx.restore = Some(SinkRestore {
            checkpoint: 7,
            pending: String::new(),
            subtasks: (0..count).map(snapshot).collect(),
        });
        ctx
    }

    fn ids_and_dirs(old: &[OldSubtask]) -> Vec<(String, PathBuf)> {
        old.iter()
            .map(|o| (o.txn_id.clone(), o.dir.clone()))
            .collect()
    }

    #[test]
    fn every_old_subtask_is_found_under_its_own_transactional_id_and_directory() {
        let mut ctx = restored(2);
        ctx.subtask = TaskSlot { index: 0, count: 4 };
        let old = old_subtasks(&ctx, "p", Path::new("/ck/sinks/sink-2.0")).unwrap();
        let want = [
            ("p-sink-2.0".into(), "/ck/sinks/sink-2.0".into()),
            ("p-sink-2.1".into(), "/ck/sinks/sink-2.1".into()),
        ];
        assert_eq!(ids_and_dirs(&old), want);
        assert_eq!(referenced(&old).len(), 2);
        let mut ctx = restored(4);
        ctx.subtask = TaskSlot::SINGLE;
        let old = old_subtasks(&ctx, "p", Path::new("/ck/sinks/sink-2")).unwrap();
        let ids: Vec<String> = old.iter().map(|o| o.txn_id.clone()).collect();
        assert_eq!(
            ids,
            ["p-sink-2.0", "p-sink-2.1", "p-sink-2.2", "p-sink-2.3"]
        );
        let now = current_dirs(&ctx, Path::new("/ck/sinks/sink-2"));
        assert_eq!(now, HashSet::from([PathBuf::from("/ck/sinks/sink-2")]));
    }

    #[test]
    fn one_subtask_restored_as_one_has_its_own_snapshot() {
        let mut ctx = restored(0);
        let p = Pending {
            checkpoint: 3,
            file: PathBuf::from("/ck/sinks/sink-1/3.arrow"),
            from: BTreeMap::new(),
        };
        ctx.restore.as_mut().unwrap().pending = pending::write(&[p]).unwrap();
        let old = old_subtasks(&ctx, "w", Path::new("/ck/sinks/sink-1")).unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].txn_id, "w-sink-1");
        assert_eq!(old[0].pending[0].checkpoint, 3);
        ctx.restore = None;
        assert!(old_subtasks(&ctx, "w", Path::new("/x")).unwrap().is_empty());
    }

    #[test]
    fn clearing_a_directory_keeps_the_files_still_to_publish() {
        let dir = std::env::temp_dir().join(format!("weir-handover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["epoch.arrow", "00000007.arrow", "00000008.arrow"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        clear_dir(&dir, &HashSet::from([dir.join("00000007.arrow")]));
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].path(), dir.join("00000007.arrow"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
