//! Window state larger than memory: windows moved into the operator's RocksDB, one entry per
//! group key.
//!
//! A window aggregation keeps its windows in memory until they exceed the job's memory limit
//! (`state.memory-limit`, checkpointing jobs only); then the largest windows move to RocksDB.
//! A spilled window is updated batch by batch: the batch is aggregated in memory, the keys it
//! touched are read with one multi-get, merged (DataFusion's `merge_batch`, the same path as a
//! final aggregation) and written back in one write batch. When the window fires it is read back
//! in chunks, so emitting it needs no more memory than a chunk. Keys and accumulator states are
//! stored in Arrow's row format, so a group costs its bytes and nothing more.
//!
//! ```text
//! s/ <end> <start> <key row>   accumulator state row
//! m/spilled/ <end> <start>     the window is spilled (read back on restore)
//! ```

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::row::{RowConverter, Rows};

use super::groups::{key_converter, state_types, AggregateSet, Contribution, GroupTable};
use crate::error::Result;
use crate::state::{i64_from_key, i64_key, StateBackend};

/// Groups read back per chunk when a spilled window fires.
const CHUNK: usize = 65_536;
const REGISTRY: &[u8] = b"m/spilled/";

/// Encoding of spilled windows for one operator.
pub struct Spill {
    /// Row format of the accumulator states.
    states: RowConverter,
    n_keys: usize,
    aggs: Arc<AggregateSet>,
}

fn window_prefix((end, start): (i64, i64)) -> Vec<u8> {
    let mut k = b"s/".to_vec();
    k.extend_from_slice(&i64_key(end));
    k.extend_from_slice(&i64_key(start));
    k
}

fn registry_key((end, start): (i64, i64)) -> Vec<u8> {
    let mut k = REGISTRY.to_vec();
    k.extend_from_slice(&i64_key(end));
    k.extend_from_slice(&i64_key(start));
    k
}

impl Spill {
    /// The encoding for `aggs`' states, after `n_keys` key columns.
    pub fn new(aggs: Arc<AggregateSet>, n_keys: usize) -> Result<Self> {
        let states = key_converter(&state_types(&aggs)?)?;
        Ok(Self {
            states,
            n_keys,
            aggs,
        })
    }

    /// Entries (storage key, state row) for the groups of `table` in window `win`.
    fn entries(
        &self,
        win: (i64, i64),
        table: GroupTable,
        keys: &RowConverter,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (key_rows, cols) = table.into_columns(keys)?;
        let rows = self.states.convert_columns(&cols[self.n_keys..])?;
        let prefix = window_prefix(win);
        Ok(key_rows
            .iter()
            .zip(rows.iter())
            .map(|(k, s)| {
                (
                    [prefix.as_slice(), k.as_ref()].concat(),
                    s.as_ref().to_vec(),
                )
            })
            .collect())
    }

    /// Move a window from memory into `state`.
    pub fn spill(
        &self,
        state: &mut dyn StateBackend,
        win: (i64, i64),
        table: GroupTable,
        keys: &RowConverter,
    ) -> Result<()> {
        let entries = self.entries(win, table, keys)?;
        for chunk in entries.chunks(CHUNK) {
            state.put_all(chunk)?;
        }
        state.put(&registry_key(win), b"")
    }

    /// Add a batch's rows (already keyed) to a spilled window.
    pub fn update(
        &self,
        state: &mut dyn StateBackend,
        win: (i64, i64),
        rows: &Rows,
        input: &Contribution,
        keys: &RowConverter,
    ) -> Result<()> {
        let mut partial = GroupTable::new(keys, self.aggs.clone())?;
        partial.add(rows, input)?;
        let prefix = window_prefix(win);
        let storage: Vec<Vec<u8>> = partial
            .key_rows()
            .iter()
            .map(|k| [prefix.as_slice(), k.as_ref()].concat())
            .collect();
        let existing = state.multi_get(&storage)?;
        let found: Vec<(usize, Vec<u8>)> = existing
            .into_iter()
            .enumerate()
            .filter_map(|(g, v)| Some((g, v?)))
            .collect();
        if !found.is_empty() {
            let parser = self.states.parser();
            let cols = self
                .states
                .convert_rows(found.iter().map(|(_, b)| parser.parse(b)))?;
            let idx: Vec<usize> = found.iter().map(|(g, _)| *g).collect();
            partial.merge_states(&cols, &idx)?;
        }
        let entries = self.entries(win, partial, keys)?;
        state.put_all(&entries)
    }

    /// Read a spilled window back chunk by chunk, hand each chunk's groups to `emit`, then
    /// delete the window.
    pub fn fire(
        &self,
        state: &mut dyn StateBackend,
        win: (i64, i64),
        keys: &RowConverter,
        mut emit: impl FnMut(GroupTable) -> Result<()>,
    ) -> Result<()> {
        let prefix = window_prefix(win);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunk = state.scan_chunk(&prefix, after.as_deref(), CHUNK)?;
            let Some((last, _)) = chunk.last() else { break };
            after = Some(last.clone());
            emit(self.restore_chunk(&chunk, prefix.len(), keys)?)?;
        }
        state.delete_prefix(&prefix)?;
        state.delete(&registry_key(win))
    }

    fn restore_chunk(
        &self,
        chunk: &[(Vec<u8>, Vec<u8>)],
        skip: usize,
        keys: &RowConverter,
    ) -> Result<GroupTable> {
        let key_parser = keys.parser();
        let key_cols =
            keys.convert_rows(chunk.iter().map(|(k, _)| key_parser.parse(&k[skip..])))?;
        let parser = self.states.parser();
        let state_cols = self
            .states
            .convert_rows(chunk.iter().map(|(_, v)| parser.parse(v)))?;
        let cols: Vec<ArrayRef> = key_cols.into_iter().chain(state_cols).collect();
        GroupTable::restore(keys, self.aggs.clone(), &cols, self.n_keys)
    }

    /// The spilled windows recorded in `state` (after a restore).
    pub fn registered(state: &dyn StateBackend) -> Result<Vec<(i64, i64)>> {
        Ok(state
            .scan(REGISTRY)?
            .iter()
            .filter_map(|(k, _)| {
                let rest = k.get(REGISTRY.len()..)?;
                Some((i64_from_key(rest)?, i64_from_key(rest.get(8..)?)?))
            })
            .collect())
    }
}
