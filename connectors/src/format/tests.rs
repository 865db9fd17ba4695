//! Tests of the value formatting rules.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int32Array, Int8Array, StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use super::*;

fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = cols
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let arrays = cols.into_iter().map(|(_, a)| a).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

fn json(b: &RecordBatch, tz: Option<Tz>) -> String {
    let mut out = Vec::new();
    batch_to_json_lines(b, tz, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// 2024-01-01 00:00:01.5 UTC.
const MS: i64 = 1_704_067_201_500;

#[test]
fn json_timestamps_follow_the_column_precision() {
    let b = batch(vec![
        ("s", Arc::new(TimestampSecondArray::from(vec![MS / 1000]))),
        ("ms", Arc::new(TimestampMillisecondArray::from(vec![MS]))),
        (
            "us",
            Arc::new(TimestampMicrosecondArray::from(vec![MS * 1000 + 7])),
        ),
        (
            "ns",
            Arc::new(TimestampNanosecondArray::from(vec![MS * 1_000_000 + 89])),
        ),
        ("old", Arc::new(TimestampMillisecondArray::from(vec![-1]))),
    ]);
    assert_eq!(
        json(&b, None),
        "{\"s\":\"2024-01-01 00:00:01\",\"ms\":\"2024-01-01 00:00:01.500\",\
         \"us\":\"2024-01-01 00:00:01.500007\",\"ns\":\"2024-01-01 00:00:01.500000089\",\
         \"old\":\"1969-12-31 23:59:59.999\"}\n"
    );
}

#[test]
fn json_ltz_is_wall_time_in_the_session_zone() {
    let ltz = TimestampMillisecondArray::from(vec![MS]).with_timezone("UTC");
    let b = batch(vec![("t", Arc::new(ltz))]);
    let ny = Some(chrono_tz::America::New_York);
    assert_eq!(json(&b, ny), "{\"t\":\"2023-12-31 19:00:01.500\"}\n");
    assert_eq!(json(&b, None), "{\"t\":\"2024-01-01 00:00:01.500\"}\n");
    let tokyo = Some(chrono_tz::Asia::Tokyo);
    assert_eq!(
        format_value(b.column(0).as_ref(), 0, tokyo),
        "2024-01-01 09:00:01.500"
    );
    // A TIMESTAMP without zone is never shifted.
    let plain = batch(vec![(
        "t",
        Arc::new(TimestampMillisecondArray::from(vec![MS])),
    )]);
    assert_eq!(json(&plain, ny), "{\"t\":\"2024-01-01 00:00:01.500\"}\n");
}

#[test]
fn json_numbers_round_trip_and_non_finite_is_null() {
    let b = batch(vec![
        (
            "d",
            Arc::new(Float64Array::from(vec![
                81.64399999999999,
                12.0,
                f64::NAN,
                1e-7,
            ])),
        ),
        (
            "f",
            Arc::new(Float32Array::from(vec![0.1, 2.5, f32::INFINITY, -0.0])),
        ),
        (
            "i",
            Arc::new(Int8Array::from(vec![Some(-5), None, Some(0), Some(127)])),
        ),
        (
            "b",
            Arc::new(BooleanArray::from(vec![true, false, true, false])),
        ),
    ]);
    let text = json(&b, None);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "{\"d\":81.64399999999999,\"f\":0.1,\"i\":-5,\"b\":true}"
    );
    assert_eq!(lines[1], "{\"d\":12.0,\"f\":2.5,\"i\":null,\"b\":false}");
    assert_eq!(lines[2], "{\"d\":null,\"f\":null,\"i\":0,\"b\":true}");
    assert_eq!(lines[3], "{\"d\":1e-7,\"f\":-0.0,\"i\":127,\"b\":false}");
    let parsed: f64 = lines[0][5..22].parse().unwrap();
    assert_eq!(parsed, 81.64399999999999);
}

#[test]
fn json_strings_are_escaped() {
    let s = "say \"hi\"\\\nline2\ttab\u{1}é";
    let b = batch(vec![(
        "a\"b",
        Arc::new(StringArray::from(vec![Some(s), None])),
    )]);
    assert_eq!(
        json(&b, None),
        "{\"a\\\"b\":\"say \\\"hi\\\"\\\\\\nline2\\ttab\\u0001é\"}\n{\"a\\\"b\":null}\n"
    );
}

#[test]
fn json_dates_decimals_and_bytes() {
    let dec = Decimal128Array::from(vec![12345, -5])
        .with_precision_and_scale(10, 2)
        .unwrap();
    let b = batch(vec![
        ("d", Arc::new(Date32Array::from(vec![19723, 0]))),
        ("m", Arc::new(dec)),
        (
            "t",
            Arc::new(Time64MicrosecondArray::from(vec![3_723_000_000, 1_500])),
        ),
        (
            "x",
            Arc::new(BinaryArray::from(vec![&b"hi!"[..], &b"a"[..]])),
        ),
    ]);
    assert_eq!(
        json(&b, None),
        "{\"d\":\"2024-01-01\",\"m\":123.45,\"t\":\"01:02:03\",\"x\":\"aGkh\"}\n\
         {\"d\":\"1970-01-01\",\"m\":-0.05,\"t\":\"00:00:00.001500\",\"x\":\"YQ==\"}\n"
    );
    assert_eq!(format_value(b.column(3).as_ref(), 0, None), "x'686921'");
}

#[test]
fn text_values_use_flink_spelling() {
    let d = Float64Array::from(vec![
        Some(f64::NEG_INFINITY),
        Some(f64::NAN),
        None,
        Some(2.0),
    ]);
    assert_eq!(format_value(&d, 0, None), "-Infinity");
    assert_eq!(format_value(&d, 1, None), "NaN");
    assert_eq!(format_value(&d, 2, None), "NULL");
    assert_eq!(format_value(&d, 3, None), "2.0");
    assert_eq!(
        format_value(&d, 9, None),
        "",
        "out of range is empty, not a panic"
    );
    let s = StringArray::from(vec!["a \"b\""]);
    assert_eq!(format_value(&s, 0, None), "a \"b\"");
}

#[test]
fn csv_quotes_only_when_needed() {
    let b = batch(vec![
        (
            "name",
            Arc::new(StringArray::from(vec![
                Some("plain"),
                Some("a,b"),
                Some("q\"x"),
                None,
            ])),
        ),
        ("n", Arc::new(Int32Array::from(vec![1, 2, 3, 4]))),
        (
            "ts",
            Arc::new(TimestampMillisecondArray::from(vec![MS, MS, MS, MS])),
        ),
    ]);
    let mut out = Vec::new();
    batch_to_csv(&b, None, &mut out, true).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "name,n,ts\nplain,1,2024-01-01 00:00:01.500\n\"a,b\",2,2024-01-01 00:00:01.500\n\
         \"q\"\"x\",3,2024-01-01 00:00:01.500\n,4,2024-01-01 00:00:01.500\n"
    );
    let mut out = Vec::new();
    batch_to_csv_with_delimiter(&b.slice(1, 1), None, &mut out, false, ';').unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "a,b;2;2024-01-01 00:00:01.500\n"
    );
}

#[test]
fn format_rows_renders_every_cell() {
    let b = batch(vec![
        ("a", Arc::new(Int32Array::from(vec![Some(7), None]))),
        ("b", Arc::new(StringArray::from(vec!["x", "y"]))),
    ]);
    let rows = format_rows(&b, None).unwrap();
    assert_eq!(
        rows,
        vec![
            vec!["7".to_string(), "x".into()],
            vec!["NULL".into(), "y".into()]
        ]
    );
}
