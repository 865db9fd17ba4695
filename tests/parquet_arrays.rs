//! Arrow arrays for the Parquet tests: the rows of every nested and precise type, built in the
//! table's own types or as another writer (Spark, pyarrow, parquet-mr) would lay them out
//! (lists of `element`, maps of `key_value` entries, `key`/`value` fields, wider or narrower
//! units), and Parquet files of them written with the `parquet` crate.

use std::path::Path;
use std::sync::Arc;

use ::parquet::arrow::arrow_writer::ArrowWriterOptions;
use ::parquet::arrow::ArrowWriter;
use weir::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, BinaryArray, Float32Array, Int16Array, Int32Array,
    Int8Array, ListBuilder, MapBuilder, MapFieldNames, PrimitiveBuilder, StringBuilder,
    Time64MicrosecondArray, TimestampMicrosecondArray, TimestampNanosecondArray,
};
use weir::arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use weir::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, TimestampNanosecondType};
use weir::arrow::record_batch::RecordBatch;

pub type Rows<T> = [Option<Vec<Option<T>>>];
pub type MapRows<'a, V = i32> = [Option<Vec<(&'a str, Option<V>)>>];

/// A list array of strings whose items are `item`.
pub fn string_lists(item: Field, rows: &Rows<&str>) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new()).with_field(item);
    for row in rows {
        match row {
            Some(items) => b.append_value(items.iter().copied()),
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

/// A list array of `T` whose items are `item`.
pub fn primitive_lists<T: ArrowPrimitiveType>(item: Field, rows: &Rows<i64>) -> ArrayRef
where
    T::Native: TryFrom<i64>,
{
    let values = PrimitiveBuilder::<T>::new().with_data_type(item.data_type().clone());
    let mut b = ListBuilder::new(values).with_field(item);
    for row in rows {
        match row {
            Some(items) => {
                let native = items
                    .iter()
                    .map(|v| v.and_then(|v| T::Native::try_from(v).ok()));
                b.append_value(native)
            }
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

/// A map array from strings to `T`, its entries named as `names` says.
pub fn int_maps<T: ArrowPrimitiveType>(names: Option<MapFieldNames>, rows: &MapRows) -> ArrayRef
where
    T::Native: From<i32>,
{
    let mut b = MapBuilder::new(names, StringBuilder::new(), PrimitiveBuilder::<T>::new());
    for row in rows {
        for (k, v) in row.iter().flatten() {
            b.keys().append_value(k);
            b.values().append_option(v.map(T::Native::from));
        }
        b.append(row.is_some()).expect("map row");
    }
    Arc::new(b.finish())
}

/// A map array from strings to strings, as `MAP<STRING, STRING>` holds it.
pub fn string_maps(rows: &MapRows<&str>) -> ArrayRef {
    let mut b = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for row in rows {
        for (k, v) in row.iter().flatten() {
            b.keys().append_value(k);
            b.values().append_option(*v);
        }
        b.append(row.is_some()).expect("map row");
    }
    Arc::new(b.finish())
}

/// The names of the entries of a map as Parquet's spec (and Spark, pyarrow) write them.
pub fn parquet_map_names() -> Option<MapFieldNames> {
    Some(MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    })
}

/// Columns of a batch, all nullable.
pub fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).expect("batch")
}

pub const NESTED: &str = "id INT, bin BYTES, tiny TINYINT, small SMALLINT, f FLOAT, tm TIME, \
    ts6 TIMESTAMP(6), ts9 TIMESTAMP(9), lt6 TIMESTAMP_LTZ(6), lt9 TIMESTAMP_LTZ(9), \
    tags ARRAY<STRING>, nums ARRAY<BIGINT>, grid ARRAY<ARRAY<INT> >, stamps ARRAY<TIMESTAMP(9)>, \
    attrs MAP<STRING, BIGINT>, labels MAP<STRING, STRING>";

/// Four rows of the `NESTED` columns, in the table's Arrow types: values at the edges of their
/// ranges and precisions, NULL arrays and maps, NULL elements, empty arrays and maps.
pub fn nested_rows() -> RecordBatch {
    let us = [Some(1_704_067_201_123_456), None, Some(-1), Some(0)];
    let ns = [
        Some(1_704_067_201_123_456_789),
        None,
        Some(-1_000_000_001),
        Some(1),
    ];
    let item = |t: DataType| Field::new("item", t, true);
    let grid_item = Field::new("item", DataType::new_list(DataType::Int32, true), true);
    let mut grid = ListBuilder::new(ListBuilder::new(PrimitiveBuilder::<Int32Type>::new()))
        .with_field(grid_item);
    for row in [vec![Some(vec![Some(1), None]), Some(vec![]), None], vec![]] {
        grid.append_value(row);
    }
    grid.append_null();
    grid.append_value([Some(vec![Some(i32::MIN), Some(i32::MAX)])]);
    batch(vec![
        ("id", Arc::new(Int32Array::from(vec![0, 1, 2, 3]))),
        (
            "bin",
            Arc::new(BinaryArray::from(vec![
                Some(&b"\x00\xffab"[..]),
                None,
                Some(b""),
                Some(b"x"),
            ])),
        ),
        (
            "tiny",
            Arc::new(Int8Array::from(vec![
                Some(i8::MIN),
                None,
                Some(i8::MAX),
                Some(0),
            ])),
        ),
        (
            "small",
            Arc::new(Int16Array::from(vec![
                Some(i16::MIN),
                None,
                Some(i16::MAX),
                Some(7),
            ])),
        ),
        (
            "f",
            Arc::new(Float32Array::from(vec![
                Some(1.25f32),
                None,
                Some(-3.4e38),
                Some(f32::MIN_POSITIVE),
            ])),
        ),
        (
            "tm",
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(45_296_789_012),
                None,
                Some(0),
                Some(86_399_999_999),
            ])),
        ),
        (
            "ts6",
            Arc::new(TimestampMicrosecondArray::from(us.to_vec())),
        ),
        ("ts9", Arc::new(TimestampNanosecondArray::from(ns.to_vec()))),
        (
            "lt6",
            Arc::new(TimestampMicrosecondArray::from(us.to_vec()).with_timezone("UTC")),
        ),
        (
            "lt9",
            Arc::new(TimestampNanosecondArray::from(ns.to_vec()).with_timezone("UTC")),
        ),
        (
            "tags",
            string_lists(
                item(DataType::Utf8),
                &[
                    Some(vec![Some("a"), None, Some("ç")]),
                    None,
                    Some(vec![]),
                    Some(vec![None]),
                ],
            ),
        ),
        (
            "nums",
            primitive_lists::<Int64Type>(
                item(DataType::Int64),
                &[
                    Some(vec![Some(1), None, Some(i64::MAX)]),
                    None,
                    Some(vec![]),
                    Some(vec![Some(i64::MIN)]),
                ],
            ),
        ),
        ("grid", Arc::new(grid.finish())),
        (
            "stamps",
            primitive_lists::<TimestampNanosecondType>(
                item(DataType::Timestamp(
                    weir::arrow::datatypes::TimeUnit::Nanosecond,
                    None,
                )),
                &[
                    Some(vec![ns[0], None]),
                    None,
                    Some(vec![ns[2]]),
                    Some(vec![]),
                ],
            ),
        ),
        (
            "attrs",
            int_maps::<Int64Type>(
                None,
                &[
                    Some(vec![("x", Some(1)), ("y", None)]),
                    None,
                    Some(vec![]),
                    Some(vec![("z", Some(-5))]),
                ],
            ),
        ),
        (
            "labels",
            string_maps(&[
                Some(vec![("k", Some("v")), ("n", None)]),
                None,
                Some(vec![]),
                Some(vec![("", Some(""))]),
            ]),
        ),
    ])
}

/// Write `batch` as one Parquet file at `path` with the `parquet` crate; without the embedded
/// Arrow schema when `arrow_schema` is false (as Spark and parquet-mr write files).
pub fn write_parquet(path: &Path, batch: &RecordBatch, arrow_schema: bool) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    let options = ArrowWriterOptions::new().with_skip_arrow_metadata(!arrow_schema);
    let file = std::fs::File::create(path).expect("create");
    let mut w = ArrowWriter::try_new_with_options(file, batch.schema(), options).expect("writer");
    w.write(batch).expect("write");
    w.close().expect("close");
}

/// Run a script ending in a query; its rows as one batch ordered by column `id`.
pub async fn query_batch(sql: &str) -> RecordBatch {
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let stream = engine.query(sql).await.unwrap_or_else(|e| panic!("{e}"));
    let batches = stream.collect().await.unwrap_or_else(|e| panic!("{e}"));
    let all = concat_batches(&batches[0].schema(), &batches).expect("concat");
    let id = all.column_by_name("id").expect("an id column");
    take_record_batch(&all, &sort_to_indices(id, None, None).expect("sort")).expect("take")
}

/// Every column of `want` is in `got`, of the same type and values.
pub fn assert_same_columns(case: &str, got: &RecordBatch, want: &RecordBatch) {
    assert_eq!(got.num_rows(), want.num_rows(), "{case}: rows");
    for (field, col) in want.schema().fields().iter().zip(want.columns()) {
        let name = field.name();
        let g = got
            .column_by_name(name)
            .unwrap_or_else(|| panic!("{case}: no column {name}"));
        assert_eq!(g.data_type(), col.data_type(), "{case}: type of {name}");
        assert_eq!(g.to_data(), col.to_data(), "{case}: values of {name}");
    }
}
