//! Tests of the filesystem source over real temp files.

use super::*;
use crate::test_util::{source_ctx, table, temp_path};
use datafusion::arrow::array::{Array, AsArray, Float64Array, StringArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Int32Type, TimeUnit, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;
use weir_engine::observe::dead_letter::{DeadLetters, OnError};

fn columns() -> Vec<(&'static str, DataType)> {
    vec![
        ("id", DataType::Utf8),
        ("ts", DataType::Timestamp(TimeUnit::Millisecond, None)),
        ("v", DataType::Float64),
    ]
}

/// Pull every batch out of `source`.
async fn drain(source: &mut dyn Source) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    loop {
        match source.next().await? {
            SourceEvent::Batch(b) => out.push(b),
            SourceEvent::Idle => continue,
            SourceEvent::End => return Ok(out),
            _ => continue,
        }
    }
}

/// Read a whole table with default settings (used by the sink tests too).
pub(crate) async fn read_all(opts: &[(&str, &str)], cols: &[(&str, DataType)]) -> Vec<RecordBatch> {
    let ctx = source_ctx(table(opts, cols), OnError::Skip, 1024);
    let mut source = FilesystemSourceFactory.create(ctx).unwrap();
    drain(source.as_mut()).await.unwrap()
}

/// Read `path` as JSON with a given batch size and chunk size; the rows and the dead letters.
async fn read_json(path: &str, batch_size: usize, chunk: usize) -> (RecordBatch, DeadLetters) {
    let opts = [
        ("connector", "filesystem"),
        ("path", path),
        ("format", "json"),
    ];
    let ctx = source_ctx(table(&opts, &columns()), OnError::Skip, batch_size);
    let dead = ctx.dead_letters.clone();
    let metrics = ctx.metrics.clone();
    let mut source = FileSource::new(ctx.clone(), FileOptions::parse(&ctx.table).unwrap()).unwrap();
    source.chunk_bytes = chunk;
    let batches = drain(&mut source).await.unwrap();
    assert!(batches.iter().all(|b| b.num_rows() <= batch_size));
    let all = concat_batches(&ctx.schema, &batches).unwrap();
    assert_eq!(JobMetrics::get(&metrics.rows_in), all.num_rows() as u64);
    (all, dead)
}

fn strings(b: &RecordBatch, col: usize) -> Vec<Option<String>> {
    let a = b
        .column(col)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    a.iter().map(|v| v.map(str::to_string)).collect()
}

const MESSY_JSON: &[u8] = b"{\"id\":\"a\",\"ts\":\"2023-12-31 23:59:59.968\",\"v\":1.5}\n\
{\"id\":\"b\",\"ts\":\"2024-01-01 00:00:00.001\",\"v\":2}\n\
\n\
{\"id\":\"c\",\"ts\":\"not a time\",\"v\":3}\n\
{\"id\":\"d\",\"ts\":\r\n\
{\"id\":\"e\",\"ts\":\"2024-01-01 00:00:01.000\",\"v\":5,\"extra\":[1,2]}\n\
{\"id\":\"\xff\xfe\"}\n\
   \n\
{\"id\":\"f\"}\n\
{\"id\":\"g\",\"ts\":\"2024-01-01 00:00:02.500\",\"v\":81.64399999999999}";

#[tokio::test]
async fn json_keeps_good_rows_and_reports_bad_lines_exactly() {
    let path = temp_path("messy.jsonl");
    std::fs::write(&path, MESSY_JSON).unwrap();
    let p = path.display().to_string();
    // Whole-file chunks, then tiny chunks and batches that cut lines everywhere: same result.
    for (batch_size, chunk) in [(1024, CHUNK_BYTES), (2, 7), (3, 64), (1, 1)] {
        let (rows, dead) = read_json(&p, batch_size, chunk).await;
        let ids: Vec<Option<String>> = ["a", "b", "e", "f", "g"]
            .iter()
            .map(|s| Some(s.to_string()))
            .collect();
        assert_eq!(strings(&rows, 0), ids, "batch {batch_size} chunk {chunk}");
        let ts = rows.column(1).as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.value(0), 1_704_067_199_968);
        assert_eq!(ts.value(1), 1_704_067_200_001);
        assert_eq!(ts.value(2), 1_704_067_201_000);
        assert!(ts.is_null(3), "missing fields are NULL");
        let v = rows
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(v.value(1), 2.0);
        assert_eq!(v.value(4), 81.64399999999999);
        let bad = dead.records();
        let positions: Vec<String> = bad.iter().map(|r| r.position.clone()).collect();
        assert_eq!(
            positions,
            vec![format!("{p}:4"), format!("{p}:5"), format!("{p}:7")]
        );
        assert_eq!(
            bad[0].raw,
            b"{\"id\":\"c\",\"ts\":\"not a time\",\"v\":3}".to_vec()
        );
        assert_eq!(bad[1].raw, b"{\"id\":\"d\",\"ts\":".to_vec());
        assert_eq!(bad[2].raw, b"{\"id\":\"\xff\xfe\"}".to_vec());
        assert!(bad[0].reason.contains("not a time"), "{}", bad[0].reason);
        assert_eq!(dead.count(), 3);
    }
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn line_numbers_stay_exact_across_chunks_and_batches() {
    let path = temp_path("long.jsonl");
    let mut text = String::new();
    let mut expected = Vec::new();
    for line in 1..=1000 {
        if line % 37 == 0 {
            text.push_str("  \n");
        } else if line == 778 || line == 998 {
            text.push_str("{\"id\":\"bad\",\"v\":tru}\n");
        } else {
            text.push_str(&format!("{{\"id\":\"r{line}\",\"v\":{line}}}\r\n"));
            expected.push(Some(format!("r{line}")));
        }
    }
    std::fs::write(&path, &text).unwrap();
    let p = path.display().to_string();
    for (batch_size, chunk) in [(64, 1000), (1, 333), (5000, CHUNK_BYTES)] {
        let (rows, dead) = read_json(&p, batch_size, chunk).await;
        assert_eq!(
            strings(&rows, 0),
            expected,
            "batch {batch_size} chunk {chunk}"
        );
        let positions: Vec<String> = dead.records().into_iter().map(|r| r.position).collect();
        assert_eq!(
            positions,
            vec![format!("{p}:778"), format!("{p}:998")],
            "batch {batch_size} chunk {chunk}"
        );
    }
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn on_error_fail_stops_the_job_at_the_bad_line() {
    let path = temp_path("fail.jsonl");
    std::fs::write(
        &path,
        "{\"id\":\"a\"}\n{\"id\":\"b\",\"v\":\"x\"}\n{\"id\":\"c\"}\n",
    )
    .unwrap();
    let p = path.display().to_string();
    let opts = [
        ("connector", "filesystem"),
        ("path", p.as_str()),
        ("format", "json"),
    ];
    let ctx = source_ctx(table(&opts, &columns()), OnError::Fail, 1024);
    let mut source = FilesystemSourceFactory.create(ctx).unwrap();
    let err = drain(source.as_mut()).await.unwrap_err().to_string();
    assert!(err.contains(&format!("bad record at {p}:2")), "{err}");
    // The table option alone is enough, whatever the engine's dead-letter handle says.
    let opts = [
        ("path", p.as_str()),
        ("format", "json"),
        ("format.on-error", "fail"),
    ];
    let ctx = source_ctx(table(&opts, &columns()), OnError::Skip, 1024);
    let dead = ctx.dead_letters.clone();
    let mut source = FilesystemSourceFactory.create(ctx).unwrap();
    match source.next().await.unwrap_err() {
        EngineError::Execution(m) => {
            assert!(m.starts_with(&format!("bad record at {p}:2: ")), "{m}")
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(dead.count(), 0);
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn csv_with_header_delimiter_and_quotes() {
    let path = temp_path("in.csv");
    let text = "id;ts;v\n\"x;1\";2024-01-01 00:00:00.250;1.25\ny;2024-01-01 00:00:01;oops\nz;;3\n";
    std::fs::write(&path, text).unwrap();
    let p = path.display().to_string();
    let opts = [
        ("connector", "filesystem"),
        ("path", p.as_str()),
        ("format", "csv"),
        ("csv.field-delimiter", ";"),
        ("csv.ignore-first-line", "true"),
    ];
    let ctx = source_ctx(table(&opts, &columns()), OnError::Skip, 1024);
    let dead = ctx.dead_letters.clone();
    let schema = ctx.schema.clone();
    let mut source = FilesystemSourceFactory.create(ctx).unwrap();
    let rows = concat_batches(&schema, &drain(source.as_mut()).await.unwrap()).unwrap();
    assert_eq!(
        strings(&rows, 0),
        vec![Some("x;1".to_string()), Some("z".to_string())]
    );
    let ts = rows.column(1).as_primitive::<TimestampMillisecondType>();
    assert_eq!(ts.value(0), 1_704_067_200_250);
    assert!(ts.is_null(1), "an empty CSV field is NULL");
    let v = rows
        .column(2)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert_eq!((v.value(0), v.value(1)), (1.25, 3.0));
    let bad = dead.records();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].position, format!("{p}:3"));
    assert_eq!(bad[0].raw, b"y;2024-01-01 00:00:01;oops".to_vec());
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn csv_blank_lines_are_skipped_and_counted() {
    let path = temp_path("blank.csv");
    std::fs::write(&path, "1\n\n2\nbad\n\n3").unwrap();
    let p = path.display().to_string();
    let opts = [
        ("connector", "filesystem"),
        ("path", p.as_str()),
        ("format", "csv"),
    ];
    let ctx = source_ctx(table(&opts, &[("n", DataType::Int32)]), OnError::Skip, 1024);
    let dead = ctx.dead_letters.clone();
    let schema = ctx.schema.clone();
    let mut source = FilesystemSourceFactory.create(ctx).unwrap();
    let rows = concat_batches(&schema, &drain(source.as_mut()).await.unwrap()).unwrap();
    let n: Vec<i32> = rows.column(0).as_primitive::<Int32Type>().values().to_vec();
    assert_eq!(n, vec![1, 2, 3]);
    let positions: Vec<String> = dead.records().into_iter().map(|r| r.position).collect();
    assert_eq!(positions, vec![format!("{p}:4")]);
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn directory_files_are_read_in_name_order() {
    let dir = temp_path("dir");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("b.jsonl"), "{\"id\":\"b1\"}\n{\"id\":\"b2\"}\n").unwrap();
    std::fs::write(dir.join("a.jsonl"), "{\"id\":\"a1\"}\nbroken\n").unwrap();
    std::fs::write(dir.join(".hidden"), "{\"id\":\"h\"}\n").unwrap();
    std::fs::write(dir.join("empty.jsonl"), "").unwrap();
    let p = dir.display().to_string();
    let opts = [
        ("connector", "filesystem"),
        ("path", p.as_str()),
        ("format", "json"),
    ];
    let ctx = source_ctx(table(&opts, &columns()), OnError::Skip, 1024);
    let dead = ctx.dead_letters.clone();
    let schema = ctx.schema.clone();
    let mut source = FilesystemSourceFactory.create(ctx).unwrap();
    let rows = concat_batches(&schema, &drain(source.as_mut()).await.unwrap()).unwrap();
    let ids: Vec<Option<String>> = ["a1", "b1", "b2"]
        .iter()
        .map(|s| Some(s.to_string()))
        .collect();
    assert_eq!(strings(&rows, 0), ids);
    assert_eq!(dead.records()[0].position, format!("{p}/a.jsonl:2"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn empty_file_ends_at_once_and_missing_path_fails() {
    let path = temp_path("empty.jsonl");
    std::fs::write(&path, "").unwrap();
    let p = path.display().to_string();
    let rows = read_all(&[("path", p.as_str()), ("format", "json")], &columns()).await;
    assert!(rows.is_empty());
    std::fs::remove_file(&path).unwrap();
    let opts = [
        ("connector", "filesystem"),
        ("path", p.as_str()),
        ("format", "json"),
    ];
    let ctx = source_ctx(table(&opts, &columns()), OnError::Skip, 1024);
    let err = FilesystemSourceFactory
        .create(ctx)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot read") && err.contains(&p), "{err}");
}

#[test]
fn factory_validates_options() {
    let f = FilesystemSourceFactory;
    assert!(f.is_bounded(&table(&[], &[])));
    let err = f
        .validate(&table(
            &[("connector", "filesystem"), ("format", "json")],
            &[],
        ))
        .unwrap_err();
    assert!(err.contains("'path'"), "{err}");
    let t = table(
        &[
            ("connector", "filesystem"),
            ("path", "x"),
            ("format", "json"),
            ("fromat", "j"),
        ],
        &[],
    );
    assert!(f.validate(&t).unwrap_err().contains("'fromat'"));
}

#[tokio::test]
async fn garbage_never_panics_and_loses_nothing() {
    let mut state = 0x1234_5678_u64;
    let mut garbage = Vec::new();
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let pick = b"{}[]\":,\n\r\t 0123abc\\\xff\xc3";
        garbage.push(pick[(state % pick.len() as u64) as usize]);
    }
    let path = temp_path("garbage");
    std::fs::write(&path, &garbage).unwrap();
    let lines = garbage.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let p = path.display().to_string();
    for format in ["json", "csv"] {
        let opts = [("path", p.as_str()), ("format", format)];
        let ctx = source_ctx(table(&opts, &columns()), OnError::Skip, 7);
        let dead = ctx.dead_letters.clone();
        let mut source = FilesystemSourceFactory.create(ctx).unwrap();
        let rows: usize = drain(source.as_mut())
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        let bad = dead.count();
        assert!(bad > 0, "{format}: garbage must produce bad records");
        assert!(
            rows as u64 + bad <= lines,
            "{format}: {rows} rows + {bad} bad > {lines} lines"
        );
        let positions = dead.records().into_iter().map(|r| r.position);
        let numbers: Vec<u64> = positions
            .map(|s| s.rsplit(':').next().unwrap().parse().unwrap())
            .collect();
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "{format}: positions increase"
        );
        assert!(numbers.iter().all(|n| (1..=lines).contains(n)));
    }
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn csv_unbalanced_quote_spoils_only_its_line() {
    let path = temp_path("quote.csv");
    std::fs::write(&path, "1,a\n2,\"b\n3,c\n").unwrap();
    let p = path.display().to_string();
    let opts = [("path", p.as_str()), ("format", "csv")];
    let cols = [("n", DataType::Int32), ("s", DataType::Utf8)];
    let ctx = source_ctx(table(&opts, &cols), OnError::Skip, 1024);
    let dead = ctx.dead_letters.clone();
    let schema = ctx.schema.clone();
    let mut source = FilesystemSourceFactory.create(ctx).unwrap();
    let rows = concat_batches(&schema, &drain(source.as_mut()).await.unwrap()).unwrap();
    let n: Vec<i32> = rows.column(0).as_primitive::<Int32Type>().values().to_vec();
    assert_eq!(n, vec![1, 3]);
    let positions: Vec<String> = dead.records().into_iter().map(|r| r.position).collect();
    assert_eq!(positions, vec![format!("{p}:2")]);
    std::fs::remove_file(path).unwrap();
}

/// Every event of `source` until its end: (segment, rows) of each batch, segment ends, and the
/// position after the first `stop_after` batches (when given).
async fn segments_of(
    source: &mut dyn Source,
    stop_after: Option<usize>,
) -> (Vec<(u64, Vec<i32>)>, Vec<u64>, Option<String>) {
    let (mut rows, mut ends, mut current) = (Vec::new(), Vec::new(), None);
    loop {
        match source.next().await.unwrap() {
            SourceEvent::SegmentStart(n) => current = Some(n),
            SourceEvent::SegmentEnd(n) => ends.push(n),
            SourceEvent::Batch(b) => {
                let n: Vec<i32> = b.column(0).as_primitive::<Int32Type>().values().to_vec();
                rows.push((current.expect("a batch inside a segment"), n));
                if Some(rows.len()) == stop_after {
                    return (rows, ends, source.snapshot().unwrap());
                }
            }
            SourceEvent::End => return (rows, ends, None),
            _ => {}
        }
    }
}

/// A directory of two CSV files with headers and bad lines, cut into segments of 16 bytes.
fn split_dir() -> (PathBuf, Vec<(&'static str, &'static str)>) {
    let dir = temp_path("split");
    std::fs::create_dir_all(&dir).unwrap();
    let a: String = std::iter::once("n\n".to_string())
        .chain((1..=40).map(|i| {
            if i == 33 {
                "bad\n".into()
            } else {
                format!("{i}\n")
            }
        }))
        .collect();
    std::fs::write(dir.join("a.csv"), a).unwrap();
    std::fs::write(dir.join("b.csv"), "n\n41\n42\n").unwrap();
    let opts = vec![
        ("connector", "filesystem"),
        ("format", "csv"),
        ("csv.ignore-first-line", "true"),
        ("source.split-size", "16b"),
    ];
    (dir, opts)
}

#[tokio::test]
async fn subtasks_share_the_files_in_segments_with_exact_bad_line_origins() {
    let (dir, mut opts) = split_dir();
    let p = dir.display().to_string();
    opts.push(("path", p.as_str()));
    let (mut all, mut bad) = (Vec::new(), Vec::new());
    for index in 0..3 {
        let mut ctx = source_ctx(table(&opts, &[("n", DataType::Int32)]), OnError::Skip, 2);
        ctx.split = weir_engine::connector::Split { index, count: 3 };
        let dead = ctx.dead_letters.clone();
        let mut source = FilesystemSourceFactory.create(ctx).unwrap();
        let (rows, ends, _) = segments_of(source.as_mut(), None).await;
        assert!(
            ends.iter().all(|n| *n % 3 == index as u64),
            "{index}: {ends:?}"
        );
        all.extend(rows);
        bad.extend(dead.records().into_iter().map(|r| r.position));
    }
    all.sort_by_key(|(segment, _)| *segment);
    let values: Vec<i32> = all.into_iter().flat_map(|(_, n)| n).collect();
    let expected: Vec<i32> = (1..=42).filter(|i| *i != 33).collect();
    assert_eq!(values, expected, "in segment order, the rows of one reader");
    assert_eq!(bad, vec![format!("{p}/a.csv:34")], "header line + 33");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A context for subtask `index` of `count` reading a table with `opts`, from `restore`.
fn split_ctx(
    opts: &[(&str, &str)],
    index: usize,
    count: usize,
    restore: Option<String>,
) -> SourceContext {
    let mut ctx = source_ctx(table(opts, &[("n", DataType::Int32)]), OnError::Skip, 2);
    ctx.split = weir_engine::connector::Split { index, count };
    ctx.restore = restore;
    ctx
}

/// Two subtasks each stop after `batches` batches: their rows and their merged position.
async fn two_stop_after(opts: &[(&str, &str)], batches: usize) -> (Vec<i32>, Option<String>) {
    let (mut rows, mut positions) = (Vec::new(), Vec::new());
    for index in 0..2 {
        let ctx = split_ctx(opts, index, 2, None);
        let mut source = FilesystemSourceFactory.create(ctx).unwrap();
        let (seen, _, pos) = segments_of(source.as_mut(), Some(batches)).await;
        rows.extend(seen.into_iter().flat_map(|(_, n)| n));
        positions.push(pos);
    }
    let t = table(opts, &[("n", DataType::Int32)]);
    let merged = FilesystemSourceFactory
        .merge_positions(&t, &positions)
        .unwrap();
    (rows, merged)
}

/// Every row `count` subtasks read from `restore` to the end.
async fn rest_from(opts: &[(&str, &str)], count: usize, restore: Option<String>) -> Vec<i32> {
    let mut rows = Vec::new();
    for index in 0..count {
        let ctx = split_ctx(opts, index, count, restore.clone());
        let mut source = FilesystemSourceFactory.create(ctx).unwrap();
        let (seen, _, _) = segments_of(source.as_mut(), None).await;
        rows.extend(seen.into_iter().flat_map(|(_, n)| n));
    }
    rows
}

/// Every row of [`split_dir`] once, in order.
fn assert_every_row_once(first: Vec<i32>, rest: Vec<i32>) {
    let mut all: Vec<i32> = first.into_iter().chain(rest).collect();
    all.sort_unstable();
    let expected: Vec<i32> = (1..=42).filter(|i| *i != 33).collect();
    assert_eq!(all, expected, "every row once across the restore");
}

#[tokio::test]
async fn a_split_position_resumes_at_the_same_line_even_at_another_parallelism() {
    let (dir, mut opts) = split_dir();
    let p = dir.display().to_string();
    opts.push(("path", p.as_str()));
    // Two subtasks each stop after three batches; their positions merge into one that three
    // subtasks resume from.
    let (first, merged) = two_stop_after(&opts, 3).await;
    let rest = rest_from(&opts, 3, merged).await;
    assert_every_row_once(first, rest);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_restore_keeps_the_checkpoints_cut_unless_the_option_names_another() {
    let (dir, mut opts) = split_dir();
    let p = dir.display().to_string();
    opts.push(("path", p.as_str()));
    let (first, merged) = two_stop_after(&opts, 2).await;
    // The checkpoint cut the files into 16-byte segments; the default is another size.
    let default: Vec<_> = opts
        .iter()
        .copied()
        .filter(|(k, _)| *k != "source.split-size")
        .collect();
    let rest = rest_from(&default, 2, merged.clone()).await;
    assert_every_row_once(first, rest);
    let mut other = default.clone();
    other.push(("source.split-size", "32b"));
    let e = FilesystemSourceFactory
        .create(split_ctx(&other, 0, 2, merged))
        .err()
        .expect("another explicit size is refused");
    assert!(e.to_string().contains("restore with the same value"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}
