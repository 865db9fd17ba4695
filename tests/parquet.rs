//! Parquet files through the engine (`'format' = 'parquet'` on the `filesystem` connector):
//! every type Weir reads round trips, `PARTITIONED BY` writes `column=value` directories that
//! read back with their partition columns, small files roll, and a checkpointing job crashed
//! mid-stream and recovered commits exactly Flink's rows as Parquet.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use weir::arrow::array::{
    Int32Array, Int64Array, RecordBatch, TimestampMicrosecondArray, TimestampNanosecondArray,
};
use weir::arrow::datatypes::{TimeUnit, TimestampMicrosecondType, TimestampMillisecondType};

use crate::checkpoints::{insert_job, run_and_crash, scratch};
use crate::common::*;
use crate::parquet_arrays::*;

/// A table `name (columns)` over `path` in `format`, with `extra` after the columns.
fn table(name: &str, columns: &str, extra: &str, path: &Path, format: &str) -> String {
    format!(
        "CREATE TABLE {name} ({columns}) {extra} WITH ('connector' = 'filesystem',
           'path' = '{}', 'format' = '{format}');",
        path.display()
    )
}

/// Run a script of INSERT jobs to its end.
async fn run_inserts(sql: &str) {
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let job = engine.submit(sql).await.unwrap();
    job.wait().await.unwrap();
}

/// The files under `dir`, as paths relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            match e.path().is_dir() {
                true => dirs.push(e.path()),
                false => out.push(e.path().strip_prefix(dir).unwrap().display().to_string()),
            }
        }
    }
    out.sort();
    out
}

const TYPES: &str = "b BOOLEAN, i INT, n BIGINT, d DOUBLE, m DECIMAL(10, 2), s STRING, \
    day DATE, ts TIMESTAMP(3), lt TIMESTAMP_LTZ(3)";

#[tokio::test]
async fn every_type_round_trips_through_a_parquet_file() {
    let d = scratch("parquet-types");
    let rows = [
        json!({"b": true, "i": 1, "n": 9_000_000_000i64, "d": 1.5, "m": "12.34", "s": "héllo",
               "day": "2024-01-01", "ts": "2024-01-01 00:00:01.250", "lt": "2024-01-01 00:00:02.000"}),
        json!({"b": null, "i": null, "n": null, "d": null, "m": null, "s": null,
               "day": null, "ts": null, "lt": null}),
        json!({"b": false, "i": -7, "n": -1, "d": -0.25, "m": "-0.01", "s": "",
               "day": "1999-12-31", "ts": "1970-01-01 00:00:00.000", "lt": "2030-06-30 23:59:59.999"}),
    ];
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(d.join("in.jsonl"), text).unwrap();
    let src = table("src", TYPES, "", &d.join("in.jsonl"), "json");
    let pq = table("pq", TYPES, "", &d.join("pq"), "parquet");
    run_inserts(&format!("{src} {pq} INSERT INTO pq SELECT * FROM src;")).await;
    assert_eq!(files(&d.join("pq")).len(), 1, "{:?}", files(&d.join("pq")));
    let want = run_query(&format!("{src} SELECT * FROM src;"), 4096).await;
    let got = run_query(&format!("{pq} SELECT * FROM pq;"), 4096).await;
    assert_same_rows("parquet types", &got, &want);
    assert_eq!(got.len(), 3);
}

#[tokio::test]
async fn partitioned_writes_make_directories_that_read_back_with_their_columns() {
    let d = scratch("parquet-partitioned");
    let columns = "sensor STRING, v BIGINT, dt STRING, facility STRING";
    let rows: Vec<Value> = (0..40)
        .map(|i| {
            let facility = if i % 3 == 0 {
                Value::Null
            } else {
                json!(format!("f-{}", i % 2))
            };
            json!({"sensor": format!("s-{i}"), "v": i, "dt": format!("2024-01-0{}", 1 + i % 2),
                   "facility": facility})
        })
        .collect();
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(d.join("in.jsonl"), text).unwrap();
    let src = table("src", columns, "", &d.join("in.jsonl"), "json");
    let pq = table(
        "pq",
        columns,
        "PARTITIONED BY (dt, facility)",
        &d.join("pq"),
        "parquet",
    );
    run_inserts(&format!("{src} {pq} INSERT INTO pq SELECT * FROM src;")).await;
    let dirs: std::collections::BTreeSet<String> = files(&d.join("pq"))
        .iter()
        .map(|f| f.rsplit_once('/').unwrap().0.to_string())
        .collect();
    let want_dirs = [
        "dt=2024-01-01/facility=__DEFAULT_PARTITION__",
        "dt=2024-01-01/facility=f-0",
        "dt=2024-01-02/facility=__DEFAULT_PARTITION__",
        "dt=2024-01-02/facility=f-1",
    ];
    assert_eq!(
        dirs.iter().collect::<Vec<_>>(),
        want_dirs.iter().collect::<Vec<_>>()
    );
    let got = run_query(&format!("{pq} SELECT * FROM pq;"), 4096).await;
    assert_same_rows("partitioned", &got, &rows);
}

#[tokio::test]
async fn a_part_file_rolls_over_past_its_size() {
    let d = scratch("parquet-rolling");
    let rows: String = (0..2000)
        .map(|i| format!("{}\n", json!({"k": format!("key-{i}"), "v": i})))
        .collect();
    std::fs::write(d.join("in.jsonl"), rows).unwrap();
    let src = table("src", "k STRING, v BIGINT", "", &d.join("in.jsonl"), "json");
    let pq = format!(
        "CREATE TABLE pq (k STRING, v BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}',
           'format' = 'parquet', 'sink.rolling-policy.file-size' = '1 kb',
           'parquet.compression' = 'zstd');",
        d.join("pq").display()
    );
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.set_batch_size(100);
    let job = engine
        .submit(&format!("{src} {pq} INSERT INTO pq SELECT * FROM src;"))
        .await
        .unwrap();
    job.wait().await.unwrap();
    let written = files(&d.join("pq"));
    assert!(written.len() > 5, "{written:?}");
    assert!(
        written.iter().all(|f| f.starts_with("part-")),
        "{written:?}"
    );
    let got = run_query(
        &format!("{pq} SELECT COUNT(*) AS n, SUM(v) AS s FROM pq;"),
        4096,
    )
    .await;
    assert_eq!(
        materialize(&got),
        vec![json!({"n": 2000, "s": 1999 * 1000})]
    );
}

#[tokio::test]
async fn a_crashed_job_writing_parquet_commits_exactly_flinks_rows() {
    let case = "tumble_tvf";
    let (out, ckpt) = (scratch("parquet-ck-out"), scratch("parquet-ck"));
    let sql = insert_job(case, &out).await.replace(
        "'format' = 'json');\nINSERT",
        "'format' = 'parquet');\nINSERT",
    );
    assert!(sql.contains("'parquet'"), "{sql}");
    let (crashed, _) = run_and_crash(&sql, &ckpt, 3, 1 << 30).await;
    let engine = crate::checkpoints::engine_with_memory(&ckpt, 1 << 30);
    engine.submit(&sql).await.unwrap().wait().await.unwrap();
    let ddl = &sql[sql.find("CREATE TABLE weir_out").unwrap()..sql.find("INSERT").unwrap()];
    let got = run_query(&format!("{ddl} SELECT * FROM weir_out;"), 4096).await;
    let expected = read_jsonl(
        &root()
            .join("tests/conformance")
            .join(case)
            .join("expected.jsonl"),
    );
    assert_same_rows("parquet recovery", &got, &expected);
    assert!(
        files(&out).iter().all(|f| !f.ends_with(".inprogress")),
        "crashed: {crashed}: {:?}",
        files(&out)
    );
}

#[tokio::test]
async fn nested_and_precise_types_round_trip_through_parquet() {
    let d = scratch("parquet-nested");
    let want = nested_rows();
    write_parquet(&d.join("in/part-0.parquet"), &want, true);
    let src = table("src", NESTED, "", &d.join("in"), "parquet");
    let pq = table("pq", NESTED, "", &d.join("pq"), "parquet");
    run_inserts(&format!("{src} {pq} INSERT INTO pq SELECT * FROM src;")).await;
    assert_eq!(files(&d.join("pq")).len(), 1, "{:?}", files(&d.join("pq")));
    let read = query_batch(&format!("{src} SELECT * FROM src;")).await;
    assert_same_columns("read", &read, &want);
    let got = query_batch(&format!("{pq} SELECT * FROM pq;")).await;
    assert_same_columns("written and read back", &got, &want);
    let projected = query_batch(&format!("{pq} SELECT id, grid, labels FROM pq;")).await;
    assert_same_columns(
        "projected",
        &projected,
        &want.project(&[0, 12, 15]).unwrap(),
    );
}

/// The `nested_rows` values as another writer lays them out: lists of non-null `element`s,
/// maps of `key_value` entries, narrower integers, microseconds for TIMESTAMP(3),
/// milliseconds for TIMESTAMP(9), large strings and binaries, an offset zone.
fn foreign_rows(want: &RecordBatch) -> RecordBatch {
    use weir::arrow::array::{
        Array, LargeBinaryArray, LargeStringArray, TimestampMillisecondArray,
    };
    use weir::arrow::datatypes::{DataType, Field, Int32Type};
    let element = |t: DataType, nullable| Field::new("element", t, nullable);
    let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
    let tags: &Rows<&str> = &[
        Some(vec![Some("a"), None, Some("ç")]),
        None,
        Some(vec![]),
        Some(vec![None]),
    ];
    batch(vec![
        ("id", want.column(0).clone()),
        ("extra", want.column(0).clone()),
        (
            "bin",
            std::sync::Arc::new(LargeBinaryArray::from(vec![
                Some(&b"\x00\xffab"[..]),
                None,
                Some(b""),
                Some(b"x"),
            ])),
        ),
        (
            "s",
            std::sync::Arc::new(LargeStringArray::from(vec![
                Some("é"),
                None,
                Some(""),
                Some("z"),
            ])),
        ),
        ("ts3", want.column(6).clone()),
        (
            "ts9",
            std::sync::Arc::new(TimestampMillisecondArray::from(vec![
                Some(1_704_067_201_123),
                None,
                Some(-1),
                Some(0),
            ])),
        ),
        (
            "lt6",
            std::sync::Arc::new(
                TimestampMicrosecondArray::from(want.column(6).to_data()).with_timezone("+00:00"),
            ),
        ),
        ("tags", string_lists(element(DataType::Utf8, true), tags)),
        (
            "stamps",
            primitive_lists::<TimestampMicrosecondType>(element(micros, true), &stamps()),
        ),
        (
            "nums",
            primitive_lists::<Int32Type>(
                element(DataType::Int32, false),
                &[
                    Some(vec![Some(1), Some(-2)]),
                    None,
                    Some(vec![]),
                    Some(vec![Some(i32::MAX as i64)]),
                ],
            ),
        ),
        (
            "attrs",
            int_maps::<Int32Type>(
                parquet_map_names(),
                &[
                    Some(vec![("x", Some(1)), ("y", None)]),
                    None,
                    Some(vec![]),
                    Some(vec![("z", Some(-5))]),
                ],
            ),
        ),
        (
            "n",
            std::sync::Arc::new(Int32Array::from(vec![
                Some(1),
                None,
                Some(i32::MIN),
                Some(3),
            ])),
        ),
    ])
}

/// Microseconds in a list, read as `ARRAY<TIMESTAMP(3)>`.
fn stamps() -> Vec<Option<Vec<Option<i64>>>> {
    vec![
        Some(vec![Some(1_704_067_201_123_999), None]),
        None,
        Some(vec![Some(-1)]),
        Some(vec![]),
    ]
}

const FOREIGN: &str = "id INT, bin BYTES, s STRING, ts3 TIMESTAMP(3), ts9 TIMESTAMP(9), \
    lt6 TIMESTAMP_LTZ(6), tags ARRAY<STRING>, stamps ARRAY<TIMESTAMP(3)>, nums ARRAY<BIGINT>, attrs MAP<STRING, BIGINT>, \
    n BIGINT, missing STRING";

/// `foreign_rows` as the `FOREIGN` table's columns hold them.
fn foreign_expected(want: &RecordBatch) -> RecordBatch {
    use weir::arrow::array::{new_null_array, StringArray, TimestampMillisecondArray};
    use weir::arrow::datatypes::{DataType, Field, Int64Type};
    let item = |t: DataType| Field::new("item", t, true);
    let millis = DataType::Timestamp(TimeUnit::Millisecond, None);
    let floored: Vec<_> = stamps()
        .iter()
        .map(|r| {
            r.as_ref()
                .map(|v| v.iter().map(|t| t.map(|t| t.div_euclid(1000))).collect())
        })
        .collect();
    batch(vec![
        ("id", want.column(0).clone()),
        ("bin", want.column(1).clone()),
        (
            "s",
            std::sync::Arc::new(StringArray::from(vec![
                Some("é"),
                None,
                Some(""),
                Some("z"),
            ])),
        ),
        (
            "ts3",
            std::sync::Arc::new(TimestampMillisecondArray::from(vec![
                Some(1_704_067_201_123),
                None,
                Some(-1),
                Some(0),
            ])),
        ),
        (
            "ts9",
            std::sync::Arc::new(TimestampNanosecondArray::from(vec![
                Some(1_704_067_201_123_000_000),
                None,
                Some(-1_000_000),
                Some(0),
            ])),
        ),
        ("lt6", want.column(8).clone()),
        ("tags", want.column(10).clone()),
        (
            "stamps",
            primitive_lists::<TimestampMillisecondType>(item(millis), &floored),
        ),
        (
            "nums",
            primitive_lists::<Int64Type>(
                item(DataType::Int64),
                &[
                    Some(vec![Some(1), Some(-2)]),
                    None,
                    Some(vec![]),
                    Some(vec![Some(i32::MAX as i64)]),
                ],
            ),
        ),
        ("attrs", want.column(14).clone()),
        (
            "n",
            std::sync::Arc::new(Int64Array::from(vec![
                Some(1),
                None,
                Some(i32::MIN as i64),
                Some(3),
            ])),
        ),
        ("missing", new_null_array(&DataType::Utf8, 4)),
    ])
}

#[tokio::test]
async fn parquet_files_of_other_writers_read_as_the_declared_types() {
    let d = scratch("parquet-foreign");
    let want = nested_rows();
    let file = foreign_rows(&want);
    let expected = foreign_expected(&want);
    for (name, arrow_schema) in [("pyarrow.parquet", true), ("spark.parquet", false)] {
        write_parquet(&d.join(name), &file, arrow_schema);
        let src = table("src", FOREIGN, "", &d.join(name), "parquet");
        let got = query_batch(&format!("{src} SELECT * FROM src;")).await;
        assert_same_columns(name, &got, &expected);
    }
}

#[tokio::test]
async fn a_parquet_column_unreadable_as_declared_fails_naming_it() {
    let d = scratch("parquet-unreadable");
    let want = nested_rows();
    let file = batch(vec![
        ("id", want.column(0).clone()),
        ("tags", want.column(7).clone()),
    ]);
    write_parquet(&d.join("in.parquet"), &file, false);
    let texts = batch(vec![("id", want.column(10).clone())]);
    write_parquet(&d.join("texts.parquet"), &texts, false);
    for (path, columns, column, declared) in [
        (
            "in.parquet",
            "id INT, tags ARRAY<STRING>",
            "`tags`",
            "ARRAY<STRING>",
        ),
        ("texts.parquet", "id INT", "`id`", "INT"),
    ] {
        let src = table("src", columns, "", &d.join(path), "parquet");
        let engine = weir::Engine::new();
        engine.set_quiet(true);
        let stream = engine.query(&format!("{src} SELECT * FROM src;")).await;
        let e = match stream.unwrap_or_else(|e| panic!("{e}")).collect().await {
            Ok(_) => panic!("{path} read as {columns}"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(column) && e.contains(declared), "{e}");
        assert!(e.contains(path), "{e}");
    }
}
