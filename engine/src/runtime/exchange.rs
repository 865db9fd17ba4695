//! The exchange between an input's subtasks and an operator's subtasks.
//!
//! A router, at the end of an input subtask's output ([`crate::runtime::chain`]), deals that
//! subtask's batches out to the operator's subtasks: by key for a hash exchange (each row's
//! key, in Arrow's row format, is hashed with xxHash64 into a key group, and the key group's
//! owner gets the row), in turn for a rebalance.
//! A batch is split with one `take` per piece, columns, per-row watermarks and row kinds alike,
//! so rows keep the watermark they were judged by at the source and lateness is decided as at
//! parallelism 1. Watermarks, barriers, idleness and the end of stream go to every subtask, so
//! each subtask's input (one channel per input subtask, merged by the reading task's
//! [`super::inputs::Inputs`]) takes the minimum watermark and aligns barriers over all of them. The hash is fixed (it never
//! changes between versions or processes), because checkpoints store state by key group.
//! Before a window aggregation the router may fold batches into partial rows first
//! ([`crate::operators::window_local`]), and routes those by the same hash when a watermark,
//! barrier or the end makes them due.

use datafusion::arrow::array::{Array, ArrayRef, UInt32Array};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use weir_planner::parallel::ParallelConfig;
use weir_planner::stream_plan::PhysExpr;

use crate::error::Result;
use crate::message::{Message, StreamBatch};
use crate::operators::window_local::LocalWindowAggregate;

/// The seed of the key hash; fixed, since checkpoints keep state by key group.
const KEY_HASH_SEED: u64 = 0x5745_4952; // "WEIR"

/// How a router deals rows out.
pub enum Route {
    /// To the subtask owning each row's key group.
    Hash(KeyRouting),
    /// Each batch folded into partial rows per (window, key) first, then those by key (the
    /// local step of a local-global window aggregation).
    PreAggregated(Box<LocalWindowAggregate>, KeyRouting),
    /// Whole batches to the subtasks in turn.
    Rebalance {
        /// The subtask the next batch goes to.
        next: usize,
    },
}

/// The keys of a hash exchange and the key groups they fall into.
pub struct KeyRouting {
    keys: Vec<PhysExpr>,
    converter: Option<RowConverter>,
    config: ParallelConfig,
}

impl KeyRouting {
    /// Route by `keys` (evaluated over the input's rows) into `config`'s key groups.
    pub fn new(keys: Vec<PhysExpr>, config: ParallelConfig) -> Self {
        Self {
            keys,
            converter: None,
            config,
        }
    }

    /// The subtask (of `p`) owning each row's key group.
    pub fn owners(&mut self, batch: &RecordBatch, p: usize) -> Result<Vec<u32>> {
        let cols: Vec<ArrayRef> = self
            .keys
            .iter()
            .map(|k| k.evaluate(batch)?.into_array(batch.num_rows()))
            .collect::<datafusion::error::Result<_>>()?;
        if self.converter.is_none() {
            let fields = cols.iter().map(|c| SortField::new(c.data_type().clone()));
            self.converter = Some(RowConverter::new(fields.collect())?);
        }
        let converter = self.converter.as_ref().expect("converter");
        let rows = converter.convert_columns(&cols)?;
        Ok(self.owners_of_rows(&rows, p))
    }

    /// The subtask (of `p`) owning each key of `rows`, keys already in row format (made with
    /// the default sort options from the key columns' types, as [`KeyRouting::owners`] makes
    /// them).
    pub fn owners_of_rows(&self, rows: &Rows, p: usize) -> Vec<u32> {
        let config = self.config;
        rows.iter()
            .map(|r| config.subtask_of(config.key_group(key_hash(r.as_ref())), p) as u32)
            .collect()
    }
}

/// The key group of each row whose key is `cols` (as the keyed exchange routes it; the
/// rescaling of state divides it the same way).
pub fn key_groups(cols: &[ArrayRef], config: ParallelConfig) -> Result<Vec<usize>> {
    let fields = cols.iter().map(|c| SortField::new(c.data_type().clone()));
    let converter = RowConverter::new(fields.collect())?;
    groups_of(&converter, cols, config)
}

fn groups_of(
    converter: &RowConverter,
    cols: &[ArrayRef],
    config: ParallelConfig,
) -> Result<Vec<usize>> {
    let rows = converter.convert_columns(cols)?;
    Ok(rows
        .iter()
        .map(|r| config.key_group(key_hash(r.as_ref())))
        .collect())
}

/// The hash of a key's row-format bytes (stable across processes and versions).
pub fn key_hash(key: &[u8]) -> u64 {
    twox_hash::XxHash64::oneshot(KEY_HASH_SEED, key)
}

/// Deals the batches of one input subtask out to `outputs` operator subtasks.
pub struct Router {
    route: Route,
    outputs: usize,
}

impl Router {
    /// A router to `outputs` subtasks.
    pub fn new(route: Route, outputs: usize) -> Self {
        Self { route, outputs }
    }

    /// The pieces of `b` and the subtask each goes to (no empty pieces).
    pub fn split(&mut self, b: StreamBatch) -> Result<Vec<(usize, StreamBatch)>> {
        let p = self.outputs;
        match &mut self.route {
            Route::Rebalance { next } => {
                let to = *next;
                *next = (*next + 1) % p;
                Ok(vec![(to, b)])
            }
            Route::Hash(keys) => {
                let owners = keys.owners(&b.batch, p)?;
                split_by_owner(&b, &owners, p)
            }
            Route::PreAggregated(local, keys) => {
                local.fold(&b)?;
                let mut out = Vec::new();
                for part in local.due_now()? {
                    let owners = keys.owners_of_rows(&part.keys, p);
                    out.extend(split_by_owner(&part.batch, &owners, p)?);
                }
                Ok(out)
            }
        }
    }

    /// The pieces due before `m` (not a batch) goes to every subtask: the partial rows a
    /// pre-aggregating route kept for the windows `m` fires, or for all before a barrier or
    /// the end.
    pub fn due_before(&mut self, m: &Message) -> Result<Vec<(usize, StreamBatch)>> {
        let p = self.outputs;
        let Route::PreAggregated(local, keys) = &mut self.route else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for part in local.due_before(m)? {
            let owners = keys.owners_of_rows(&part.keys, p);
            out.extend(split_by_owner(&part.batch, &owners, p)?);
        }
        Ok(out)
    }
}

/// Split `b` by the subtask of each row (`owners[i]` < `p`), keeping row order within each
/// piece. A batch whose rows all go to one subtask is passed on whole.
pub fn split_by_owner(
    b: &StreamBatch,
    owners: &[u32],
    p: usize,
) -> Result<Vec<(usize, StreamBatch)>> {
    if let Some(&first) = owners.first() {
        if owners.iter().all(|o| *o == first) {
            return Ok(vec![(first as usize, b.clone())]);
        }
    }
    let mut rows: Vec<Vec<u32>> = vec![Vec::new(); p];
    for (i, o) in owners.iter().enumerate() {
        rows[*o as usize].push(i as u32);
    }
    let mut out = Vec::new();
    for (to, idx) in rows.into_iter().enumerate() {
        if !idx.is_empty() {
            out.push((to, b.take(&UInt32Array::from(idx))?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::Column;

    use super::*;

    fn batch(keys: &[&str]) -> StreamBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true)]));
        let col = Arc::new(StringArray::from(keys.to_vec()));
        let b = RecordBatch::try_new(schema, vec![col]).unwrap();
        let wm = Int64Array::from_iter_values(0..keys.len() as i64);
        StreamBatch::with_row_watermarks(b, wm).with_kinds(vec![0i8; keys.len()])
    }

    fn keys_of(b: &StreamBatch) -> Vec<String> {
        let c = b
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        c.iter().map(|v| v.unwrap_or("∅").to_string()).collect()
    }

    fn router(p: usize) -> Router {
        let config = ParallelConfig {
            parallelism: p,
            max_parallelism: 128,
            agg_phase: weir_planner::parallel::AggPhase::Auto,
            chaining: true,
        };
        let keys = KeyRouting::new(vec![Arc::new(Column::new("k", 0))], config);
        Router::new(Route::Hash(keys), p)
    }

    #[test]
    fn a_key_always_reaches_the_same_subtask_with_its_watermarks_in_order() {
        let mut r = router(4);
        let keys = ["a", "b", "c", "a", "d", "b", "e", "a"];
        let pieces = r.split(batch(&keys)).unwrap();
        let mut owner = std::collections::HashMap::new();
        let mut total = 0;
        for (to, piece) in &pieces {
            let wm = piece.row_watermarks.as_ref().unwrap();
            assert!(
                wm.values().windows(2).all(|w| w[0] < w[1]),
                "row order kept"
            );
            for (k, w) in keys_of(piece).iter().zip(wm.values()) {
                assert_eq!(keys[*w as usize], k, "each row keeps its own watermark");
                assert_eq!(*owner.entry(k.clone()).or_insert(*to), *to, "{k} split");
            }
            assert_eq!(piece.kinds.as_ref().unwrap().len(), piece.num_rows());
            total += piece.num_rows();
        }
        assert_eq!(total, keys.len());
        // Another batch, another router: the same owners.
        for (to, piece) in router(4).split(batch(&["e", "d", "c"])).unwrap() {
            for k in keys_of(&piece) {
                assert_eq!(owner[&k], to);
            }
        }
    }

    #[test]
    fn the_key_hash_is_fixed() {
        // Checkpoints keep state by key group: the hash must never change.
        assert_eq!(key_hash(b"sensor-1"), 0x4fe2_b17b_91cf_97b9);
        let a = key_hash(b"sensor-1");
        assert_eq!(a, key_hash(b"sensor-1"));
        assert_ne!(a, key_hash(b"sensor-2"));
    }
}
