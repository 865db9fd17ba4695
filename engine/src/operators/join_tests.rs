//! The interval join gives the same rows whether one input is read entirely before the other
//! (either way round) or the two interleave row by row, in any batch size: the conformance
//! case `join_interval_inner` fed to the operator in those orders.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::JoinOperator;
use crate::message::{Message, StreamBatch, WATERMARK_MAX, WATERMARK_MIN};
use crate::observe::metrics::JobMetrics;
use crate::operator::Operator;
use weir_planner::stream_plan::JoinNode;

const CASE: &str = "../tests/conformance/join_interval_inner";
/// The case's watermark delay (`ts - INTERVAL '5' SECOND`), ns.
const DELAY: i64 = 5_000_000_000;

fn join_node() -> JoinNode {
    let sql = std::fs::read_to_string(format!("{CASE}/job.sql")).unwrap();
    super::super::planned(&sql, |n| match n {
        weir_planner::StreamNode::Join(j) => Some(j.clone()),
        _ => None,
    })
}

fn millis(s: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.3f")
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// The rows of `file` with the columns of `schema`.
fn read(file: &str, schema: &SchemaRef) -> RecordBatch {
    let text = std::fs::read_to_string(format!("{CASE}/{file}")).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| {
            let v = |r: &serde_json::Value| r[f.name()].clone();
            let col: ArrayRef = match f.data_type() {
                DataType::Utf8 => Arc::new(StringArray::from_iter(
                    rows.iter().map(|r| v(r).as_str().map(String::from)),
                )),
                DataType::Float64 => {
                    Arc::new(Float64Array::from_iter(rows.iter().map(|r| v(r).as_f64())))
                }
                DataType::Int32 => Arc::new(Int32Array::from_iter(
                    rows.iter().map(|r| v(r).as_i64().map(|x| x as i32)),
                )),
                DataType::Timestamp(TimeUnit::Millisecond, _) => {
                    Arc::new(TimestampMillisecondArray::from_iter(
                        rows.iter().map(|r| v(r).as_str().map(millis)),
                    ))
                }
                other => panic!("no reader for {other}"),
            };
            col
        })
        .collect();
    RecordBatch::try_new(schema.clone(), cols).unwrap()
}

/// What a source sends for `batch` in batches of `size`: rows with the watermark before each
/// (`max(ts) - 5 s` so far), the watermark after each batch, and the end.
fn messages(batch: &RecordBatch, time: usize, size: usize) -> Vec<Message> {
    let ts = batch
        .column(time)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    let mut wm = WATERMARK_MIN;
    let mut out = Vec::new();
    for start in (0..batch.num_rows()).step_by(size) {
        let len = size.min(batch.num_rows() - start);
        let mut before = Vec::with_capacity(len);
        for i in start..start + len {
            before.push(wm);
            wm = wm.max(ts.value(i) * 1_000_000 - DELAY);
        }
        let rows = batch.slice(start, len);
        out.push(Message::Batch(StreamBatch::with_row_watermarks(
            rows,
            before.into(),
        )));
        out.push(Message::Watermark(wm));
    }
    out.push(Message::Watermark(WATERMARK_MAX));
    out
}

/// Feed `order` ((input, message) pairs) to a new operator; its rows as sorted text.
fn run(node: &JoinNode, order: Vec<(usize, Message)>) -> Vec<String> {
    let mut op = JoinOperator::new(node, Arc::new(JobMetrics::default()), [None; 2], || 0).unwrap();
    let mut out = Vec::new();
    for (side, m) in order {
        match m {
            Message::Batch(b) => op.process_input(side, b, &mut out).unwrap(),
            Message::Watermark(w) => op.on_input_watermark(side, w, &mut out).unwrap(),
            _ => {}
        }
    }
    let mut rows = Vec::new();
    for m in out {
        if let Message::Batch(b) = m {
            rows.extend(text_rows(&b.batch));
        }
    }
    rows.sort();
    rows
}

fn text_rows(b: &RecordBatch) -> Vec<String> {
    let opts = FormatOptions::default();
    let fmts: Vec<ArrayFormatter> = b
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
        .collect();
    (0..b.num_rows())
        .map(|i| {
            let cells: Vec<String> = fmts.iter().map(|f| f.value(i).to_string()).collect();
            cells.join("|")
        })
        .collect()
}

fn tagged(side: usize, ms: Vec<Message>) -> Vec<(usize, Message)> {
    ms.into_iter().map(|m| (side, m)).collect()
}

/// Messages of both inputs alternately, one each.
fn interleaved(a: Vec<Message>, b: Vec<Message>) -> Vec<(usize, Message)> {
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    let mut out = Vec::new();
    loop {
        let (x, y) = (a.next(), b.next());
        if x.is_none() && y.is_none() {
            return out;
        }
        out.extend(x.map(|m| (0, m)));
        out.extend(y.map(|m| (1, m)));
    }
}

#[test]
fn rows_do_not_depend_on_how_the_inputs_interleave_or_are_batched() {
    let node = join_node();
    let left = read("t.jsonl", &node.left.schema());
    let right = read("ev.jsonl", &node.right.schema());
    let b = node.interval.clone().unwrap();
    let (lt, rt) = (b.left.index, b.right.index);
    let expected = std::fs::read_to_string(format!("{CASE}/expected.jsonl")).unwrap();
    let reference = run(
        &node,
        [
            tagged(0, messages(&left, lt, 4096)),
            tagged(1, messages(&right, rt, 4096)),
        ]
        .concat(),
    );
    assert_eq!(reference.len(), expected.lines().count());
    let right_first = [
        tagged(1, messages(&right, rt, 4096)),
        tagged(0, messages(&left, lt, 4096)),
    ]
    .concat();
    assert_eq!(run(&node, right_first), reference, "right input first");
    for size in [1, 7] {
        let order = interleaved(messages(&left, lt, size), messages(&right, rt, size));
        assert_eq!(
            run(&node, order),
            reference,
            "interleaved, batches of {size}"
        );
    }
}
