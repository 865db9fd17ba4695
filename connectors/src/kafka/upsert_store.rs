//! Where an `upsert-kafka` sink keeps its materializer (see [`super::upsert_state`]) across
//! crashes, in a checkpointing job: files in the sink's directory of the checkpoint store.
//!
//! ```text
//! base-<checkpoint>.arrows    every key's rows at that checkpoint
//! delta-<checkpoint>.arrows   the keys that changed since the checkpoint before it
//! ```
//!
//! Each checkpoint records a [`Manifest`]: one base and the deltas after it, applied in order.
//! A checkpoint writes only the keys that changed since the previous one; once the deltas add
//! up to more than the base, the next checkpoint writes a new base instead, so writing costs
//! what changed (amortised) and a restore reads at most about twice the state. Files no
//! complete checkpoint refers to are removed when a checkpoint completes and at restore.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use weir_engine::state::{decode_columns, encode_columns};
use weir_engine::{EngineError, Result};

use super::upsert_state::{state_schema, Materializer};

/// The files that make the materializer's state at one checkpoint (the sink's snapshot).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Manifest {
    /// Format version (1).
    version: u32,
    /// Every key's rows; `None` before the first checkpoint that held a key.
    base: Option<String>,
    /// Changes after the base, oldest first.
    deltas: Vec<String>,
    base_bytes: u64,
    delta_bytes: u64,
}

impl Manifest {
    fn files(&self) -> impl Iterator<Item = &String> {
        self.base.iter().chain(self.deltas.iter())
    }
}

/// The materializer's checkpoint files.
pub(crate) struct StateFiles {
    dir: PathBuf,
    current: Manifest,
    /// Manifests of checkpoints taken but not yet complete.
    pending: BTreeMap<u64, Manifest>,
}

fn err(m: impl std::fmt::Display) -> EngineError {
    EngineError::State(format!("upsert sink state: {m}"))
}

impl StateFiles {
    /// The files in `dir`; with `restore` (the snapshot of the checkpoint the job restarts
    /// from), load that checkpoint's state into `m` and remove every other file.
    pub fn open(dir: PathBuf, restore: Option<&str>, m: &mut Materializer) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(err)?;
        m.track_changes();
        let current = match restore.filter(|r| !r.is_empty()) {
            Some(text) => serde_json::from_str(text).map_err(err)?,
            None => Manifest::default(),
        };
        for name in current.files() {
            m.load(&read(&dir.join(name))?)?;
        }
        let files = StateFiles {
            dir,
            current,
            pending: BTreeMap::new(),
        };
        files.remove_unreferenced(&files.current, u64::MAX)?;
        m.changes(false)?; // loading is not a change
        Ok(files)
    }

    /// Checkpoint `checkpoint`: write what changed since the previous one; the snapshot to
    /// record.
    pub fn save(&mut self, checkpoint: u64, m: &mut Materializer) -> Result<String> {
        if m.has_changes() {
            let rebase =
                self.current.base.is_none() || self.current.delta_bytes > self.current.base_bytes;
            let kind = if rebase { "base" } else { "delta" };
            let name = format!("{kind}-{checkpoint:020}.arrows");
            let bytes = write(&self.dir.join(&name), &m.changes(rebase)?)?;
            if rebase {
                self.current = Manifest {
                    version: 1,
                    base: Some(name),
                    deltas: Vec::new(),
                    base_bytes: bytes,
                    delta_bytes: 0,
                };
            } else {
                self.current.deltas.push(name);
                self.current.delta_bytes += bytes;
            }
        }
        self.pending.insert(checkpoint, self.current.clone());
        serde_json::to_string(&self.current).map_err(err)
    }

    /// Checkpoint `checkpoint` is complete: files only older checkpoints referred to go.
    pub fn committed(&mut self, checkpoint: u64) -> Result<()> {
        let later = self.pending.split_off(&(checkpoint + 1));
        let done = std::mem::replace(&mut self.pending, later);
        match done.into_values().next_back() {
            Some(m) => self.remove_unreferenced(&m, checkpoint),
            None => Ok(()),
        }
    }

    /// Remove files of checkpoints up to `upto` that `keep` does not name.
    fn remove_unreferenced(&self, keep: &Manifest, upto: u64) -> Result<()> {
        for e in std::fs::read_dir(&self.dir).map_err(err)?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let id = name
                .trim_end_matches(".arrows")
                .rsplit('-')
                .next()
                .and_then(|n| n.parse::<u64>().ok());
            let referenced = keep.files().any(|f| *f == name);
            if !referenced && id.is_some_and(|id| id <= upto) {
                std::fs::remove_file(e.path()).map_err(err)?;
            }
        }
        Ok(())
    }
}

/// Write `batch` durably to `path`; its size in bytes.
fn write(path: &Path, batch: &RecordBatch) -> Result<u64> {
    use std::io::Write;
    let bytes = encode_columns(batch.columns())?;
    let mut f = std::fs::File::create(path).map_err(err)?;
    f.write_all(&bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(bytes.len() as u64)
}

fn read(path: &Path) -> Result<RecordBatch> {
    let bytes = std::fs::read(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let cols = decode_columns(&bytes)?;
    Ok(RecordBatch::try_new(state_schema(), cols)?)
}

#[cfg(test)]
mod tests {
    use super::super::upsert_state::tests::{batch, schema};
    use super::*;
    use weir_engine::changelog::RowKind::{self, *};

    /// Whether each record written for `changes` is a tombstone.
    fn apply(m: &mut Materializer, changes: &[(RowKind, &str, i64)]) -> Vec<bool> {
        let kinds: Vec<RowKind> = changes.iter().map(|c| c.0).collect();
        let rows: Vec<(&str, i64)> = changes.iter().map(|c| (c.1, c.2)).collect();
        m.apply(&kinds, &batch(&rows)).unwrap().tombstones
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-upsert-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_restart_holds_the_rows_of_the_checkpoint_it_restarts_from() {
        let d = dir("restart");
        let mut m = Materializer::new(schema(), vec![0]).unwrap();
        let mut files = StateFiles::open(d.clone(), None, &mut m).unwrap();
        apply(
            &mut m,
            &[(Insert, "a", 1), (Insert, "a", 5), (Insert, "b", 2)],
        );
        files.save(1, &mut m).unwrap();
        apply(&mut m, &[(Delete, "b", 2), (Insert, "c", 3)]);
        let snapshot = files.save(2, &mut m).unwrap();
        files.committed(2).unwrap();
        // Changes after the checkpoint are not in it.
        apply(&mut m, &[(Delete, "a", 5)]);
        files.save(3, &mut m).unwrap();

        let mut again = Materializer::new(schema(), vec![0]).unwrap();
        StateFiles::open(d.clone(), Some(&snapshot), &mut again).unwrap();
        assert_eq!(
            names(&d),
            [
                "base-00000000000000000001.arrows",
                "delta-00000000000000000002.arrows"
            ]
        );
        // 'a' still holds 1 and 5, so retracting 5 writes the value 1, not a tombstone (an
        // empty materializer would write a tombstone and lose 'a').
        assert_eq!(apply(&mut again, &[(Delete, "a", 5)]), [false]);
        assert_eq!(apply(&mut again, &[(Delete, "a", 1)]), [true]);
        // 'c' arrived before the checkpoint; 'b' had left.
        assert_eq!(apply(&mut again, &[(Delete, "c", 3)]), [true]);
        assert_eq!(again.changes(true).unwrap().num_rows(), 0);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn deltas_larger_than_the_base_are_folded_into_a_new_base() {
        let d = dir("rebase");
        let mut m = Materializer::new(schema(), vec![0]).unwrap();
        let mut files = StateFiles::open(d.clone(), None, &mut m).unwrap();
        apply(&mut m, &[(Insert, "a", 1)]);
        files.save(1, &mut m).unwrap();
        for id in 2..6 {
            apply(
                &mut m,
                &[(UpdateBefore, "a", id - 1), (UpdateAfter, "a", id)],
            );
            files.save(id as u64, &mut m).unwrap();
            files.committed(id as u64).unwrap();
        }
        let left = names(&d);
        assert!(left.len() <= 3, "{left:?}");
        assert!(
            left.iter()
                .any(|n| n.starts_with("base-") && !n.ends_with("01.arrows")),
            "{left:?}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_corrupt_state_file_is_an_error() {
        let d = dir("corrupt");
        let mut m = Materializer::new(schema(), vec![0]).unwrap();
        let mut files = StateFiles::open(d.clone(), None, &mut m).unwrap();
        apply(&mut m, &[(Insert, "a", 1)]);
        let snapshot = files.save(1, &mut m).unwrap();
        std::fs::write(d.join("base-00000000000000000001.arrows"), b"not arrow").unwrap();
        let mut again = Materializer::new(schema(), vec![0]).unwrap();
        assert!(StateFiles::open(d.clone(), Some(&snapshot), &mut again).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
