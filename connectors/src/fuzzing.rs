//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`; not part of the API).
//!
//! Each function drives a decoder or a checkpoint reader the way a running job does, without a
//! broker or files, and panics when a property every input must keep is broken; an `Err` is a
//! correct answer to bad input.

use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use rdkafka::message::OwnedMessage;
use rdkafka::Timestamp;
use weir_engine::connector::{SourceContext, SourceEvent, SourceFactory};
use weir_engine::observe::dead_letter::{DeadLetters, OnError};
use weir_engine::observe::metrics::JobMetrics;
use weir_planner::{Statement, TableDef};

use crate::filesystem::decode::SegmentDecoder;
use crate::filesystem::{CsvOptions, Format};
use crate::kafka::source::KafkaSource;

/// The schema every line decoder target uses: one column of each kind a sensor table has.
const LINE_COLUMNS: &str =
    "id BIGINT, v DOUBLE, name STRING, ok BOOLEAN, ts TIMESTAMP(3), n INT, d DECIMAL(10, 2)";

fn table(ddl: &str) -> TableDef {
    match weir_planner::parse_script(ddl)
        .expect("the fuzz tables parse")
        .remove(0)
    {
        Statement::CreateTable { table, .. } => table,
        other => panic!("not a table: {other:?}"),
    }
}

fn line_schema() -> SchemaRef {
    let ddl = format!("CREATE TABLE t ({LINE_COLUMNS}) WITH ('connector' = 'datagen')");
    table(&ddl).physical_schema()
}

fn csv_options() -> CsvOptions {
    CsvOptions {
        delimiter: b',',
        quote: b'"',
        allow_comments: false,
        ignore_first_line: false,
    }
}

/// Decode `input` (made into whole lines) as JSON lines or CSV in segments of `batch_size`
/// rows, as the filesystem and Kafka sources do, and check the result against decoding each
/// line on its own: the same rows, the same bad lines, one row per good line.
pub fn decode_lines(json: bool, batch_size: usize, input: &[u8]) {
    if has_huge_exponent(input) {
        return; // arrow-cast's decimal parser overflows on these (docs/reliability.md)
    }
    let format = if json { Format::Json } else { Format::Csv };
    let mut region = input.to_vec();
    if region.last() != Some(&b'\n') {
        region.push(b'\n');
    }
    let schema = line_schema();
    let new = || SegmentDecoder::new(schema.clone(), format, csv_options(), batch_size);
    let mut decoder = new().expect("a decoder for the fuzz schema");
    let (mut rows, mut bad, mut pos, mut line) = (Vec::new(), Vec::new(), 0, 0);
    while pos < region.len() {
        let Ok(seg) = decoder.next_segment(&region[pos..]) else {
            return; // an error for the whole region is an answer, not a wrong result
        };
        assert!(seg.len > 0, "a segment must take bytes");
        bad.extend(seg.decoded.bad.iter().map(|b| line + b.index));
        rows.extend(seg.decoded.batch);
        pos += seg.len;
        line += seg.lines as usize;
    }
    let mut alone = new().expect("a decoder for the fuzz schema");
    let (mut expected_rows, mut expected_bad) = (Vec::new(), Vec::new());
    for (i, l) in region.split_inclusive(|b| *b == b'\n').enumerate() {
        let d = alone.decode(l).expect("one line decodes or is bad");
        if d.bad.is_empty() {
            expected_rows.extend(d.batch);
        } else {
            expected_bad.push(i);
        }
    }
    assert_eq!(
        bad, expected_bad,
        "bad lines differ from lines decoded alone"
    );
    let got = concat_batches(&schema, &rows).expect("same schema");
    let want = concat_batches(&schema, &expected_rows).expect("same schema");
    assert_eq!(got, want, "rows differ from lines decoded alone");
}

/// A number whose exponent can overflow arrow-cast 59.3's decimal parser: five exponent digits
/// or more (`1E65537`: the exponent is an `i16`), or mantissa digits plus exponent of 38 or more
/// (`-672256e0200`: the scaled value overflows an `i128` multiplication). With debug
/// assertions the overflow panics (the decoder turns it into a bad line); in release builds it
/// wraps and a `DECIMAL` column gets a wrong value. Reported in docs/reliability.md; skipped here
/// so the target keeps fuzzing the rest.
fn has_huge_exponent(input: &[u8]) -> bool {
    input.iter().enumerate().any(|(at, byte)| {
        if !matches!(byte, b'e' | b'E') {
            return false;
        }
        let mantissa = input[..at]
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .count();
        let rest = &input[at + 1..];
        let rest = match rest.first() {
            Some(b'+' | b'-') => &rest[1..],
            _ => rest,
        };
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let exponent = rest[..digits.min(5)]
            .iter()
            .fold(0usize, |e, d| e * 10 + usize::from(d - b'0'));
        digits >= 5 || (digits > 0 && mantissa + exponent >= 38)
    })
}

/// One Kafka record as a fuzz target builds it.
#[derive(Debug, Clone)]
pub struct Record {
    /// 0..4 (3 is read up to offset 100); others are not assigned and are skipped.
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    /// Header keys as bytes: producers may send keys that are not UTF-8.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// The Kafka tables a record fuzz target can decode into (the first input byte picks one).
const KAFKA_TABLES: &[&str] = &[
    // JSON values with every metadata column; event time from the value.
    "CREATE TABLE k (id BIGINT, v DOUBLE, name STRING, ts TIMESTAMP(3),
        kt TIMESTAMP_LTZ(3) METADATA FROM 'timestamp', p INT METADATA FROM 'partition',
        o BIGINT METADATA FROM 'offset', tp STRING METADATA FROM 'topic',
        k BYTES METADATA FROM 'key', h MAP<STRING, BYTES> METADATA FROM 'headers',
        WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
     WITH ('connector' = 'kafka', 'topic' = 'f', 'properties.bootstrap.servers' = '127.0.0.1:1',
        'format' = 'json')",
    // CSV values, event time in epoch milliseconds with plausibility bounds.
    "CREATE TABLE k (id BIGINT, name STRING, ts TIMESTAMP(3),
        o BIGINT METADATA FROM 'offset', h MAP<STRING, BYTES> METADATA FROM 'headers')
     WITH ('connector' = 'kafka', 'topic' = 'f', 'properties.bootstrap.servers' = '127.0.0.1:1',
        'format' = 'csv',
        'timestamp.unit' = 'ms', 'timestamp.max-future' = '1 h')",
    // Key fields spliced from a JSON key into the value.
    "CREATE TABLE k (id BIGINT, site STRING, v DOUBLE, o BIGINT METADATA FROM 'offset')
     WITH ('connector' = 'kafka', 'topic' = 'f', 'properties.bootstrap.servers' = '127.0.0.1:1',
        'format' = 'json', 'key.format' = 'json',
        'key.fields' = 'id;site', 'value.fields-include' = 'EXCEPT_KEY')",
    // Raw values into one STRING column, epoch seconds in the timestamp metadata.
    "CREATE TABLE k (line STRING, o BIGINT METADATA FROM 'offset',
        kt TIMESTAMP_LTZ(3) METADATA FROM 'timestamp')
     WITH ('connector' = 'kafka', 'topic' = 'f', 'properties.bootstrap.servers' = '127.0.0.1:1',
        'format' = 'raw')",
];

/// A source per table, built once (building one starts no client: it connects on first poll).
fn kafka_source(table: usize) -> &'static Mutex<Box<KafkaSource>> {
    static SOURCES: OnceLock<Vec<Mutex<Box<KafkaSource>>>> = OnceLock::new();
    &SOURCES.get_or_init(|| {
        KAFKA_TABLES
            .iter()
            .map(|d| Mutex::new(build_source(d)))
            .collect()
    })[table % KAFKA_TABLES.len()]
}

fn build_source(ddl: &str) -> Box<KafkaSource> {
    let table = table(ddl);
    let dead_letters = DeadLetters::new(OnError::Skip);
    dead_letters.set_quiet(true);
    let schema = table.physical_schema();
    let ctx = SourceContext {
        table: Arc::new(table),
        schema,
        used_columns: None,
        batch_size: 64,
        dead_letters,
        metrics: Arc::new(JobMetrics::default()),
        restore: None,
        checkpointing: false,
        split: Default::default(),
    };
    crate::kafka::KafkaSourceFactory
        .validate(&ctx.table)
        .expect("the fuzz tables are valid");
    KafkaSource::new(ctx).expect("a kafka source")
}

fn message(r: &Record) -> OwnedMessage {
    let headers = (!r.headers.is_empty()).then(|| {
        let list: Vec<_> = r
            .headers
            .iter()
            .map(|(k, v)| (&k[..], v.as_deref()))
            .collect();
        crate::kafka::metadata::raw_headers(&list)
    });
    let timestamp = r
        .timestamp
        .map_or(Timestamp::NotAvailable, Timestamp::CreateTime);
    OwnedMessage::new(
        r.value.clone(),
        r.key.clone(),
        "f".into(),
        timestamp,
        r.partition,
        r.offset,
        headers,
    )
}

/// Decode `records` as one poll of the Kafka source for table `table`. Bad records are skipped
/// (`'format.on-error' = 'skip'`), so the poll must succeed; every row must name the offset of
/// a distinct record, in the order the records came.
pub fn decode_kafka(table: usize, records: &[Record]) {
    let messages: Vec<OwnedMessage> = records.iter().map(message).collect();
    let mut source = kafka_source(table)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let event = source.decode_messages("f", &messages);
    let batch = match event {
        Ok(SourceEvent::PartitionedBatch(batch, parts)) => {
            assert_eq!(batch.num_rows(), parts.len(), "a partition per row");
            batch
        }
        Ok(SourceEvent::Idle) => return,
        Ok(other) => panic!("unexpected event {other:?}"),
        Err(e) => panic!("a poll with bad records failed the job: {e}"),
    };
    check_offsets(&batch, records);
}

/// The `o` (offset) column holds offsets of records that were read, each once, in order.
fn check_offsets(batch: &RecordBatch, records: &[Record]) {
    let Some(col) = batch.column_by_name("o") else {
        return;
    };
    assert_eq!(col.data_type(), &DataType::Int64);
    let offsets = col.as_primitive::<Int64Type>();
    let mut at = 0;
    for o in offsets.iter() {
        let o = o.expect("an offset for every row");
        let found = records[at..].iter().position(|r| r.offset == o);
        let found = found.unwrap_or_else(|| panic!("row with offset {o} out of order or twice"));
        at += found + 1;
    }
}

/// Read `text` as each connector's checkpointed position or pending commits would be read on
/// recovery: an error is fine, a panic is not.
pub fn read_positions(text: &str) {
    let _ = crate::kafka::source::parse_positions(text);
    let _ = crate::kafka::transactional::parse_pending(text);
    let _ = crate::filesystem::committing::parse_pending(text);
}

/// Inputs the fuzz targets found failing (docs/reliability.md), kept as tests.
#[cfg(test)]
mod regressions {
    use super::*;

    #[test]
    fn json_records_spanning_lines_are_bad_lines_not_rows() {
        // An object cut at a line end whose next line closes it and opens another: the row
        // count matched the line count, but no row matched its line.
        let input = b"\x00{\"id\": 3, \"v\": 1.5, \"d\":  7\n}{\"id\": \"3\", \"name\": null}\n\n{\"id\": 1}\n";
        decode_lines(true, 1, input);
        // A string key holding line ends glued three lines into one object.
        decode_lines(true, 4, b"{\"idll}\n\n{\": 7}\n{\"id\": 3}\n");
    }

    #[test]
    fn csv_quoted_fields_spanning_lines_are_bad_lines_not_rows() {
        let input = b"1,\x00\x00\x00\x00\x00\x00\x00\x0021.5,\x8d\xd2\xce\xd0true,2026-01-07\n3,,,,,,\"1 00:00:01.250,3,12.34\n2,-0.5e3,\"quot\ned, name\",false,2026-01-01T00:00:02Z,,7\r3,,,,,,\n\"4\",\"\xff\xff400\",\"a1, '\"b\"\"\",TRUE,2120602A6-";
        decode_lines(false, 2, input);
    }

    #[test]
    fn a_record_at_the_largest_offset_does_not_overflow() {
        let record = Record {
            partition: 0,
            offset: i64::MAX,
            key: None,
            value: Some(
                br#"{"id": 1, "v": 2.0, "name": "x", "ts": "2024-01-01 00:00:00"}"#.to_vec(),
            ),
            timestamp: Some(0),
            headers: vec![(b"\xff".to_vec(), None)],
        };
        for table in 0..KAFKA_TABLES.len() {
            decode_kafka(table, std::slice::from_ref(&record));
        }
    }
}
