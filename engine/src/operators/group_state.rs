//! Keyed state in checkpoints, one entry per key (GROUP BY groups, top-N partitions): a barrier
//! writes only the keys changed since the last one, so a checkpoint costs what changed, not the
//! number of keys.
//!
//! GROUP BY entry `g/k/<key in Arrow row format>` holds the group's net row count (8 bytes LE)
//! and then, per aggregate, its state's length (4 bytes LE) and bytes; top-N entries live under
//! `r/k/` (see [`super::rank`]). The RocksDB checkpoint that follows hard-links the SST files it
//! already has, so unchanged keys cost no I/O either. A TTL sweep renumbers the keys; the next
//! barrier then rewrites every entry.

use datafusion::arrow::row::{RowConverter, Rows};

use super::retract::RetractAcc;
use crate::error::{EngineError, Result};
use crate::state::StateBackend;

/// Where the per-key entries live.
pub(crate) const KEY_PREFIX: &[u8] = b"g/k/";
/// The whole-table entry of checkpoints written before per-key entries (still read).
pub(crate) const LEGACY_KEY: &[u8] = b"g/groups";
/// Entries written or read at once.
const CHUNK: usize = 65_536;

/// What changed since the last snapshot.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    groups: Vec<usize>,
    flags: Vec<bool>,
    all: bool,
}

/// What a snapshot must write.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Changed {
    /// Every group (the groups were renumbered): clear the entries, then write all.
    All,
    /// These groups.
    Groups(Vec<usize>),
}

impl Dirty {
    /// `groups` changed.
    pub fn touch(&mut self, groups: &[usize]) {
        if self.all {
            return;
        }
        for &g in groups {
            if g >= self.flags.len() {
                self.flags.resize(g + 1, false);
            }
            if !self.flags[g] {
                self.flags[g] = true;
                self.groups.push(g);
            }
        }
    }

    /// Every group changed (they were renumbered).
    pub fn all(&mut self) {
        self.all = true;
        self.groups.clear();
        self.flags.clear();
    }

    /// What to write now; `None` when nothing changed.
    pub fn take(&mut self) -> Option<Changed> {
        if std::mem::take(&mut self.all) {
            return Some(Changed::All);
        }
        if self.groups.is_empty() {
            return None;
        }
        self.flags.clear();
        Some(Changed::Groups(std::mem::take(&mut self.groups)))
    }
}

/// The groups of a GROUP BY as the snapshot sees them.
pub(crate) struct GroupsView<'a> {
    /// Each group's key in row format.
    pub keys: &'a Rows,
    /// Net input rows per group.
    pub counts: &'a [i64],
    /// Every aggregate's state.
    pub accs: &'a [RetractAcc],
}

/// Write the entries of `changed` groups.
pub(crate) fn write(
    state: &mut dyn StateBackend,
    view: &GroupsView,
    changed: Changed,
) -> Result<()> {
    let keys = KeyedEntries {
        prefix: KEY_PREFIX,
        keys: view.keys,
        len: view.counts.len(),
    };
    keys.write(state, changed, |g| entry_value(view, g))
}

/// Keys in row format, each with an entry under `prefix`.
pub(crate) struct KeyedEntries<'a> {
    pub prefix: &'a [u8],
    pub keys: &'a Rows,
    /// How many keys there are (0..len).
    pub len: usize,
}

impl KeyedEntries<'_> {
    /// Write the entries of the `changed` keys, `value(key number)` each.
    pub fn write(
        &self,
        state: &mut dyn StateBackend,
        changed: Changed,
        value: impl Fn(usize) -> Vec<u8>,
    ) -> Result<()> {
        let groups: Vec<usize> = match changed {
            Changed::All => {
                state.delete_prefix(self.prefix)?;
                (0..self.len).collect()
            }
            Changed::Groups(g) => g,
        };
        for chunk in groups.chunks(CHUNK) {
            let entries: Vec<(Vec<u8>, Vec<u8>)> = chunk
                .iter()
                .map(|g| {
                    (
                        [self.prefix, self.keys.row(*g).as_ref()].concat(),
                        value(*g),
                    )
                })
                .collect();
            state.put_all(&entries)?;
        }
        Ok(())
    }
}

fn entry_value(view: &GroupsView, g: usize) -> Vec<u8> {
    let mut out = view.counts[g].to_le_bytes().to_vec();
    for acc in view.accs {
        let state = acc.encode_group(g);
        out.extend((state.len() as u32).to_le_bytes());
        out.extend(state);
    }
    out
}

/// One entry read back: the group's key row and its value.
pub(crate) struct Entry {
    /// The key in row format.
    pub key: Vec<u8>,
    /// The count and aggregate states.
    pub value: Vec<u8>,
}

/// Read every GROUP BY entry, a chunk at a time, passing each chunk to `load`.
pub(crate) fn read(
    state: &dyn StateBackend,
    load: impl FnMut(Vec<Entry>) -> Result<()>,
) -> Result<()> {
    read_prefix(state, KEY_PREFIX, load)
}

/// Read every per-key entry under `prefix`, a chunk at a time, passing each chunk to `load`.
pub(crate) fn read_prefix(
    state: &dyn StateBackend,
    prefix: &[u8],
    mut load: impl FnMut(Vec<Entry>) -> Result<()>,
) -> Result<()> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let chunk = state.scan_chunk(prefix, after.as_deref(), CHUNK)?;
        let Some((last, _)) = chunk.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        let entries = chunk
            .into_iter()
            .map(|(k, value)| Entry {
                key: k[prefix.len()..].to_vec(),
                value,
            })
            .collect();
        load(entries)?;
    }
}

/// Key columns of entries' rows. arrow-row trusts row bytes it is given, so corrupt ones may
/// panic inside it: that is an error here.
pub(crate) fn key_columns(
    converter: &RowConverter,
    entries: &[Entry],
) -> Result<Vec<datafusion::arrow::array::ArrayRef>> {
    let parser = converter.parser();
    let decode = || converter.convert_rows(entries.iter().map(|e| parser.parse(&e.key)));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)) {
        Ok(columns) => Ok(columns?),
        Err(_) => Err(EngineError::State("corrupt key in operator state".into())),
    }
}

/// Load an entry's value into group `g`: its count, then each aggregate's state.
pub(crate) fn load_value(value: &[u8], g: usize, accs: &mut [RetractAcc]) -> Result<i64> {
    let corrupt = || EngineError::State("corrupt GROUP BY state entry".into());
    let count = i64::from_le_bytes(
        value
            .get(..8)
            .ok_or_else(corrupt)?
            .try_into()
            .unwrap_or_default(),
    );
    let mut rest = &value[8..];
    for acc in accs {
        let len = rest.get(..4).ok_or_else(corrupt)?;
        let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
        let state = rest.get(4..4 + len).ok_or_else(corrupt)?;
        acc.decode_group(g, state).ok_or_else(corrupt)?;
        rest = &rest[4 + len..];
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_writes_each_changed_group_once_and_everything_after_a_renumbering() {
        let mut d = Dirty::default();
        assert_eq!(d.take(), None);
        d.touch(&[3, 1, 3]);
        d.touch(&[1, 0]);
        assert_eq!(d.take(), Some(Changed::Groups(vec![3, 1, 0])));
        assert_eq!(d.take(), None, "nothing changed since");
        d.touch(&[2]);
        d.all();
        d.touch(&[5]);
        assert_eq!(d.take(), Some(Changed::All));
        d.touch(&[2]);
        assert_eq!(d.take(), Some(Changed::Groups(vec![2])));
    }
}
