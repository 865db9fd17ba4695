//! The in-memory state backend: a sorted map, checkpointed as one file of length-prefixed
//! entries. For tests and jobs whose state is small.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::StateBackend;
use crate::error::{EngineError, Result};

const FILE: &str = "state.bin";

/// State in a sorted in-memory map.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    bytes: u64,
}

impl MemoryBackend {
    /// The state saved in checkpoint directory `dir`.
    pub fn restore(dir: &Path) -> Result<Self> {
        let data = std::fs::read(dir.join(FILE))
            .map_err(|e| EngineError::State(format!("cannot read {}: {e}", dir.display())))?;
        Self::from_bytes(&data)
    }

    /// The state in a checkpoint file's bytes (length-prefixed keys and values).
    pub fn from_bytes(data: &[u8]) -> Result<Self> {
        let mut me = MemoryBackend::default();
        let mut rest = data;
        while !rest.is_empty() {
            let (k, r) = take(rest)?;
            let (v, r) = take(r)?;
            me.put(k, v)?;
            rest = r;
        }
        Ok(me)
    }
}

fn take(b: &[u8]) -> Result<(&[u8], &[u8])> {
    let bad = || EngineError::State("corrupt in-memory state checkpoint".into());
    let len = u32::from_le_bytes(b.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    let end = 4 + len as usize;
    Ok((b.get(4..end).ok_or_else(bad)?, &b[end..]))
}

impl StateBackend for MemoryBackend {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.bytes += (key.len() + value.len()) as u64;
        if let Some(old) = self.map.insert(key.to_vec(), value.to_vec()) {
            self.bytes -= (key.len() + old.len()) as u64;
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.get(key).cloned())
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= (key.len() + old.len()) as u64;
        }
        Ok(())
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn checkpoint(&mut self, dir: &Path) -> Result<()> {
        let err =
            |e: std::io::Error| EngineError::State(format!("checkpoint {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(FILE)).map_err(err)?);
        for (k, v) in &self.map {
            for part in [k, v] {
                f.write_all(&(part.len() as u32).to_le_bytes())
                    .map_err(err)?;
                f.write_all(part).map_err(err)?;
            }
        }
        let f = f.into_inner().map_err(|e| err(e.into_error()))?;
        f.sync_all().map_err(err)
    }

    fn size_bytes(&self) -> u64 {
        self.bytes
    }
}
