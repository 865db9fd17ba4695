//! The checkpoint directory on disk.
//!
//! ```text
//! DIR/
//!   chk-00000007/          one complete checkpoint
//!     _metadata            JSON: id, query fingerprint, finished, every task's snapshot
//!     op-3/                RocksDB checkpoint (hard-linked SST files) of operator 3's state
//!   chk-00000008/          in progress: no _metadata yet, ignored on restore
//!   work/                  the live RocksDB instances of the running job
//! ```
//!
//! A checkpoint counts only once its `_metadata` exists; that file is written to a temporary
//! name, synced, and renamed, so a crash at any moment leaves either the old or the new
//! checkpoint complete. Restore picks the highest complete id; older checkpoints are deleted
//! once a newer one is complete (the newest two are kept).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// What a complete checkpoint records (the `_metadata` file, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// The checkpoint id (the `chk-NNNNNNNN` directory it lives in).
    pub id: u64,
    /// Identifies the job's plan (see [`crate::checkpoint::PlanLayout`]).
    pub fingerprint: String,
    /// The job had finished: this was the final checkpoint of a bounded job.
    pub finished: bool,
    /// Every task's snapshot, by task name (`source-0`, `op-2`, `sink-1`).
    pub snapshots: BTreeMap<String, String>,
    /// What the job was: each sink's query, each source table's options, each task's state
    /// layout, by name (empty in checkpoints of older versions).
    #[serde(default)]
    pub layouts: BTreeMap<String, String>,
}

impl CheckpointMeta {
    /// The metadata as stored in a checkpoint's `_metadata` file.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("metadata serialises")
    }

    /// Read a `_metadata` file's text; `None` when it is not complete, readable metadata.
    pub fn from_json(text: &str) -> Option<CheckpointMeta> {
        serde_json::from_str(text).ok()
    }
}

fn state_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::State(e.to_string())
}

/// A checkpoint directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    root: PathBuf,
}

impl CheckpointStore {
    /// Open the checkpoint directory at `root`, creating it if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| {
            state_err(format!(
                "cannot create checkpoint dir {}: {e}",
                root.display()
            ))
        })?;
        Ok(Self { root })
    }

    /// The checkpoint directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where checkpoint `id`'s files go.
    pub fn checkpoint_dir(&self, id: u64) -> PathBuf {
        self.root.join(format!("chk-{id:08}"))
    }

    /// Where the running job keeps its live state.
    pub fn work_dir(&self) -> PathBuf {
        self.root.join("work")
    }

    /// Ids of the checkpoint directories present, complete or not, ascending.
    fn ids(&self) -> Result<Vec<u64>> {
        let mut ids: Vec<u64> = fs::read_dir(&self.root)
            .map_err(state_err)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The newest complete checkpoint. A checkpoint without readable metadata (it failed half
    /// way, or the process died while writing it) is skipped.
    pub fn latest(&self) -> Result<Option<CheckpointMeta>> {
        for id in self.ids()?.into_iter().rev() {
            let path = self.checkpoint_dir(id).join("_metadata");
            if let Ok(text) = fs::read_to_string(&path) {
                if let Some(meta) = CheckpointMeta::from_json(&text) {
                    return Ok(Some(meta));
                }
            }
        }
        Ok(None)
    }

    /// The highest checkpoint id ever started here (so new ids never collide).
    pub fn highest_id(&self) -> Result<u64> {
        Ok(self.ids()?.last().copied().unwrap_or(0))
    }

    /// Mark checkpoint `meta.id` complete, durably, then drop older ones.
    pub fn complete(&self, meta: &CheckpointMeta) -> Result<()> {
        let dir = self.checkpoint_dir(meta.id);
        fs::create_dir_all(&dir).map_err(state_err)?;
        let tmp = dir.join("_metadata.tmp");
        let mut f = fs::File::create(&tmp).map_err(state_err)?;
        f.write_all(meta.to_json().as_bytes()).map_err(state_err)?;
        f.sync_all().map_err(state_err)?;
        fs::rename(&tmp, dir.join("_metadata")).map_err(state_err)?;
        sync_dir(&dir)?;
        sync_dir(&self.root)?;
        self.retain(meta.id)
    }

    /// Delete checkpoints older than the one before `newest` (and unfinished ones below it).
    fn retain(&self, newest: u64) -> Result<()> {
        let complete: Vec<u64> = self
            .ids()?
            .into_iter()
            .filter(|id| self.checkpoint_dir(*id).join("_metadata").exists())
            .collect();
        let keep_from = complete.iter().rev().nth(1).copied().unwrap_or(newest);
        for id in self.ids()? {
            if id < keep_from {
                let _ = fs::remove_dir_all(self.checkpoint_dir(id));
            }
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(state_err)
}

/// A stable fingerprint of a job's SQL: FNV-1a over the text with whitespace runs collapsed
/// (so re-indenting a job file does not orphan its checkpoints).
pub fn fingerprint(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut last_space = true;
    for b in sql.bytes() {
        let b = if b.is_ascii_whitespace() { b' ' } else { b };
        if b == b' ' && last_space {
            continue;
        }
        last_space = b == b' ';
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: u64) -> CheckpointMeta {
        CheckpointMeta {
            id,
            fingerprint: "f".into(),
            finished: false,
            snapshots: [("source:r".to_string(), format!("{{\"offset\":{id}}}"))].into(),
            layouts: BTreeMap::new(),
        }
    }

    #[test]
    fn restore_picks_the_latest_complete_checkpoint() {
        let dir = std::env::temp_dir().join(format!("weir-chk-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = CheckpointStore::open(&dir).unwrap();
        assert_eq!(store.latest().unwrap(), None);
        for id in 1..=4 {
            store.complete(&meta(id)).unwrap();
        }
        // Checkpoint 5 started (state written) but never completed; 6 has torn metadata.
        fs::create_dir_all(store.checkpoint_dir(5).join("op-1")).unwrap();
        fs::create_dir_all(store.checkpoint_dir(6)).unwrap();
        fs::write(
            store.checkpoint_dir(6).join("_metadata"),
            "{\"id\": 6, \"finger",
        )
        .unwrap();
        assert_eq!(store.latest().unwrap(), Some(meta(4)));
        assert_eq!(store.highest_id().unwrap(), 6);
        // Only the newest two complete checkpoints are kept.
        assert!(!store.checkpoint_dir(2).exists());
        assert!(store.checkpoint_dir(3).exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn fingerprints_ignore_layout_only() {
        assert_eq!(
            fingerprint("SELECT  a\n FROM t"),
            fingerprint("SELECT a FROM t")
        );
        assert_ne!(
            fingerprint("SELECT a FROM t"),
            fingerprint("SELECT b FROM t")
        );
    }
}
