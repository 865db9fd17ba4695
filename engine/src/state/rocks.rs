//! The RocksDB state backend: one database per operator, checkpointed with RocksDB's own
//! checkpoints (hard-linked SST files plus a copy of the small metadata files).
//!
//! The write-ahead log is off: state is made durable by checkpoints, never by the live
//! database, which is thrown away and rebuilt from the latest checkpoint on restart.

use std::path::Path;

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use super::StateBackend;
use crate::error::{EngineError, Result};

/// State in a RocksDB database (write-ahead log off).
pub struct RocksBackend {
    db: DB,
    write: WriteOptions,
}

fn err(e: impl std::fmt::Display) -> EngineError {
    EngineError::State(format!("rocksdb: {e}"))
}

impl RocksBackend {
    /// Open a fresh live database at `dir` (anything there is discarded), starting from the
    /// checkpoint at `restore` when given.
    pub fn open(dir: &Path, restore: Option<&Path>) -> Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(err)?;
        }
        if let Some(from) = restore {
            copy_checkpoint(from, dir)?;
        }
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_max_background_jobs(1);
        opts.set_compression_type(rocksdb::DBCompressionType::None);
        // Bounded memory per operator: two 16 MB memtables and a 32 MB block cache.
        opts.set_write_buffer_size(16 << 20);
        opts.set_max_write_buffer_number(2);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(32 << 20));
        opts.set_block_based_table_factory(&table);
        let db = DB::open(&opts, dir).map_err(err)?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(Self { db, write })
    }
}

/// Recreate a live database from a checkpoint: SST files are immutable, so they are hard-linked
/// (copied when the file system refuses); everything else is copied.
fn copy_checkpoint(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(err)?;
    for entry in std::fs::read_dir(from).map_err(err)? {
        let entry = entry.map_err(err)?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let sst = src.extension().is_some_and(|e| e == "sst");
        if !(sst && std::fs::hard_link(&src, &dst).is_ok()) {
            std::fs::copy(&src, &dst).map_err(err)?;
        }
    }
    Ok(())
}

impl StateBackend for RocksBackend {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.put_opt(key, value, &self.write).map_err(err)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key).map_err(err)
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.db.delete_opt(key, &self.write).map_err(err)
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(err)?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn checkpoint(&mut self, dir: &Path) -> Result<()> {
        // Without a WAL the memtable must reach an SST file before the checkpoint links it.
        self.db.flush().map_err(err)?;
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        Checkpoint::new(&self.db)
            .map_err(err)?
            .create_checkpoint(dir)
            .map_err(err)
    }

    fn multi_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.db
            .multi_get(keys)
            .into_iter()
            .map(|r| r.map_err(err))
            .collect()
    }

    fn put_all(&mut self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (k, v) in entries {
            batch.put(k, v);
        }
        self.db.write_opt(batch, &self.write).map_err(err)
    }

    fn scan_chunk(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let from = after.unwrap_or(prefix);
        let mut out = Vec::with_capacity(limit.min(1 << 16));
        for item in self
            .db
            .iterator(IteratorMode::From(from, Direction::Forward))
        {
            let (k, v) = item.map_err(err)?;
            if !k.starts_with(prefix) || out.len() == limit {
                break;
            }
            if after.is_some_and(|a| k.as_ref() == a) {
                continue;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<()> {
        match super::prefix_end(prefix) {
            Some(end) => {
                let mut batch = WriteBatch::default();
                batch.delete_range(prefix, &end);
                self.db.write_opt(batch, &self.write).map_err(err)
            }
            None => {
                for (k, _) in self.scan(prefix)? {
                    self.delete(&k)?;
                }
                Ok(())
            }
        }
    }

    fn size_bytes(&self) -> u64 {
        self.db
            .property_int_value("rocksdb.total-sst-files-size")
            .ok()
            .flatten()
            .unwrap_or(0)
            + self
                .db
                .property_int_value("rocksdb.cur-size-all-mem-tables")
                .ok()
                .flatten()
                .unwrap_or(0)
    }
}
