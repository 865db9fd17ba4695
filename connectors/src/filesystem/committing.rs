//! The exactly-once filesystem sink of a checkpointing job (Flink's `FileSink` idea).
//!
//! Rows go to a hidden in-progress file (`.part-<run>-<n>.<ext>.inprogress`) in the `path`
//! directory. A checkpoint barrier closes and syncs it and records it as pending; when the
//! checkpoint completes it is renamed to `part-<checkpoint>-<n>.<ext>`, which is the moment its
//! rows become visible. After a crash the restarted sink renames what the restored checkpoint
//! had pending (if the crash beat the rename) and deletes every other in-progress file: those
//! rows come again from the replayed input.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use weir_engine::checkpoint::pending;
use weir_engine::connector::{Sink, SinkContext};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};

use super::sink::encode_rows;
use super::{FileOptions, Format, NAME};

const IN_PROGRESS: &str = ".inprogress";

/// A file closed at a barrier, waiting for its checkpoint to complete.
/// Version 1 wrote it as `[checkpoint, in_progress, done]`; serde reads a struct from an
/// array in field order, so both forms read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) checkpoint: u64,
    /// The in-progress file's name (relative to the sink's directory).
    pub(crate) in_progress: String,
    /// The name it is renamed to when the checkpoint completes.
    pub(crate) done: String,
}

pub(super) struct CommittingSink {
    ctx: SinkContext,
    options: FileOptions,
    tz: Option<Tz>,
    dir: PathBuf,
    ext: &'static str,
    /// Distinguishes this run's in-progress files from an earlier run's.
    run: String,
    seq: u64,
    current: Option<(String, BufWriter<File>)>,
    pending: Vec<Pending>,
    scratch: Vec<u8>,
}

/// `-<subtask>` in the file names of a sink that runs as several subtasks; nothing for one.
fn subtask_tag(ctx: &SinkContext) -> String {
    match ctx.subtask.count {
        1 => String::new(),
        _ => format!("-{}", ctx.subtask.index),
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> EngineError {
    EngineError::connector(NAME, format!("cannot {what} '{}': {e}", path.display()))
}

impl CommittingSink {
    pub(super) fn open(ctx: SinkContext, options: FileOptions, tz: Option<Tz>) -> Result<Self> {
        let dir = options.local_path();
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
        let ext = match options.format {
            Format::Json => "jsonl",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        };
        let restored = ctx.restore.as_ref().map_or(0, |r| r.checkpoint);
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let mut me = Self {
            run: format!("{restored}-{nanos:x}{}", subtask_tag(&ctx)),
            ctx,
            options,
            tz,
            dir,
            ext,
            seq: 0,
            current: None,
            pending: Vec::new(),
            scratch: Vec::new(),
        };
        me.recover()?;
        Ok(me)
    }

    /// Publish what the restored checkpoint had pending, and drop every other in-progress file.
    /// The subtasks of a sink share its directory: the first publishes every subtask's files
    /// (the sink's subtasks open one after another, the first first, before any writes), so
    /// whichever deletes in-progress files finds only those no checkpoint refers to.
    fn recover(&mut self) -> Result<()> {
        if let Some(r) = self.ctx.restore.clone() {
            self.pending = parse_pending(&r.pending)?;
            if self.ctx.subtask.index == 0 {
                for s in &r.subtasks {
                    self.pending.extend(parse_pending(s)?);
                }
            }
            self.commit_up_to(r.checkpoint)?;
        }
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_err("list", &self.dir, e))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(".part-") && name.ends_with(IN_PROGRESS) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.scratch.clear();
        let header = self.options.csv.ignore_first_line && self.current.is_none();
        encode_rows(&self.options, self.tz, header, batch, &mut self.scratch)?;
        if self.current.is_none() {
            self.seq += 1;
            let name = format!(".part-{}-{}.{}{IN_PROGRESS}", self.run, self.seq, self.ext);
            let path = self.dir.join(&name);
            let f = File::create(&path).map_err(|e| io_err("create", &path, e))?;
            self.current = Some((name, BufWriter::with_capacity(1 << 20, f)));
        }
        let (name, out) = self.current.as_mut().expect("open");
        out.write_all(&self.scratch)
            .map_err(|e| io_err("write", &self.dir.join(name.as_str()), e))?;
        JobMetrics::add(&self.ctx.metrics.rows_out, batch.num_rows());
        Ok(())
    }

    /// Close and sync the in-progress file; it becomes pending for `checkpoint`.
    fn pre_commit_now(&mut self, checkpoint: u64) -> Result<String> {
        if let Some((name, out)) = self.current.take() {
            let path = self.dir.join(&name);
            let f = out
                .into_inner()
                .map_err(|e| io_err("write", &path, e.into_error()))?;
            f.sync_all().map_err(|e| io_err("sync", &path, e))?;
            let tag = subtask_tag(&self.ctx);
            let done = format!("part-{checkpoint:08}{tag}-{}.{}", self.seq, self.ext);
            self.pending.push(Pending {
                checkpoint,
                in_progress: name,
                done,
            });
        }
        pending::write(&self.pending)
    }

    /// Rename the files of every checkpoint up to `checkpoint`.
    fn commit_up_to(&mut self, checkpoint: u64) -> Result<()> {
        publish_up_to(&self.dir, &mut self.pending, checkpoint)
    }
}

/// Rename the pending files (paths relative to `dir`) of every checkpoint up to `checkpoint`
/// to their final names, and sync their directories; the later ones stay in `pending`. Files
/// already renamed are skipped, so this can run again after a crash.
pub(crate) fn publish_up_to(dir: &Path, pending: &mut Vec<Pending>, checkpoint: u64) -> Result<()> {
    let (ready, later): (Vec<Pending>, Vec<Pending>) =
        pending.drain(..).partition(|p| p.checkpoint <= checkpoint);
    *pending = later;
    let mut parents = std::collections::BTreeSet::new();
    for p in &ready {
        let (from, to) = (dir.join(&p.in_progress), dir.join(&p.done));
        if from.exists() {
            std::fs::rename(&from, &to).map_err(|e| io_err("publish", &from, e))?;
            parents.extend(to.parent().map(Path::to_path_buf));
        }
    }
    for d in parents {
        File::open(&d)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err("sync", &d, e))?;
    }
    Ok(())
}

pub(crate) fn parse_pending(text: &str) -> Result<Vec<Pending>> {
    pending::read(text, "filesystem sink")
}

impl Sink for CommittingSink {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.write_batch(&batch) })
    }

    /// Rows written after the last barrier were never checkpointed: they are dropped with
    /// their in-progress file (a finished job's last barrier comes after its last row).
    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if let Some((name, _)) = self.current.take() {
                let _ = std::fs::remove_file(self.dir.join(name));
            }
            Ok(())
        })
    }

    fn pre_commit(&mut self, checkpoint: u64) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move { self.pre_commit_now(checkpoint) })
    }

    fn commit(&mut self, checkpoint: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.commit_up_to(checkpoint) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::DataType;
    use weir_engine::connector::{SinkFactory, SinkRestore};

    use super::*;
    use crate::test_util::{sink_ctx, table, temp_path};

    fn batch(ctx: &SinkContext, v: &[i64]) -> RecordBatch {
        let col = Arc::new(Int64Array::from(v.to_vec()));
        RecordBatch::try_new(ctx.schema.clone(), vec![col]).unwrap()
    }

    fn ctx(dir: &Path, restore: Option<SinkRestore>) -> SinkContext {
        let path = dir.display().to_string();
        let t = table(
            &[
                ("connector", "filesystem"),
                ("path", &path),
                ("format", "json"),
            ],
            &[("v", DataType::Int64)],
        );
        let mut ctx = sink_ctx(t, &[]);
        ctx.checkpointing = true;
        ctx.restore = restore;
        ctx
    }

    fn visible(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("part-"))
            .collect();
        names.sort();
        names
            .iter()
            .flat_map(|n| {
                let text = std::fs::read_to_string(dir.join(n)).unwrap();
                text.lines().map(String::from).collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn rows_appear_only_when_their_checkpoint_commits_and_survive_a_crash() {
        let dir = temp_path("committing");
        let c = ctx(&dir, None);
        let mut sink = super::super::FilesystemSinkFactory
            .create(c.clone())
            .unwrap();
        sink.write(batch(&c, &[1, 2])).await.unwrap();
        let pending = sink.pre_commit(1).await.unwrap();
        assert!(
            visible(&dir).is_empty(),
            "pre-committed rows are not visible"
        );
        sink.commit(1).await.unwrap();
        assert_eq!(visible(&dir), ["{\"v\":1}", "{\"v\":2}"]);
        sink.write(batch(&c, &[3])).await.unwrap();
        let pending2 = sink.pre_commit(2).await.unwrap();
        sink.write(batch(&c, &[4])).await.unwrap(); // after checkpoint 2: never committed
        drop(sink); // crash before checkpoint 2's commit
        assert!(!pending.is_empty());
        // The restarted sink publishes checkpoint 2 and drops the uncheckpointed row.
        let r = SinkRestore {
            checkpoint: 2,
            pending: pending2,
            subtasks: Vec::new(),
        };
        let c2 = ctx(&dir, Some(r.clone()));
        let sink = super::super::FilesystemSinkFactory
            .create(c2.clone())
            .unwrap();
        drop(sink);
        assert_eq!(visible(&dir), ["{\"v\":1}", "{\"v\":2}", "{\"v\":3}"]);
        // Recovering twice (a crash during recovery) changes nothing.
        let _ = super::super::FilesystemSinkFactory
            .create(ctx(&dir, Some(r)))
            .unwrap();
        assert_eq!(visible(&dir).len(), 3);
        let hidden = std::fs::read_dir(&dir).unwrap().flatten().count();
        assert_eq!(hidden, 2, "no in-progress files are left");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn subtasks_share_a_directory_and_a_restart_at_another_parallelism_publishes_each_file_once(
    ) {
        let dir = temp_path("fs-commit-subtasks");
        let open = |index, count, restore| {
            let mut c = ctx(&dir, restore);
            c.subtask = weir_engine::checkpoint::TaskSlot { index, count };
            super::super::FilesystemSinkFactory.create(c).unwrap()
        };
        let c = ctx(&dir, None);
        let (mut a, mut b) = (open(0, 2, None), open(1, 2, None));
        a.write(batch(&c, &[1])).await.unwrap();
        b.write(batch(&c, &[2])).await.unwrap();
        let snapshots = vec![
            a.pre_commit(1).await.unwrap(),
            b.pre_commit(1).await.unwrap(),
        ];
        a.commit(1).await.unwrap(); // the crash comes before the second subtask's commit
        b.write(batch(&c, &[3])).await.unwrap(); // never checkpointed
        drop((a, b));
        assert_eq!(visible(&dir), ["{\"v\":1}"]);
        let r = SinkRestore {
            checkpoint: 1,
            pending: String::new(),
            subtasks: snapshots,
        };
        let again: Vec<_> = (0..3).map(|i| open(i, 3, Some(r.clone()))).collect();
        assert_eq!(visible(&dir), ["{\"v\":1}", "{\"v\":2}"]);
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            names.iter().all(|n| n.starts_with("part-00000001-")),
            "{names:?}"
        );
        assert_eq!(
            names.len(),
            2,
            "one file per subtask, no in-progress file: {names:?}"
        );
        drop(again);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn pending_files_of_either_version_read_back() {
        let p = Pending {
            checkpoint: 4,
            in_progress: ".part-a.inprogress".into(),
            done: "part-00000004-1.json".into(),
        };
        let text = pending::write(std::slice::from_ref(&p)).unwrap();
        assert!(text.contains("\"in_progress\""), "{text}");
        assert_eq!(parse_pending(&text).unwrap(), std::slice::from_ref(&p));
        let v1 = r#"[[4,".part-a.inprogress","part-00000004-1.json"]]"#;
        assert_eq!(parse_pending(v1).unwrap(), [p]);
        assert!(parse_pending(r#"[[4,"only-one-name"]]"#).is_err());
    }
}
