//! One poll of Kafka records (key, value, headers with any bytes as keys, timestamps,
//! partitions and offsets) through the Kafka source's decoding, for four table shapes (JSON
//! with every metadata column, CSV with epoch-millisecond event times, key fields spliced into
//! the value, raw). Bad records are skipped, so the poll must succeed.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weir_connectors::fuzzing::{decode_kafka, Record};

#[derive(Debug, Arbitrary)]
struct Input {
    table: u8,
    records: Vec<FuzzRecord>,
}

#[derive(Debug, Arbitrary)]
struct FuzzRecord {
    partition: i8,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp: Option<i64>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fuzz_target!(|input: Input| {
    let records: Vec<Record> = input
        .records
        .into_iter()
        .map(|r| Record {
            partition: i32::from(r.partition % 6),
            offset: r.offset,
            key: r.key,
            value: r.value,
            timestamp: r.timestamp,
            headers: r.headers,
        })
        .collect();
    decode_kafka(usize::from(input.table), &records);
});
