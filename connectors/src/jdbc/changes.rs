//! A buffer of sink rows reduced to what the target table must receive.
//!
//! An append sink writes every row. An upsert sink writes, per primary key, only the last
//! change of the buffer: a `+I`/`+U` is the row the key now has, a `-D` deletes it. A `-U`
//! deletes it too unless the planner vouched that every `-U` has its `+U` (an upsert key, see
//! `SinkContext::upsert_key`): a row leaving a `HAVING` result leaves by a lone `-U`. A `-U`
//! whose `+U` comes in the next buffer is then a delete followed by an insert, and the final
//! table is the same. One statement can then upsert the whole buffer: PostgreSQL refuses
//! `ON CONFLICT DO UPDATE` touching a key twice.

use std::collections::HashMap;

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use weir_engine::changelog::{has_op, split_op, RowKind};
use weir_engine::{EngineError, Result};

use super::NAME;

/// The rows to write and, for an upsert sink, which of them are deletes.
pub(crate) struct Changes {
    pub rows: RecordBatch,
    /// Per row of `rows`: the key leaves (upsert sinks only).
    pub deletes: Option<Vec<bool>>,
}

/// Reduce `batches` (with an `op` column first when the input is a changelog) to the rows the
/// target receives; `key` holds positions of the primary key among the data columns (empty for
/// an append sink). `data_schema` is the schema without the `op` column.
pub(crate) fn reduce(
    batches: &[RecordBatch],
    data_schema: &SchemaRef,
    key: &[usize],
    paired_update_befores: bool,
) -> Result<Changes> {
    let mut kinds = Vec::new();
    let mut data = Vec::with_capacity(batches.len());
    for b in batches {
        if has_op(&b.schema()) {
            let (k, rows) = split_op(b)?;
            kinds.extend(k);
            data.push(rows);
        } else {
            kinds.extend(std::iter::repeat_n(RowKind::Insert, b.num_rows()));
            data.push(b.clone());
        }
    }
    let rows = concat_batches(data_schema, &data).map_err(arrow_err)?;
    if key.is_empty() {
        return Ok(Changes {
            rows,
            deletes: None,
        });
    }
    let keep = last_change_per_key(&rows, &kinds, key, paired_update_befores)?;
    let deletes = keep
        .iter()
        .map(|&i| kinds[i as usize].is_retraction())
        .collect();
    let rows = take_record_batch(&rows, &UInt32Array::from(keep)).map_err(arrow_err)?;
    Ok(Changes {
        rows,
        deletes: Some(deletes),
    })
}

/// Indexes of each key's last change (skipping `-U`s that have their `+U`), in row order.
fn last_change_per_key(
    rows: &RecordBatch,
    kinds: &[RowKind],
    key: &[usize],
    paired_update_befores: bool,
) -> Result<Vec<u32>> {
    let cols: Vec<_> = key.iter().map(|&k| rows.column(k).clone()).collect();
    let fields = cols
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    let conv = RowConverter::new(fields).map_err(arrow_err)?;
    let keys = conv.convert_columns(&cols).map_err(arrow_err)?;
    let mut last: HashMap<&[u8], u32> = HashMap::with_capacity(rows.num_rows());
    for (i, kind) in kinds.iter().enumerate() {
        if !(paired_update_befores && *kind == RowKind::UpdateBefore) {
            last.insert(keys.row(i).data(), i as u32);
        }
    }
    let mut keep: Vec<u32> = last.into_values().collect();
    keep.sort_unstable();
    Ok(keep)
}

fn arrow_err(e: datafusion::arrow::error::ArrowError) -> EngineError {
    EngineError::connector(NAME, e.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use weir_engine::changelog::op_field;

    use super::*;

    fn changelog(ops: &[RowKind], keys: &[&str], vals: &[i64]) -> (RecordBatch, SchemaRef) {
        let data = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let mut fields = vec![Arc::new(op_field())];
        fields.extend(data.fields().iter().cloned());
        let schema = Arc::new(Schema::new(fields));
        let ops = StringArray::from(ops.iter().map(|k| k.short()).collect::<Vec<_>>());
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(ops),
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(vals.to_vec())),
            ],
        )
        .unwrap();
        (b, data)
    }

    #[test]
    fn each_key_keeps_its_last_change_and_paired_update_befores_are_skipped() {
        use RowKind::*;
        let (b, data) = changelog(
            &[
                Insert,
                Insert,
                UpdateBefore,
                UpdateAfter,
                Insert,
                Delete,
                UpdateBefore,
            ],
            &["a", "b", "a", "a", "c", "b", "c"],
            &[1, 2, 1, 5, 7, 2, 7],
        );
        let c = reduce(std::slice::from_ref(&b), &data, &[0], true).unwrap();
        let keys = c.rows.column(0).as_string::<i32>();
        let vals = c.rows.column(1).as_primitive::<Int64Type>();
        let got: Vec<(String, i64, bool)> = (0..c.rows.num_rows())
            .map(|i| {
                (
                    keys.value(i).to_string(),
                    vals.value(i),
                    c.deletes.as_ref().unwrap()[i],
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a".into(), 5, false),
                ("c".into(), 7, false),
                ("b".into(), 2, true)
            ]
        );
        // Without the planner's word a lone -U is a row leaving (a HAVING): `c` goes.
        let c = reduce(&[b], &data, &[0], false).unwrap();
        let deletes = c.deletes.unwrap();
        assert_eq!(deletes, [false, true, true], "a stays, b and c leave");
    }

    #[test]
    fn an_append_sink_keeps_every_row() {
        let (b, data) = changelog(&[RowKind::Insert; 3], &["a", "a", "b"], &[1, 2, 3]);
        let c = reduce(&[b.clone(), b], &data, &[], false).unwrap();
        assert_eq!(c.rows.num_rows(), 6);
        assert!(c.deletes.is_none());
        assert_eq!(c.rows.column(0).len(), 6);
    }
}
