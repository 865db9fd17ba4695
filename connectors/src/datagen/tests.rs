//! Tests of the datagen source: option checking, bounds, sequences, ranges and pacing.

use super::*;
use crate::test_util::{source_ctx, table};
use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{
    DataType, Float64Type, Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMillisecondType,
};
use weir_engine::observe::dead_letter::OnError;

fn columns() -> Vec<(&'static str, DataType)> {
    vec![
        ("id", DataType::Int64),
        ("name", DataType::Utf8),
        ("temp", DataType::Float64),
        ("level", DataType::Int16),
        ("ok", DataType::Boolean),
        ("ts", DataType::Timestamp(TimeUnit::Millisecond, None)),
        ("code", DataType::Utf8),
        ("price", DataType::Decimal128(10, 2)),
    ]
}

async fn run(opts: &[(&str, &str)], cols: &[(&str, DataType)], batch_size: usize) -> RecordBatch {
    let ctx = source_ctx(table(opts, cols), OnError::Skip, batch_size);
    let schema = ctx.schema.clone();
    let metrics = ctx.metrics.clone();
    let mut source = DatagenSourceFactory.create(ctx).unwrap();
    let mut batches = Vec::new();
    loop {
        match source.next().await.unwrap() {
            SourceEvent::Batch(b) => batches.push(b),
            SourceEvent::Idle => {}
            SourceEvent::End => break,
            _ => {}
        }
    }
    let all = concat_batches(&schema, &batches).unwrap();
    assert_eq!(JobMetrics::get(&metrics.rows_in), all.num_rows() as u64);
    all
}

#[tokio::test]
async fn bounded_sequence_and_random_fields_in_range() {
    let opts = [
        ("connector", "datagen"),
        ("rows-per-second", "1000000000"),
        ("fields.id.kind", "sequence"),
        ("fields.id.start", "5"),
        ("fields.id.end", "1004"),
        ("fields.name.length", "12"),
        ("fields.temp.min", "-10.5"),
        ("fields.temp.max", "40"),
        ("fields.level.min", "1"),
        ("fields.level.max", "3"),
        ("fields.ts.max-past", "10 s"),
        ("fields.code.kind", "sequence"),
        ("fields.code.start", "1"),
        ("fields.code.end", "5000"),
        ("fields.price.min", "0"),
        ("fields.price.max", "100"),
    ];
    let table_def = table(&opts, &columns());
    assert!(DatagenSourceFactory.is_bounded(&table_def));
    let before = chrono::Utc::now().timestamp_millis();
    let rows = run(&opts, &columns(), 128).await;
    let after = chrono::Utc::now().timestamp_millis();
    assert_eq!(
        rows.num_rows(),
        1000,
        "the shorter sequence bounds the source"
    );
    let ids = rows.column(0).as_primitive::<Int64Type>();
    assert_eq!(ids.values().to_vec(), (5..=1004).collect::<Vec<i64>>());
    let names = rows
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert!(names
        .iter()
        .all(|s| s.unwrap().len() == 12 && s.unwrap().chars().all(|c| c.is_ascii_hexdigit())));
    let temps = rows.column(2).as_primitive::<Float64Type>();
    assert!(temps.values().iter().all(|t| (-10.5..=40.0).contains(t)));
    let levels = rows.column(3).as_primitive::<Int16Type>().values().to_vec();
    assert!(levels.iter().all(|l| (1..=3).contains(l)));
    assert!(
        (1..=3).all(|l| levels.contains(&l)),
        "every value in min..=max appears"
    );
    let oks = rows.column(4).as_boolean();
    assert!(oks.true_count() > 100 && oks.false_count() > 100);
    let ts = rows.column(5).as_primitive::<TimestampMillisecondType>();
    assert!(ts
        .values()
        .iter()
        .all(|t| *t >= before - 10_000 && *t <= after));
    let codes = rows
        .column(6)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!((codes.value(0), codes.value(999)), ("1", "1000"));
    let prices = rows
        .column(7)
        .as_primitive::<datafusion::arrow::datatypes::Decimal128Type>();
    assert!(prices.values().iter().all(|p| (0..=10_000).contains(p)));
    assert!(rows.columns().iter().all(|c| c.null_count() == 0));
}

#[tokio::test]
async fn number_of_rows_bounds_and_null_rate_applies() {
    let cols = [("n", DataType::Int32), ("s", DataType::Utf8)];
    let opts = [
        ("connector", "datagen"),
        ("number-of-rows", "2500"),
        ("rows-per-second", "100000000"),
        ("fields.n.null-rate", "0.5"),
    ];
    let rows = run(&opts, &cols, 1000).await;
    assert_eq!(rows.num_rows(), 2500);
    let nulls = rows.column(0).null_count();
    assert!((1000..1500).contains(&nulls), "{nulls} nulls");
    assert_eq!(
        rows.column(1).as_string::<i32>().value(0).len(),
        100,
        "default string length"
    );
    let _ = rows.column(0).as_primitive::<Int32Type>();
}

#[tokio::test]
async fn rows_per_second_paces_batches() {
    let opts = [
        ("connector", "datagen"),
        ("number-of-rows", "30"),
        ("rows-per-second", "100"),
    ];
    let start = std::time::Instant::now();
    let rows = run(&opts, &[("n", DataType::Int64)], 1024).await;
    assert_eq!(rows.num_rows(), 30);
    // Batches of 10 rows due at 0, 100 and 200 ms.
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(190),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn unbounded_without_rows_or_sequence() {
    let t = table(&[("connector", "datagen")], &[("n", DataType::Int64)]);
    assert!(!DatagenSourceFactory.is_bounded(&t));
    assert!(DatagenSourceFactory.validate(&t).is_ok());
}

#[test]
fn validation_names_the_option() {
    let cols = columns();
    let err = |opts: &[(&str, &str)]| {
        DatagenSourceFactory
            .validate(&table(opts, &cols))
            .unwrap_err()
    };
    let e = err(&[("connector", "datagen"), ("fields.nope.kind", "random")]);
    assert!(
        e.contains("'fields.nope.kind'") && e.contains("'nope' is not a physical column"),
        "{e}"
    );
    let e = err(&[("fields.id.mni", "1")]);
    assert!(e.contains("unknown option 'fields.id.mni'"), "{e}");
    let e = err(&[("rows-per-sec", "1")]);
    assert!(e.contains("unknown option 'rows-per-sec'"), "{e}");
    let e = err(&[("fields.id.min", "ten")]);
    assert!(e.contains("'fields.id.min'") && e.contains("ten"), "{e}");
    let e = err(&[("fields.id.min", "5"), ("fields.id.max", "1")]);
    assert!(e.contains("'min' (5)"), "{e}");
    let e = err(&[("fields.level.max", "70000")]);
    assert!(e.contains("do not fit"), "{e}");
    let e = err(&[("fields.id.kind", "sequence"), ("fields.id.start", "1")]);
    assert!(e.contains("'fields.id.end'"), "{e}");
    let e = err(&[("fields.ok.kind", "sequence")]);
    assert!(e.contains("cannot be a sequence"), "{e}");
    let e = err(&[("fields.id.kind", "shuffle")]);
    assert!(
        e.contains("'fields.id.kind'") && e.contains("shuffle"),
        "{e}"
    );
    let e = err(&[("fields.name.min", "1")]);
    assert!(e.contains("'fields.name.min' does not apply"), "{e}");
    let e = err(&[("fields.ts.max-past", "soon")]);
    assert!(e.contains("'fields.ts.max-past'"), "{e}");
    let e = err(&[("rows-per-second", "0")]);
    assert!(e.contains("'rows-per-second'"), "{e}");
    let e = DatagenSourceFactory
        .validate(&table(&[], &[("d", DataType::Date32)]))
        .unwrap_err();
    assert!(e.contains("cannot generate column 'd'"), "{e}");
}

#[test]
fn sequence_on_a_string_is_allowed_and_durations_parse() {
    let t = table(
        &[
            ("fields.s.kind", "sequence"),
            ("fields.s.start", "7"),
            ("fields.s.end", "9"),
        ],
        &[("s", DataType::Utf8)],
    );
    assert!(DatagenSourceFactory.validate(&t).is_ok());
    assert!(DatagenSourceFactory.is_bounded(&t));
    assert_eq!(spec::parse_duration_ms("1500"), Some(1500));
    assert_eq!(spec::parse_duration_ms("10 s"), Some(10_000));
    assert_eq!(spec::parse_duration_ms("2min"), Some(120_000));
    assert_eq!(spec::parse_duration_ms("1 d"), Some(86_400_000));
    assert_eq!(spec::parse_duration_ms("x"), None);
}

/// The ids (row numbers) in a batch of the `id` sequence column.
fn ids(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

/// A source of subtask `index` of `count`, restored from `restore`.
fn subtask(
    opts: &[(&str, &str)],
    index: usize,
    count: usize,
    restore: Option<String>,
) -> Box<dyn Source> {
    let mut ctx = source_ctx(table(opts, &[("id", DataType::Int64)]), OnError::Skip, 64);
    ctx.split = weir_engine::connector::Split { index, count };
    ctx.restore = restore;
    DatagenSourceFactory.create(ctx).unwrap()
}

/// Every batch a source gives until its end.
async fn drain(source: &mut Box<dyn Source>) -> Vec<i64> {
    let mut out = Vec::new();
    loop {
        match source.next().await.unwrap() {
            SourceEvent::Batch(b) => out.extend(ids(&b)),
            SourceEvent::End => return out,
            _ => {}
        }
    }
}

/// Run subtask `i` of `batches.len()` (restored from `restore`) for `batches[i]` batches,
/// adding their ids to `seen`; the position their checkpoint restores from.
async fn checkpoint_after(
    opts: &[(&str, &str)],
    batches: &[usize],
    restore: Option<String>,
    seen: &mut Vec<i64>,
) -> Option<String> {
    let mut positions = Vec::new();
    for (index, &n) in batches.iter().enumerate() {
        let mut s = subtask(opts, index, batches.len(), restore.clone());
        for _ in 0..n {
            let SourceEvent::Batch(b) = s.next().await.unwrap() else {
                panic!("a batch")
            };
            seen.extend(ids(&b));
        }
        positions.push(s.snapshot().unwrap());
    }
    DatagenSourceFactory
        .merge_positions(&table(opts, &[("id", DataType::Int64)]), &positions)
        .unwrap()
}

/// Two subtasks checkpointed part-way restore at three, and those at one: together every
/// row of the sequence, each once (Flink redistributes a source's split state the same way).
#[tokio::test]
async fn a_position_restores_at_another_parallelism_with_each_row_once() {
    let opts = [
        ("connector", "datagen"),
        ("rows-per-second", "1000000000"),
        ("fields.id.kind", "sequence"),
        ("fields.id.start", "0"),
        ("fields.id.end", "999"),
    ];
    let mut seen = Vec::new();
    // At 2: subtask 0 gets 3 batches out, subtask 1 one, before the checkpoint; at 3, each
    // one more.
    let merged = checkpoint_after(&opts, &[3, 1], None, &mut seen).await;
    let merged = checkpoint_after(&opts, &[1, 1, 1], merged, &mut seen).await;
    // At 1: the rest.
    seen.extend(drain(&mut subtask(&opts, 0, 1, merged)).await);
    seen.sort_unstable();
    assert_eq!(seen, (0..1000).collect::<Vec<i64>>());
}

/// A checkpoint written before positions were ranges (a count of rows) restores at its own
/// parallelism and at another.
#[tokio::test]
async fn an_older_count_position_still_restores() {
    let opts = [
        ("connector", "datagen"),
        ("rows-per-second", "1000000000"),
        ("fields.id.kind", "sequence"),
        ("fields.id.start", "0"),
        ("fields.id.end", "99"),
    ];
    let rest = drain(&mut subtask(&opts, 1, 2, Some("30".into()))).await;
    assert_eq!(rest, (80..100).collect::<Vec<i64>>());
    let positions = [Some("50".into()), Some("10".into())];
    let merged = DatagenSourceFactory
        .merge_positions(&table(&opts, &[("id", DataType::Int64)]), &positions)
        .unwrap();
    let rest = drain(&mut subtask(&opts, 0, 1, merged)).await;
    assert_eq!(rest, (60..100).collect::<Vec<i64>>());
}
