//! One input's rows in a changelog join (`changelog_join.rs`): per join key, the rows it holds
//! (in the row format, so a retraction finds the equal row) and, per row, how many rows of the
//! other input it is joined with (an outer side's row is NULL-padded while that is 0).
//!
//! With a TTL (`table.exec.state.ttl`, or the side's `STATE_TTL` hint) a key not touched by
//! either input for that long (processing time) is dropped, as in Flink.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, ArrayRef, UInt32Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{OwnedRow, Row, RowConverter, SortField};

use super::key_index::Clock;
use super::window_aggregate::key_arrays;
use crate::error::{EngineError, Result};
use crate::state::{decode_columns, encode_columns, StateBackend};
use weir_planner::stream_plan::PhysExpr;

/// A held row and the number of rows of the other input it is joined with.
pub(crate) struct Held {
    pub row: OwnedRow,
    pub matches: u32,
}

/// The rows of one key, and when the key was last touched (ms of the side's clock).
#[derive(Default)]
pub(crate) struct KeyRows {
    pub rows: Vec<Held>,
    touched: u64,
}

impl KeyRows {
    /// Mark the key touched at `now`.
    pub fn touch_at(&mut self, now: u64) {
        self.touched = now;
    }
}

/// The state of one input.
pub(crate) struct ChangelogSide {
    pub keys: Vec<PhysExpr>,
    pub schema: SchemaRef,
    /// Encodes a whole row of this input.
    pub rows: RowConverter,
    pub held: HashMap<Box<[u8]>, KeyRows, foldhash::fast::RandomState>,
    ttl: Option<(u64, Clock)>,
    last_sweep: u64,
    expired: u64,
    name: &'static [u8],
}

impl ChangelogSide {
    /// An empty side over `schema`, joined on `keys`; `name` prefixes its checkpoint entry.
    pub fn new(keys: Vec<PhysExpr>, schema: SchemaRef, name: &'static [u8]) -> Result<Self> {
        let fields = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(Self {
            keys,
            schema,
            rows: RowConverter::new(fields)?,
            held: HashMap::default(),
            ttl: None,
            last_sweep: 0,
            expired: 0,
            name,
        })
    }

    /// Drop keys untouched for `ms` milliseconds of `clock`.
    pub fn set_ttl(&mut self, ms: u64, clock: Clock) {
        self.ttl = Some((ms, clock));
        self.last_sweep = clock();
    }

    /// The clock's time now (0 without a TTL).
    pub fn now(&self) -> u64 {
        self.ttl.map_or(0, |(_, clock)| clock())
    }

    /// The rows of `key`, marked touched at `now`.
    pub fn touch(&mut self, key: &[u8], now: u64) -> &mut KeyRows {
        let k = self.held.entry(key.into()).or_default();
        k.touched = now;
        k
    }

    /// Hold `row` under `key`, joined with `matches` rows of the other input.
    pub fn insert(&mut self, key: &[u8], row: Row<'_>, matches: u32, now: u64) {
        self.touch(key, now).rows.push(Held {
            row: row.owned(),
            matches,
        });
    }

    /// Take one row equal to `row` out of `key`'s rows; false when none is held.
    pub fn remove(&mut self, key: &[u8], row: Row<'_>) -> bool {
        let Some(k) = self.held.get_mut(key) else {
            return false;
        };
        let Some(i) = k.rows.iter().position(|h| h.row.row() == row) else {
            return false;
        };
        k.rows.swap_remove(i);
        if k.rows.is_empty() {
            self.held.remove(key);
        }
        true
    }

    /// Drop the keys idle for longer than the TTL (looked at every quarter TTL).
    pub fn sweep(&mut self) {
        let Some((ttl, clock)) = self.ttl else { return };
        let now = clock();
        if now.saturating_sub(self.last_sweep) < (ttl / 4).max(1) {
            return;
        }
        self.last_sweep = now;
        let before = self.held.len();
        self.held.retain(|_, k| now.saturating_sub(k.touched) < ttl);
        self.expired += (before - self.held.len()) as u64;
    }

    /// Keys dropped by the TTL so far.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// Keys and approximate bytes held.
    pub fn size(&self) -> (u64, u64) {
        let bytes: usize = self
            .held
            .iter()
            .map(|(k, v)| {
                k.len()
                    + v.rows
                        .iter()
                        .map(|h| h.row.as_ref().len() + 8)
                        .sum::<usize>()
            })
            .sum();
        (self.held.len() as u64, bytes as u64)
    }

    /// How the side's entry divides by key: its rows (and match counts) by the side's key.
    pub fn state_rule(&self) -> crate::state::rescale::Rule {
        crate::state::rescale::Rule::Columns {
            prefix: self.name.to_vec(),
            key: crate::state::rescale::KeyOf::Exprs(self.keys.clone()),
        }
    }

    /// Write every held row and its match count.
    pub fn snapshot(&self, state: &mut dyn StateBackend) -> Result<()> {
        let all: Vec<&Held> = self.held.values().flat_map(|k| &k.rows).collect();
        let mut cols = self.rows.convert_rows(all.iter().map(|h| h.row.row()))?;
        let matches: ArrayRef =
            std::sync::Arc::new(UInt32Array::from_iter_values(all.iter().map(|h| h.matches)));
        cols.push(matches);
        state.put(self.name, &encode_columns(&cols)?)
    }

    /// Hold again the rows of a snapshot, keyed by `keys` (the join's key encoder).
    pub fn restore(&mut self, state: &dyn StateBackend, keys: &RowConverter) -> Result<()> {
        let Some(bytes) = state.get(self.name)? else {
            return Ok(());
        };
        let mut cols = decode_columns(&bytes)?;
        let matches = cols
            .pop()
            .ok_or_else(|| EngineError::Internal("empty join snapshot".into()))?;
        let matches = matches
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or_else(|| EngineError::Internal("join snapshot: match counts".into()))?
            .clone();
        let batch = RecordBatch::try_new(self.schema.clone(), cols)?;
        let key_rows = keys.convert_columns(&key_arrays(&self.keys, &batch)?)?;
        let rows = self.rows.convert_columns(batch.columns())?;
        let now = self.now();
        for i in 0..batch.num_rows() {
            self.insert(key_rows.row(i).as_ref(), rows.row(i), matches.value(i), now);
        }
        Ok(())
    }
}
