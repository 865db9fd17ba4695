//! Restoring keyed state at another parallelism: a new subtask's state is gathered, entry by
//! entry, from the old subtasks' checkpoints, keeping what belongs to the key groups it owns.
//!
//! Every stateful operator describes how its entries divide by key ([`StateShape`]): an entry
//! whose key is a group key in Arrow's row format goes whole to the key group of that key
//! (GROUP BY groups, top-N partitions, spilled window groups); an entry of Arrow columns is
//! split row by row (a window's groups, emitted rows); held rows ("slots", see
//! `operators::row_slots`) are split row by row with their bitmaps and renumbered; the
//! operator's watermark takes the smallest of the old subtasks'. The key of a row is hashed
//! exactly as the keyed exchange hashes it ([`crate::runtime::exchange::key_groups`]), so each
//! key's state lands in the subtask its rows are routed to. Pure code over two
//! [`StateBackend`]s, tested without a job. An entry no rule covers is an error, never dropped.

use std::collections::BTreeMap;
use std::ops::Range;

use datafusion::arrow::array::{ArrayRef, BooleanArray, UInt32Array};
use datafusion::arrow::compute::{concat, filter, take};
use weir_planner::parallel::ParallelConfig;
use weir_planner::stream_plan::PhysExpr;

use super::{decode_columns, encode_columns, positional_batch, StateBackend};
use crate::error::{EngineError, Result};
use crate::runtime::exchange::key_groups;

/// How one operator's state entries divide by key.
#[derive(Clone, Default)]
pub struct StateShape {
    /// One rule per kind of entry (matched by the longest prefix).
    pub rules: Vec<Rule>,
}

/// Which columns of a row are its key.
#[derive(Clone)]
pub enum KeyOf {
    /// These columns, in this order.
    Columns(Vec<usize>),
    /// These expressions over the row's columns.
    Exprs(Vec<PhysExpr>),
}

/// How entries under one prefix divide.
#[derive(Clone)]
pub enum Rule {
    /// `prefix`, `skip` bytes, then the key in row format: the entry goes whole to its key's
    /// key group.
    KeyRow {
        /// The entries' prefix.
        prefix: Vec<u8>,
        /// Bytes between the prefix and the key (a window's end and start).
        skip: usize,
    },
    /// Arrow columns ([`encode_columns`]): the rows are split by key; an entry under the same
    /// name in several old subtasks is concatenated.
    Columns {
        /// The entries' prefix.
        prefix: Vec<u8>,
        /// The key of each row.
        key: KeyOf,
    },
    /// Held rows: `prefix b/<slot>` rows, `prefix r/<slot>` rows gone, and with `matched`
    /// `prefix m/<slot>` rows matched (outer joins). Rows still held are split by key into new
    /// slots.
    Slots {
        /// The store's prefix.
        prefix: Vec<u8>,
        /// The key of each row.
        key: KeyOf,
        /// Whether the store keeps `m/` bitmaps.
        matched: bool,
    },
    /// An `i64` (big-endian) every subtask keeps, such as its watermark: the smallest.
    MinI64 {
        /// The entry's key.
        key: Vec<u8>,
    },
    /// Entries any subtask may hold with the same value: copied.
    Shared {
        /// The entries' prefix.
        prefix: Vec<u8>,
    },
}

impl Rule {
    fn prefixes(&self) -> Vec<Vec<u8>> {
        match self {
            Rule::KeyRow { prefix, .. }
            | Rule::Columns { prefix, .. }
            | Rule::Shared { prefix }
            | Rule::MinI64 { key: prefix } => vec![prefix.clone()],
            Rule::Slots {
                prefix, matched, ..
            } => {
                let mut p = vec![[prefix, &b"b/"[..]].concat(), [prefix, &b"r/"[..]].concat()];
                if *matched {
                    p.push([prefix, &b"m/"[..]].concat());
                }
                p
            }
        }
    }
}

/// The key groups a new subtask owns, and how keys fall into key groups.
#[derive(Debug, Clone)]
pub struct Owned {
    /// The key groups.
    pub groups: Range<usize>,
    /// The job's key groups.
    pub config: ParallelConfig,
}

impl Owned {
    fn key_row(&self, key: &[u8]) -> bool {
        let g = self
            .config
            .key_group(crate::runtime::exchange::key_hash(key));
        self.groups.contains(&g)
    }

    /// Which rows of `cols` belong here.
    fn rows(&self, cols: &[ArrayRef], key: &KeyOf) -> Result<Vec<bool>> {
        let keys = key_columns(cols, key)?;
        let groups = key_groups(&keys, self.config)?;
        Ok(groups.iter().map(|g| self.groups.contains(g)).collect())
    }
}

fn key_columns(cols: &[ArrayRef], key: &KeyOf) -> Result<Vec<ArrayRef>> {
    let missing = || EngineError::State("a state entry lacks its key columns".into());
    match key {
        KeyOf::Columns(idx) => idx
            .iter()
            .map(|i| cols.get(*i).cloned().ok_or_else(missing))
            .collect(),
        KeyOf::Exprs(exprs) => {
            let batch = positional_batch(cols)?;
            exprs
                .iter()
                .map(|e| Ok(e.evaluate(&batch)?.into_array(batch.num_rows())?))
                .collect()
        }
    }
}

/// Gather into `into` the entries of `old` (every old subtask's state whose key groups meet
/// `owned`) that belong to `owned`, as `shape` divides them.
pub fn gather(
    shape: &StateShape,
    old: &[&dyn StateBackend],
    owned: &Owned,
    into: &mut dyn StateBackend,
) -> Result<()> {
    let mut out = Gathered::default();
    for state in old {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunk = state.scan_chunk(b"", after.as_deref(), CHUNK)?;
            let Some((last, _)) = chunk.last() else {
                break;
            };
            after = Some(last.clone());
            for (key, value) in chunk {
                let rule = rule_for(shape, &key)?;
                out.add(rule, *state, key, value, owned)?;
            }
            out.flush(into)?;
        }
    }
    out.finish(into)
}

/// Entries read (and written) at once.
const CHUNK: usize = 4096;

/// The rule with the longest prefix of `key`.
fn rule_for<'a>(shape: &'a StateShape, key: &[u8]) -> Result<&'a Rule> {
    shape
        .rules
        .iter()
        .flat_map(|r| r.prefixes().into_iter().map(move |p| (p, r)))
        .filter(|(p, _)| key.starts_with(p))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, r)| r)
        .ok_or_else(|| {
            EngineError::State(format!(
                "state entry '{}' cannot be divided among subtasks (written by an older \
                 version?): restore at the checkpoint's parallelism and take a new checkpoint \
                 first",
                String::from_utf8_lossy(key)
            ))
        })
}

/// What the new subtask's state will hold.
#[derive(Default)]
struct Gathered {
    /// Entries ready to write.
    whole: Vec<(Vec<u8>, Vec<u8>)>,
    /// The smallest of each [`Rule::MinI64`] entry.
    least: BTreeMap<Vec<u8>, i64>,
    /// Rows of each [`Rule::Columns`] entry, from each old subtask.
    columns: BTreeMap<Vec<u8>, Vec<Vec<ArrayRef>>>,
    /// The next slot number of each slot store, by prefix.
    next_slot: BTreeMap<Vec<u8>, u32>,
}

impl Gathered {
    fn add(
        &mut self,
        rule: &Rule,
        state: &dyn StateBackend,
        key: Vec<u8>,
        value: Vec<u8>,
        owned: &Owned,
    ) -> Result<()> {
        match rule {
            Rule::KeyRow { prefix, skip } => {
                let row = key.get(prefix.len() + skip..).unwrap_or_default();
                if owned.key_row(row) {
                    self.whole.push((key, value));
                }
            }
            Rule::Columns { key: k, .. } => {
                let cols = decode_columns(&value)?;
                let keep = owned.rows(&cols, k)?;
                let mask = BooleanArray::from(keep);
                if mask.true_count() > 0 {
                    let kept = cols
                        .iter()
                        .map(|c| Ok(filter(c, &mask)?))
                        .collect::<Result<Vec<_>>>()?;
                    self.columns.entry(key).or_default().push(kept);
                }
            }
            Rule::Slots {
                prefix,
                key: k,
                matched,
            } => {
                if key.starts_with(&[prefix, &b"b/"[..]].concat()) {
                    let slot = SlotIn {
                        state,
                        prefix,
                        key: &key,
                        rows: &value,
                        matched: *matched,
                    };
                    self.add_slot(slot, k, owned)?;
                }
            }
            Rule::MinI64 { .. } => {
                let v = i64_of(&value)?;
                let least = self.least.entry(key).or_insert(v);
                *least = (*least).min(v);
            }
            Rule::Shared { .. } => self.whole.push((key, value)),
        }
        Ok(())
    }

    /// One old slot: its rows still held and owned here become a new slot.
    fn add_slot(&mut self, s: SlotIn, key: &KeyOf, owned: &Owned) -> Result<()> {
        let cols = decode_columns(s.rows)?;
        let n = cols.first().map_or(0, |c| c.len());
        let slot = &s.key[s.prefix.len() + 2..];
        let bits = |kind: &[u8]| -> Result<Vec<bool>> {
            let k = [s.prefix, kind, slot].concat();
            Ok(match s.state.get(&k)? {
                Some(b) => crate::operators::row_slots::unbitmap(&b, n),
                None => vec![false; n],
            })
        };
        let gone = bits(b"r/")?;
        let mine = owned.rows(&cols, key)?;
        let keep: Vec<u32> = (0..n as u32)
            .filter(|i| mine[*i as usize] && !gone[*i as usize])
            .collect();
        if keep.is_empty() {
            return Ok(());
        }
        let idx = UInt32Array::from(keep.clone());
        let rows = cols
            .iter()
            .map(|c| Ok(take(c, &idx, None)?))
            .collect::<Result<Vec<_>>>()?;
        let id = self.next_slot.entry(s.prefix.to_vec()).or_insert(0);
        let new = id.to_be_bytes();
        *id += 1;
        self.whole
            .push(([s.prefix, b"b/", &new].concat(), encode_columns(&rows)?));
        if s.matched {
            let matched = bits(b"m/")?;
            let kept: Vec<bool> = keep.iter().map(|i| matched[*i as usize]).collect();
            let bytes = crate::operators::row_slots::bitmap(&kept);
            self.whole.push(([s.prefix, b"m/", &new].concat(), bytes));
        }
        Ok(())
    }

    /// Write the entries ready so far.
    fn flush(&mut self, into: &mut dyn StateBackend) -> Result<()> {
        into.put_all(&std::mem::take(&mut self.whole))
    }

    /// Write the rest: the smallest values and the joined columns.
    fn finish(self, into: &mut dyn StateBackend) -> Result<()> {
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = self
            .least
            .into_iter()
            .map(|(k, v)| (k, v.to_be_bytes().to_vec()))
            .collect();
        for (key, parts) in self.columns {
            let width = parts[0].len();
            let cols = (0..width)
                .map(|c| {
                    let arrays: Vec<&dyn datafusion::arrow::array::Array> =
                        parts.iter().map(|p| p[c].as_ref()).collect();
                    Ok(concat(&arrays)?)
                })
                .collect::<Result<Vec<_>>>()?;
            entries.push((key, encode_columns(&cols)?));
        }
        for chunk in entries.chunks(4096) {
            into.put_all(chunk)?;
        }
        Ok(())
    }
}

/// One old slot being divided.
struct SlotIn<'a> {
    state: &'a dyn StateBackend,
    prefix: &'a [u8],
    key: &'a [u8],
    rows: &'a [u8],
    matched: bool,
}

fn i64_of(b: &[u8]) -> Result<i64> {
    let arr: [u8; 8] = b
        .try_into()
        .map_err(|_| EngineError::State("a watermark entry is not 8 bytes".into()))?;
    Ok(i64::from_be_bytes(arr))
}

#[cfg(test)]
#[path = "rescale_tests.rs"]
mod tests;
