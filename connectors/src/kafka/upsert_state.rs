//! What an upsert topic must receive for a changelog (Flink's `SinkUpsertMaterializer` idea).
//!
//! An upsert topic holds one value per key, but a changelog can take a row away without
//! putting another in its place: a group stops passing `HAVING`, a `WHERE` over an aggregate
//! turns false, a row falls out of a top-N. Those arrive as a `-U` (or `-D`) with no `+U` after
//! it, and the key's last value must become a tombstone. Keys of the query can also be finer
//! than the table's `PRIMARY KEY`, so several rows share one message key.
//!
//! The materializer keeps, per message key, the rows the result holds under it (in arrival
//! order); a retraction removes an equal row. After each batch every key it touched is
//! compared with what the topic last showed: a key whose rows are gone gets a tombstone, a key
//! whose newest row changed gets that row. A `-U` and its `+U` in one batch are one write, and
//! nothing is written for a key that ends a batch as it began.
//!
//! The rows live in memory and, in a checkpointing job, in the checkpoint (see
//! [`super::upsert_store`]): [`Materializer::changes`] gives the keys changed since the last
//! checkpoint, so a restarted sink holds exactly the rows it held at the checkpoint it restarts
//! from. Without checkpoints, a retraction the materializer does not know (of a row from before
//! a restart) writes its key again from what is known (a tombstone when no row is left).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BinaryArray, BinaryBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use weir_engine::changelog::RowKind;
use weir_engine::Result;

/// The rows of the result by message key.
pub(crate) struct Materializer {
    key_columns: Vec<usize>,
    keys: RowConverter,
    rows: RowConverter,
    table: HashMap<OwnedRow, Vec<OwnedRow>>,
    /// Keys changed since the last [`Materializer::changes`]; `None` until something saves
    /// them ([`Materializer::track_changes`]), so a job without checkpoints keeps no such set.
    dirty: Option<HashSet<OwnedRow>>,
}

/// The schema of materializer state: one record per held row (`row` null: the key holds none).
pub(crate) fn state_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Binary, false),
        Field::new("row", DataType::Binary, true),
    ]))
}

/// A key a batch touched: what the topic showed before it.
struct Touched {
    key: OwnedRow,
    before: Option<OwnedRow>,
    /// A retraction missed (state from before a restart): write the key whatever it holds.
    unsure: bool,
    /// A row of the key seen in this batch (its key columns make the tombstone's key).
    seen: OwnedRow,
}

/// The records to write: each row as the key's value, or as a tombstone for its key.
pub(crate) struct Writes {
    /// One row per record (the value columns; a tombstone's row carries only its key).
    pub rows: RecordBatch,
    /// Whether each record is a tombstone.
    pub tombstones: Vec<bool>,
}

impl Materializer {
    /// A materializer for rows of `schema` whose message key is `key_columns`.
    pub fn new(schema: SchemaRef, key_columns: Vec<usize>) -> Result<Materializer> {
        let sort = |i: &usize| SortField::new(schema.field(*i).data_type().clone());
        let keys = RowConverter::new(key_columns.iter().map(sort).collect())?;
        let all: Vec<usize> = (0..schema.fields().len()).collect();
        let rows = RowConverter::new(all.iter().map(sort).collect())?;
        Ok(Materializer {
            key_columns,
            keys,
            rows,
            table: HashMap::new(),
            dirty: None,
        })
    }

    /// Remember the keys each batch changes, for [`Materializer::changes`].
    pub fn track_changes(&mut self) {
        self.dirty.get_or_insert_with(HashSet::new);
    }

    /// Whether a key changed since the last [`Materializer::changes`].
    pub fn has_changes(&self) -> bool {
        self.dirty.as_ref().is_some_and(|d| !d.is_empty())
    }

    /// The rows of the keys changed since the last call (every key when `all`), in
    /// [`state_schema`]: each held row, or one null row for a key that holds none now.
    pub fn changes(&mut self, all: bool) -> Result<RecordBatch> {
        let dirty = self.dirty.as_mut().map(std::mem::take).unwrap_or_default();
        let keys: Vec<&OwnedRow> = match all {
            true => self.table.keys().collect(),
            false => dirty.iter().collect(),
        };
        let (mut k, mut r) = (BinaryBuilder::new(), BinaryBuilder::new());
        for key in keys {
            match self.table.get(key).filter(|rows| !rows.is_empty()) {
                None => {
                    k.append_value(key.as_ref());
                    r.append_null();
                }
                Some(rows) => {
                    for row in rows {
                        k.append_value(key.as_ref());
                        r.append_value(row.as_ref());
                    }
                }
            }
        }
        let cols: Vec<ArrayRef> = vec![Arc::new(k.finish()), Arc::new(r.finish())];
        Ok(RecordBatch::try_new(state_schema(), cols)?)
    }

    /// Apply state written by [`Materializer::changes`]: each key listed holds exactly its
    /// rows there. Bytes that are not rows of this table are an error, never a panic.
    pub fn load(&mut self, batch: &RecordBatch) -> Result<()> {
        let bad =
            |what: &str| weir_engine::EngineError::State(format!("upsert sink state: {what}"));
        let binary = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<BinaryArray>()
                .cloned()
        };
        let (Some(keys), Some(rows)) = (binary(0), binary(1)) else {
            return Err(bad("not a key and a row column"));
        };
        let (kp, rp) = (self.keys.parser(), self.rows.parser());
        let mut seen: HashSet<OwnedRow> = HashSet::new();
        for i in 0..batch.num_rows() {
            let key = kp.parse(keys.value(i)).owned();
            if seen.insert(key.clone()) {
                self.table.remove(&key);
            }
            if rows.is_valid(i) {
                let row = rp.parse(rows.value(i)).owned();
                self.table.entry(key).or_default().push(row);
            }
        }
        self.check()
            .map_err(|_| bad("rows that do not fit the table's columns"))
    }

    /// Every held row converts back to columns (a corrupt state file panics in arrow-row).
    fn check(&self) -> Result<(), ()> {
        let convert = || {
            let rows = self.table.values().flatten().map(|r| r.row());
            let keys = self.table.keys().map(|k| k.row());
            self.rows.convert_rows(rows).is_ok() && self.keys.convert_rows(keys).is_ok()
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(convert)) {
            Ok(true) => Ok(()),
            _ => Err(()),
        }
    }

    /// Apply a batch of changes; the records the topic needs for them.
    pub fn apply(&mut self, kinds: &[RowKind], batch: &RecordBatch) -> Result<Writes> {
        let rows = self.rows.convert_columns(batch.columns())?;
        let key_cols: Vec<_> = self
            .key_columns
            .iter()
            .map(|i| batch.column(*i).clone())
            .collect();
        let keys = self.keys.convert_columns(&key_cols)?;
        let mut touched: Vec<Touched> = Vec::new();
        let mut index: HashMap<OwnedRow, usize> = HashMap::new();
        for (i, kind) in kinds.iter().enumerate() {
            let key = keys.row(i).owned();
            let row = rows.row(i).owned();
            let held = self.table.entry(key.clone()).or_default();
            let t = *index.entry(key.clone()).or_insert_with(|| {
                touched.push(Touched {
                    key,
                    before: held.last().cloned(),
                    unsure: false,
                    seen: row.clone(),
                });
                touched.len() - 1
            });
            match kind {
                RowKind::Insert | RowKind::UpdateAfter => held.push(row),
                RowKind::UpdateBefore | RowKind::Delete => {
                    match held.iter().rposition(|r| *r == row) {
                        Some(at) => drop(held.remove(at)),
                        None => touched[t].unsure = true,
                    }
                    touched[t].seen = row;
                }
            }
        }
        self.writes(touched, batch.schema())
    }

    fn writes(&mut self, touched: Vec<Touched>, schema: SchemaRef) -> Result<Writes> {
        let mut out: Vec<OwnedRow> = Vec::new();
        let mut tombstones = Vec::new();
        for t in touched {
            if let Some(d) = self.dirty.as_mut() {
                d.insert(t.key.clone());
            }
            let now = self.table.get(&t.key).and_then(|r| r.last()).cloned();
            match now {
                None => {
                    self.table.remove(&t.key);
                    if t.before.is_some() || t.unsure {
                        out.push(t.before.unwrap_or(t.seen));
                        tombstones.push(true);
                    }
                }
                Some(row) if t.unsure || t.before.as_ref() != Some(&row) => {
                    out.push(row);
                    tombstones.push(false);
                }
                Some(_) => {}
            }
        }
        let columns = self.rows.convert_rows(out.iter().map(|r| r.row()))?;
        let rows = match out.is_empty() {
            true => RecordBatch::new_empty(schema),
            false => RecordBatch::try_new(schema, columns)?,
        };
        Ok(Writes { rows, tombstones })
    }

    /// Keys with at least one row.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, ArrayRef, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    use RowKind::*;

    /// Rows `(k STRING, n BIGINT)`, the message key `k`.
    pub(crate) fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]))
    }

    pub(crate) fn batch(rows: &[(&str, i64)]) -> RecordBatch {
        let k: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1)));
        RecordBatch::try_new(schema(), vec![k, n]).unwrap()
    }

    /// The records written for `changes`: (key, value or None for a tombstone).
    fn apply(m: &mut Materializer, changes: &[(RowKind, &str, i64)]) -> Vec<(String, Option<i64>)> {
        let kinds: Vec<RowKind> = changes.iter().map(|c| c.0).collect();
        let rows: Vec<(&str, i64)> = changes.iter().map(|c| (c.1, c.2)).collect();
        let w = m.apply(&kinds, &batch(&rows)).unwrap();
        let k = w
            .rows
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let n = w
            .rows
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        (0..k.len())
            .map(|i| {
                (
                    k.value(i).to_string(),
                    (!w.tombstones[i]).then(|| n.value(i)),
                )
            })
            .collect()
    }

    #[test]
    fn an_update_is_one_write_and_a_row_that_leaves_is_a_tombstone() {
        let mut m = Materializer::new(schema(), vec![0]).unwrap();
        assert_eq!(apply(&mut m, &[(Insert, "a", 1)]), [("a".into(), Some(1))]);
        let update = [(UpdateBefore, "a", 1), (UpdateAfter, "a", 2)];
        assert_eq!(apply(&mut m, &update), [("a".into(), Some(2))]);
        // HAVING turned false: the -U has no +U after it.
        assert_eq!(
            apply(&mut m, &[(UpdateBefore, "a", 2)]),
            [("a".into(), None)]
        );
        assert_eq!(m.len(), 0, "a key with no rows is forgotten");
        // A row that comes and goes within one batch writes nothing.
        assert!(apply(&mut m, &[(Insert, "b", 1), (Delete, "b", 1)]).is_empty());
    }

    #[test]
    fn rows_sharing_a_message_key_show_the_newest_and_reveal_the_older_one() {
        let mut m = Materializer::new(schema(), vec![0]).unwrap();
        apply(&mut m, &[(Insert, "a", 1), (Insert, "a", 5)]);
        assert_eq!(apply(&mut m, &[(Delete, "a", 5)]), [("a".into(), Some(1))]);
        assert!(
            apply(&mut m, &[(Delete, "a", 7)]).len() == 1,
            "an unknown row rewrites the key"
        );
        assert_eq!(apply(&mut m, &[(Delete, "a", 1)]), [("a".into(), None)]);
    }

    #[test]
    fn after_a_restart_a_retraction_of_an_unknown_row_still_ends_in_the_right_value() {
        let mut m = Materializer::new(schema(), vec![0]).unwrap();
        assert_eq!(
            apply(&mut m, &[(UpdateBefore, "a", 1)]),
            [("a".into(), None)]
        );
        let update = [(UpdateBefore, "b", 1), (UpdateAfter, "b", 2)];
        assert_eq!(apply(&mut m, &update), [("b".into(), Some(2))]);
    }
}
